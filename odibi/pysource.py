"""Python transforms, seen without importing them.

A node `python: transforms.value:score` names a function in a module found on the
project's `python_path`. Its inputs are its parameters (each a node name, received as a
DataFrame); its logic digest is the module file's source plus the function name. Reading
the source with `ast` keeps pandas and the user's imports out of planning.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from odibi.errors import ConfigError, Span, did_you_mean


@dataclass(frozen=True, slots=True)
class PyFunction:
    module: str
    function: str
    file: Path
    params: tuple[str, ...]  # every named parameter, in order
    required: tuple[str, ...]  # those without a default
    var_keyword: bool  # has **kwargs: inputs come from depends_on


def locate_module(module: str, python_path: tuple[Path, ...]) -> Path | None:
    rel = Path(*module.split("."))
    for base in python_path:
        for candidate in (base / rel.with_suffix(".py"), base / rel / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def inspect_function(module: str, function: str, python_path: tuple[Path, ...],
                     span: Span, node: str, source: bytes | None = None) -> PyFunction:
    """Find `function` in `module` by reading its source. Raises ConfigError naming the node."""
    path = locate_module(module, python_path)
    if path is None:
        where = ", ".join(str(p) for p in python_path)
        raise ConfigError(f"node '{node}': module '{module}' not found", span=span, node=node,
                          hint=f"looked in python_path: {where}")
    if source is None:
        source = path.read_bytes()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as e:
        raise ConfigError(f"node '{node}': {module} does not parse: {e.msg}",
                          span=Span(str(path), e.lineno or 1, e.offset or 1), node=node) from None
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == function:
            return _signature(stmt, module, path, span, node)
    names = [s.name for s in tree.body if isinstance(s, ast.FunctionDef)]
    raise ConfigError(f"node '{node}': no function '{function}' in {module} ({path})",
                      span=span, node=node, hint=did_you_mean(function, names))


def _signature(fn: ast.FunctionDef | ast.AsyncFunctionDef, module: str, path: Path,
               span: Span, node: str) -> PyFunction:
    a = fn.args
    if a.vararg is not None:
        raise ConfigError(f"node '{node}': {module}:{fn.name} takes *{a.vararg.arg}; inputs are "
                          "passed by name", span=span, node=node,
                          hint="name each input as a parameter, or take **inputs with depends_on")
    positional = a.posonlyargs + a.args
    n_defaults = len(a.defaults)
    required = [p.arg for p in positional[: len(positional) - n_defaults]]
    required += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None]
    params = [p.arg for p in positional] + [p.arg for p in a.kwonlyargs]
    return PyFunction(module, fn.name, path, tuple(params), tuple(required), a.kwarg is not None)
