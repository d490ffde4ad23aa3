"""Python transforms, seen without importing them.

A node `python: transforms.value:score` names a function in a module found on the
project's `python_path`. Its inputs are its parameters (each a node name, received as a
DataFrame); its logic digest is the module file's source plus the function name. Reading
the source with `ast` keeps pandas and the user's imports out of planning.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odibi.errors import ConfigError, Span
from odibi.pickling import compact_pickle


@compact_pickle
@dataclass(frozen=True, slots=True)
class PyFunction:
    module: str
    function: str
    file: Path
    params: tuple[str, ...]  # every named parameter, in order
    required: tuple[str, ...]  # those without a default
    var_keyword: bool  # has **kwargs: inputs come from depends_on
    pandas: tuple[str, ...] = ()  # parameters annotated pandas.DataFrame


@dataclass(frozen=True, slots=True)
class ModuleMissing:
    module: str


@dataclass(frozen=True, slots=True)
class FunctionMissing:
    file: Path
    functions: tuple[str, ...]  # the functions the module does define


def locate_module(module: str, python_path: tuple[Path, ...]) -> Path | None:
    rel = Path(*module.split("."))
    for base in python_path:
        for candidate in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def module_names(python_path: tuple[Path, ...], depth: int = 3) -> list[str]:
    """Dotted names of the modules on `python_path` (for did-you-mean hints)."""
    names: list[str] = []
    for base in python_path:
        for dirpath, dirnames, filenames in os.walk(base):
            rel = Path(dirpath).relative_to(base)
            if len(rel.parts) >= depth:
                dirnames[:] = []
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            for f in filenames:
                if f.endswith(".py"):
                    parts = [*rel.parts, f[:-3]] if f != "__init__.py" else list(rel.parts)
                    if parts:
                        names.append(".".join(parts))
    return names


def inspect_function(module: str, function: str, python_path: tuple[Path, ...]
                     ) -> PyFunction | ModuleMissing | FunctionMissing:
    """Find `function` in `module` by reading its source. A module that does not parse is a
    ConfigError located in the module."""
    path = locate_module(module, python_path)
    if path is None:
        return ModuleMissing(module)
    import ast  # deferred: only resolving a Python node needs it

    source = path.read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise ConfigError(f"{module} does not parse: {e.msg}",
                          span=Span(str(path), e.lineno or 1, e.offset or 1)) from None
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == function:
            return _signature(stmt, module, path)
    return FunctionMissing(path, tuple(s.name for s in tree.body
                                       if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))))


def _signature(fn: Any, module: str, path: Path) -> PyFunction:
    a = fn.args
    if a.vararg is not None:
        raise ConfigError(f"{module}:{fn.name} takes *{a.vararg.arg}; inputs are passed by name",
                          span=Span(str(path), fn.lineno, fn.col_offset + 1),
                          hint="name each input as a parameter, or take **inputs with depends_on")
    positional = a.posonlyargs + a.args
    n_defaults = len(a.defaults)
    required = [p.arg for p in positional[: len(positional) - n_defaults]]
    required += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    params = [p.arg for p in positional] + [p.arg for p in a.kwonlyargs]
    pandas = tuple(p.arg for p in positional + a.kwonlyargs
                   if p.annotation is not None and _is_pandas(p.annotation))
    return PyFunction(module, fn.name, path, tuple(params), tuple(required), a.kwarg is not None,
                      pandas)


def _is_pandas(annotation: Any) -> bool:
    """`pd.DataFrame`, `pandas.DataFrame` (or the same as a string): the parameter wants
    pandas, whatever DataFrame type the engine hands Python nodes."""
    import ast  # (imported where parsing happens, as above)

    text = ast.unparse(annotation).strip("'\"")
    return text in ("pd.DataFrame", "pandas.DataFrame")
