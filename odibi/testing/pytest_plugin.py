"""pytest plugin: collects odibi's YAML tests, so `pytest` runs them with a project's
other tests (registered as the `odibi` plugin through the `pytest11` entry point).

What is collected: a file named `test_*.yaml` or `test_*.yml` that lies in a `tests/`
directory (at any depth below it) of an odibi project (that directory's parent holds
`odibi.yaml`), and whose text has a top-level `tests:` key. Each case is one item, run
exactly as `odibi test` runs it; a failure shows the same row difference. A mistake in a
test file is a collection error with its file, line and column.

Opting out: `-p no:odibi` on the command line, or `odibi_yaml_tests = false` in the pytest
ini file (pytest.ini, [tool.pytest.ini_options], ...).

Nothing heavy is imported when pytest starts: odibi's loader on the first YAML test file
collected, the engine (DuckDB; pandas for Python nodes) when the first case runs. Every
case of the run shares one scratch engine, sandboxed as `odibi test`'s is: its SQL
reaches the fixture files of the collected cases and nothing else. Cases of a project
whose SQL is Spark SQL (`sql_dialect: spark`) share a local Spark session instead, as
`odibi test` runs them (one started for the run, or the one already running).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

INI = "odibi_yaml_tests"
_TOP_LEVEL_TESTS = re.compile(r"^tests[ \t]*:", re.M)
_SHARED = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI, type="bool", default=True,
                  help="collect odibi's YAML tests (tests/**/test_*.yaml of odibi projects)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml") or not file_path.name.startswith("test_"):
        return None
    if not parent.config.getini(INI):
        return None
    root = project_root(file_path)
    if root is None:
        return None
    try:
        if not _TOP_LEVEL_TESTS.search(file_path.read_text(encoding="utf-8", errors="replace")):
            return None
    except OSError:
        return None
    return OdibiTestFile.from_parent(parent, path=file_path, root=root)


def project_root(path: Path) -> Path | None:
    """The odibi project whose `tests/` directory holds `path`, if any."""
    for d in path.parents:
        if d.name == "tests" and (d.parent / "odibi.yaml").is_file():
            return d.parent
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(_SHARED, None)
    for scratch in (shared or {}).get("scratch", {}).values():
        scratch.close()


def _shared(config: pytest.Config) -> dict[str, Any]:
    if _SHARED not in config.stash:
        config.stash[_SHARED] = {"projects": {}, "files": set(), "scratch": {}}
    return config.stash[_SHARED]


def _project(config: pytest.Config, root: Path) -> Any:
    """The resolved project (loaded once per run), with the build state's caches if any."""
    projects = _shared(config)["projects"]
    if root not in projects:
        from odibi.builder import load, open_state

        state = open_state(root, writable=False)
        try:
            projects[root] = load(root, [], state)
        finally:
            state.close()
    return projects[root]


def _scratch(config: pytest.Config, project: Any) -> Any:
    """One scratch engine for every case of the run whose project's SQL is of one dialect
    (DuckDB, Spark), opened when the first such case runs (every test file is collected
    by then), reaching the collected cases' fixture files."""
    shared = _shared(config)
    dialect = project.sql_dialect
    if dialect not in shared["scratch"]:
        from odibi.testing.runner import open_files

        shared["scratch"][dialect] = open_files(shared["files"], project)
    return shared["scratch"][dialect]


class OdibiTestFile(pytest.File):
    def __init__(self, *, root: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root

    def collect(self) -> Any:
        from odibi.testing.cases import load_cases
        from odibi.testing.runner import check_case, fixture_files

        resolved = _project(self.config, self.root)
        rel = self.path.relative_to(self.root).as_posix()
        for case in load_cases(self.root, rel):
            check_case(resolved, case)
            _shared(self.config)["files"].update(fixture_files([case]))
            yield OdibiTestItem.from_parent(self, name=case.name, case=case)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:
        text = _user_error(excinfo.value)
        return text if text is not None else super().repr_failure(excinfo)


class CaseFailed(Exception):
    """A YAML test case did not pass; its text is the message and the row difference."""


class OdibiTestItem(pytest.Item):
    def __init__(self, *, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from odibi.testing.runner import run_case

        parent = self.parent
        assert isinstance(parent, OdibiTestFile)
        resolved = _project(self.config, parent.root)
        result = run_case(_scratch(self.config, resolved.project), resolved, self.case)
        if not result.ok:
            detail = result.diff.text() if result.diff is not None else f"  {result.message}"
            raise CaseFailed(f"odibi test {self.case.id} ({self.case.node}) failed\n{detail}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseFailed):
            return str(excinfo.value)
        text = _user_error(excinfo.value)
        return text if text is not None else super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.case.span.line - 1, f"odibi test {self.case.id}"


def _user_error(exc: BaseException) -> str | None:
    from odibi.errors import UserError

    if not isinstance(exc, UserError):
        return None
    if exc.span is None:
        return str(exc) + (f"\nhint: {exc.hint}" if exc.hint else "")
    import os

    where = exc.span.file
    if not where.startswith("<") and not os.path.relpath(where).startswith(".."):
        where = os.path.relpath(where)
    text = f"{where}:{exc.span.line}:{exc.span.col}: error: {exc.message}"
    return text + (f"\nhint: {exc.hint}" if exc.hint else "")
