"""The module layering of ARCHITECTURE.md: imports go downward only, heavy libraries
(duckdb, pandas) are imported at module level only inside odibi/engines/, and the engine
boundary: DuckDB is reached only through odibi/engines/ (and the SQL analysis of sql.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "odibi"

# module (or package prefix) -> layer; a module may import strictly lower layers, and
# modules of its own package (config.*, cli.*, engines.*, expr.*, testing.*).
LAYERS = {
    "odibi": 0, "odibi.errors": 0.1, "odibi.ids": 0, "odibi.paths": 0, "odibi.pickling": 0, "odibi.hashing": 0.5, "odibi.events": 1,
    "odibi.grammars": 0.5,
    "odibi.expr": 1.5,
    "odibi.sqlinfo": 1.8, "odibi.sql_spark": 1.9, "odibi.dialects": 2.5,
    "odibi.config": 2, "odibi.sql": 2, "odibi.pysource": 2,
    "odibi.graph": 3, "odibi.select": 3.5, "odibi.rulesets": 3.2, "odibi.resolve": 3.5, "odibi.guards": 3.6, "odibi.trace": 3.8,
    "odibi.fingerprint": 4, "odibi.state": 4, "odibi.lockfile": 4.5, "odibi.reasons": 4.8, "odibi.buildlock": 1,
    "odibi.planner": 5, "odibi.saved_plan": 5.5,
    "odibi.engines": 6, "odibi.rules": 6.5, "odibi.bind": 6.6,
    "odibi.collect": 7,
    "odibi.warehouse": 7.1, "odibi.project_cache": 7.1, "odibi.prepare": 7.2,
    "odibi.jobs": 7.3, "odibi.worker": 7.32, "odibi.pool": 7.34, "odibi.holds": 7.36,
    "odibi.schedule": 7.37, "odibi.recording": 7.37, "odibi.executor": 7.4, "odibi.builder": 7.5, "odibi.testing": 7.7,
    "odibi.cli": 8, "odibi.__main__": 9,
}
HEAVY = ("duckdb", "pandas", "numpy", "pyarrow")


def _layer(module: str) -> tuple[str, float]:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return key, LAYERS[key]
    raise AssertionError(f"{module} has no layer in LAYERS: add it")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "scaffold" in path.parts:
            continue
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out.append((name, path))
    return out


def _imports(path: Path, *, top_level_only: bool) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_go_downward(module: str, path: Path) -> None:
    own_key, own = _layer(module)
    for target, line in _imports(path, top_level_only=False):
        if not target.startswith("odibi"):
            continue
        key, layer = _layer(target)
        if key == own_key and key != "odibi":
            continue  # within one package
        assert layer < own or target == "odibi", (
            f"{path.name}:{line}: {module} (layer {own}) imports {target} (layer {layer})")


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_heavy_imports_only_in_engines(module: str, path: Path) -> None:
    if module.startswith("odibi.engines"):
        return
    for target, line in _imports(path, top_level_only=True):
        assert target.split(".")[0] not in HEAVY, (
            f"{path.name}:{line}: module-level import of {target} outside odibi/engines "
            "(import it inside the function that needs it)")


# the engine boundary (issue 16): besides odibi/engines/, only the SQL analysis reads DuckDB
DUCKDB_ALLOWED = ("odibi.sql",)


def _every_import(path: Path) -> list[tuple[str, int]]:
    """Every module a file imports, at any level (in functions too): `import a.b`,
    `from a import b` (as `a` and `a.b`: b may be a module), and `importlib.import_module`
    / `__import__` of a constant name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.args[0].value, node.lineno))
    return found


