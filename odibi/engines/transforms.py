"""Python transforms: loading the user's function and calling it.

A transform's module is imported from the project's `python_path` (re-imported when its
source changed, or when a module of the same name came from another project). Calling
it may take a timeout: the call then runs on a helper thread, and a call that overruns is
abandoned (Python cannot stop a thread) while the node fails. Whatever the user's code
raises is a `UserCodeError`, a node failure with the user's file and line; anything else
is a bug in odibi.
"""

from __future__ import annotations

import importlib
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from odibi.engines.base import EngineError
from odibi.hashing import digest_bytes


class UserCodeError(EngineError):
    """The user's transform raised (or could not be imported)."""


class TimedOut(EngineError):
    """A node ran past its timeout."""


def call(fn: Callable[..., Any], kwargs: Mapping[str, Any], timeout: float | None) -> Any:
    """fn(**kwargs), with the user's exceptions as UserCodeError."""
    if timeout is None:
        try:
            return fn(**kwargs)
        except Exception as e:  # noqa: BLE001 - the user's code: report it as theirs
            raise UserCodeError(describe(e)) from None
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(**kwargs)
        except BaseException as e:  # noqa: BLE001 - carried back to the worker
            box["error"] = e

    helper = threading.Thread(target=run, name="odibi-transform", daemon=True)
    helper.start()
    helper.join(timeout)
    if helper.is_alive():
        raise TimedOut(f"timed out after {timeout:g}s (the Python call is abandoned)")
    if "error" in box:
        raise UserCodeError(describe(box["error"]))
    return box.get("value")


def describe(e: BaseException) -> str:
    """`KeyError: 'x' (value.py:12)`: the error and the user's innermost frame."""
    frames = traceback.extract_tb(e.__traceback__)
    here = str(Path(__file__).resolve().parent.parent)
    user = [f for f in frames if not str(Path(f.filename).resolve()).startswith(here)]
    where = f" ({Path(user[-1].filename).name}:{user[-1].lineno})" if user else ""
    return f"{type(e).__name__}: {e}{where}"


def _add_python_path(paths: Sequence[Path]) -> None:
    """Put the project's python_path first on sys.path (a later project in the same
    process, as in tests, takes precedence)."""
    for p in reversed(paths):
        if str(p) in sys.path:
            sys.path.remove(str(p))
        sys.path.insert(0, str(p))


def _inside(mod: Any, python_path: Sequence[Path]) -> bool:
    places = [getattr(mod, "__file__", None), *list(getattr(mod, "__path__", []) or [])]
    roots = [p.resolve() for p in python_path]
    return any(p is not None and any(Path(p).resolve().is_relative_to(r) for r in roots)
               for p in places)


def _purge(module: str) -> None:
    top = module.split(".")[0]
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[name]


_import_lock = threading.Lock()


def load_function(module: str, function: str, file: Path, python_path: Sequence[Path],
                  digests: dict[Path, str] | None = None) -> Callable[..., Any]:
    """Import a transform's module from this project (re-importing it if its file changed
    since, or if a module of the same name came from elsewhere). Workers import one at a
    time: sys.modules and sys.path are process-wide. `digests` (file -> source digest),
    shared by the workers of one build, reads each module's source once per build: its
    nodes all run the module as it was when the build planned them."""
    with _import_lock:
        return _load_function(module, function, file, python_path, digests)


def _load_function(module: str, function: str, file: Path, python_path: Sequence[Path],
                   digests: dict[Path, str] | None) -> Callable[..., Any]:
    mtime = digests.get(file) if digests is not None else None
    if mtime is None:  # content, not mtime: same-second edits count
        mtime = digest_bytes(file.read_bytes())
        if digests is not None:
            digests[file] = mtime
    mod = sys.modules.get(module)
    loaded_from = getattr(mod, "__file__", None) if mod is not None else None
    if mod is not None and (loaded_from is None or Path(loaded_from).resolve() != file.resolve()):
        _purge(module)
        mod = None
    if mod is not None and getattr(mod, "__odibi_mtime__", None) != mtime:
        _purge(module)
        mod = None
    if mod is None:
        top = sys.modules.get(module.split(".")[0])
        if top is not None and not _inside(top, python_path):
            _purge(module)  # a package of the same name from another project (tests, notebooks)
        _add_python_path(python_path)
        importlib.invalidate_caches()
        try:
            mod = importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - the user's module failed to import
            raise UserCodeError(f"cannot import {module}: {describe(e)}") from None
    mod.__odibi_mtime__ = mtime  # type: ignore[attr-defined]
    fn = getattr(mod, function, None)
    if not callable(fn):
        raise EngineError(f"{module} has no function {function}")
    return fn  # type: ignore[no-any-return]