def _reaches_duckdb(target: str) -> bool:
    parts = target.split(".")
    return parts[0] == "duckdb" or (parts[:2] == ["odibi", "engines"] and len(parts) > 2
                                   and parts[2].startswith("duckdb"))


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_duckdb_only_behind_the_engine_boundary(module: str, path: Path) -> None:
    if module.startswith("odibi.engines") or module in DUCKDB_ALLOWED:
        return
    for target, line in _every_import(path):
        assert not _reaches_duckdb(target), (
            f"{path.name}:{line}: {module} imports {target}: outside odibi/engines/, data is "
            "reached through odibi.engines (open_engine, open_scratch, open_binder, ...) "
            "and the interfaces of engines/base.py and engines/tools.py")


def test_the_boundary_check_sees_every_form_of_import(tmp_path: Path) -> None:
    forms = {"import duckdb": True, "import duckdb.typing": True,
             "from duckdb import connect": True,
             "def f():\n    import duckdb\n": True,
             "from odibi.engines.duckdb_engine import DuckDBEngine": True,
             "from odibi.engines import duckdb_bind": True,
             "import odibi.engines.duckdb_sandbox": True,
             "import importlib\nimportlib.import_module('duckdb')": True,
             "__import__('duckdb')": True,
             "from odibi.engines import open_engine": False,
             "from odibi.engines.base import Engine": False,
             "from odibi.engines.tools import Rows": False,
             "import duckdbx": False}
    for code, reaches in forms.items():
        path = tmp_path / "m.py"
        path.write_text(code + "\n")
        assert any(_reaches_duckdb(t) for t, _ in _every_import(path)) is reaches, code


def test_rich_only_in_render() -> None:
    for module, path in _modules():
        if module == "odibi.cli.render":
            continue
        for target, line in _imports(path, top_level_only=True):
            assert not target.startswith("rich"), f"{path.name}:{line} imports rich"


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys, io; from odibi.cli.main import main; "
            "main(['--help'], stdout=io.StringIO()); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{HEAVY!r} or m.split('.')[0] in ('rich', 'lark')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]"


ENGINE_FREE = ("odibi.planner", "odibi.reasons", "odibi.state", "odibi.fingerprint",
               "odibi.expr", "odibi.trace", "odibi.lockfile", "odibi.graph")


@pytest.mark.parametrize("module,path", [(m, p) for m, p in _modules()
                                         if m.startswith(ENGINE_FREE)],
                         ids=[m for m, _ in _modules() if m.startswith(ENGINE_FREE)])
def test_the_rebuilder_imports_no_engine(module: str, path: Path) -> None:
    """What decides whether a node runs (planner, state, fingerprints, rules' meaning) knows
    no engine: a second engine changes none of it."""
    for target, line in _imports(path, top_level_only=False):
        assert not target.startswith("odibi.engines"), (
            f"{path.name}:{line}: {module} imports {target}")


def test_a_no_op_build_imports_no_engine_module_but_the_warehouse_stamp(tmp_path: Path) -> None:
    """A no-op build asks the engine only for its warehouse's stamp: the engine's modules
    (and the scheduler's) stay unimported."""
    from tests.conftest import write_files

    root = write_files(tmp_path / "p", {
        "odibi.yaml": "project: p\nconnections:\n  raw: {type: local, base_path: data}\n"
                      "nodes:\n  - name: a\n    read: {connection: raw, path: a.csv}\n"
                      "  - name: b\n    sql: SELECT * FROM a\n",
        "data/a.csv": "x\n1\n"})
    build = ("import sys; from odibi.cli.main import main; "
             f"assert main(['-C', {str(root)!r}, 'build', '-q']) == 0; "
             "print(' '.join(sorted(sys.modules)))")
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True)  # cold
    loaded = set(subprocess.run([sys.executable, "-c", build], check=True,
                                capture_output=True, text=True).stdout.split())
    assert "odibi.engines.duckdb_files" in loaded  # (the stamp)
    assert not loaded & {"duckdb", "pandas", "odibi.engines.duckdb_engine",
                         "odibi.engines.duckdb_sandbox", "odibi.executor", "odibi.pool",
                         "odibi.worker", "odibi.jobs", "odibi.holds", "odibi.bind"}, \
        sorted(m for m in loaded if m.startswith("odibi"))
