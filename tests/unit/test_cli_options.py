"""The command line parsed once into frozen options: each command's options from a typical
argv (exactly what `main` hands the command), the global output flags, options that cannot
be changed once made, and the command-line mistakes found while making them (exit 2, the
message, nothing written)."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from odibi.cli import parse
from odibi.cli.build_cmd import BuildOptions, SavePlanOptions
from odibi.cli.explain_cmd import ExplainOptions, ShowOptions
from odibi.cli.gc_cmd import GcOptions
from odibi.cli.history_cmd import HistoryOptions
from odibi.cli.init_cmd import InitOptions
from odibi.cli.inspect_cmds import GraphFormat, GraphOptions, LsOptions, ValidateOptions
from odibi.cli.options import OutputOptions, ProjectOptions, Selection
from odibi.cli import test_cmd as testing  # (TestOptions would look like a test class)
from odibi.config.load import parse_var_overrides
from odibi.ids import NodeId
from tests.conftest import run_cli, write_files

# each command's function, which gets its options
COMMANDS = [("inspect_cmds", "cmd_validate"), ("inspect_cmds", "cmd_ls"),
            ("inspect_cmds", "cmd_graph"), ("build_cmd", "cmd_build"),
            ("build_cmd", "cmd_plan"), ("explain_cmd", "cmd_explain"),
            ("explain_cmd", "cmd_show"), ("gc_cmd", "cmd_gc"), ("history_cmd", "cmd_history"),
            ("test_cmd", "cmd_test"), ("init_cmd", "cmd_init")]

PROJECT = {
    "odibi.yaml": """
        project: p
        connections:
          raw: {type: local, base_path: data}
        nodes:
          - name: a
            read: {connection: raw, path: a.csv}
          - name: b
            sql: SELECT * FROM a
        """,
    "data/a.csv": "id\n1\n",
}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small valid project, the current directory (relative paths are relative to it)."""
    path = write_files(tmp_path / "p", PROJECT).resolve()
    monkeypatch.chdir(path)
    return path


def made(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(the options `main` makes from argv and hands to the command; the Out it gets),
    without running the command."""
    seen: list[tuple[Any, Any]] = []

    def record(options: Any, out: Any) -> int:
        seen.append((options, out))
        return 0

    for module, func in COMMANDS:
        monkeypatch.setattr(importlib.import_module(f"odibi.cli.{module}"), func, record)
    monkeypatch.setattr(sys, "argv", ["odibi", *argv])  # what `odibi history` records
    result = run_cli(*argv)
    assert result.code == 0, result.text
    assert len(seen) == 1
    return seen[0]


def P(root: Path, *vars: str) -> ProjectOptions:
    return ProjectOptions(root, tuple(parse_var_overrides(list(vars))))


S = Selection

# (argv, the options expected given the project root and the argv)
TABLE: list[tuple[str, Any]] = [
    ("validate", lambda r, a: ValidateOptions(P(r))),
    ("validate --no-bind --var n=5 --var s=x",
     lambda r, a: ValidateOptions(P(r, "n=5", "s=x"), bind=False)),
    ("ls", lambda r, a: LsOptions(P(r), S())),
    ("ls -l a+ -s b c --exclude d --exclude tag:x",
     lambda r, a: LsOptions(P(r), S(("a+", "b", "c"), ("d", "tag:x")), long=True)),
    ("graph --format mermaid b", lambda r, a: GraphOptions(P(r), S(("b",)), GraphFormat.MERMAID)),
    ("graph", lambda r, a: GraphOptions(P(r), S(), GraphFormat.TEXT)),
    ("build -j 3", lambda r, a: BuildOptions(P(r), S(), jobs=3, invocation=a)),
    ("run -j 2 --fail-fast --only b --exclude a -n --no-wait --no-bind --var n=1",
     lambda r, a: BuildOptions(P(r, "n=1"), S(("b",), ("a",), only=True), jobs=2,
                               fail_fast=True, dry_run=True, wait=False, bind=False,
                               invocation=a)),
    ("build -j 1 --keep-going --force b+",  # a bare --force: b+ stays the selection
     lambda r, a: BuildOptions(P(r), S(("b+",), force="*"), jobs=1, invocation=a)),
    ("build -j 1 --force=+b", lambda r, a: BuildOptions(P(r), S(force="+b"), jobs=1,
                                                        invocation=a)),
    ("build --workers 3", lambda r, a: BuildOptions(P(r), S(), jobs=3, invocation=a)),
    ("build -j 4 --plan plan.json --profile data/t.json",
     lambda r, a: BuildOptions(P(r), S(), jobs=4, plan_file="plan.json",
                               profile=Path("data/t.json"), invocation=a)),
    ("plan -o plan.json --only --force b --var n=2",
     lambda r, a: SavePlanOptions(P(r, "n=2"), S(("b",), only=True, force="*"),
                                  output="plan.json")),
    ("plan", lambda r, a: SavePlanOptions(P(r), S())),
    ("explain --only -s b --exclude a",
     lambda r, a: ExplainOptions(P(r), S(("b",), ("a",), only=True))),
    ("show b --limit 3 --var n=x", lambda r, a: ShowOptions(P(r, "n=x"), NodeId("b"), 3)),
    ("show b", lambda r, a: ShowOptions(P(r), NodeId("b"), 10)),
    ("gc", lambda r, a: GcOptions(P(r))),
    ("gc --keep 2 -n --no-wait", lambda r, a: GcOptions(P(r), keep=2, dry_run=True, wait=False)),
    ("history -n 5", lambda r, a: HistoryOptions(P(r), limit=5)),
    ("history -n 0", lambda r, a: HistoryOptions(P(r), limit=1)),  # as ever: at least one
    ("test b --exclude a", lambda r, a: testing.TestOptions(P(r), S(("b",), ("a",)))),
    ("test --generate b", lambda r, a: testing.TestOptions(P(r), S(), generate=NodeId("b"))),
    ("test --generate b --rows 3 --force",
     lambda r, a: testing.TestOptions(P(r), S(), generate=NodeId("b"), rows=3, force=True)),
    ("init new", lambda r, a: InitOptions(Path("."), "new")),
]


@pytest.mark.parametrize("argv,expected", TABLE, ids=[t[0] for t in TABLE])
def test_each_command_gets_its_options(argv: str, expected: Any, root: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    options, _ = made(argv.split(), monkeypatch)
    assert options == expected(root, f"odibi {argv}")


def test_C_names_the_project_root(root: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options, _ = made(["-C", "p", "ls"], monkeypatch)
    assert options == LsOptions(P(root), S())
    options, _ = made(["-C", "p", "init", "q"], monkeypatch)
    assert options == InitOptions(Path("p"), "q")


@pytest.mark.parametrize("argv,expected", [
    ("ls", OutputOptions()),
    ("--json ls", OutputOptions(json=True)),
    ("ls --json -q -vv --no-color", OutputOptions(color=False, quiet=True, verbose=2, json=True)),
    ("-v --no-color build -j 1", OutputOptions(color=False, verbose=1)),
])
def test_global_output_flags(argv: str, expected: OutputOptions, root: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    _, out = made(argv.split(), monkeypatch)
    assert (not out.no_color, out.quiet, out.verbose, out.json_mode) == \
        (expected.color, expected.quiet, expected.verbose, expected.json)


def _frozen_values(value: Any) -> list[Any]:
    """The options value and every options value inside it."""
    inner = [v for f in dataclasses.fields(value)
             if dataclasses.is_dataclass(v := getattr(value, f.name))]
    return [value, *(x for v in inner for x in _frozen_values(v))]


@pytest.mark.parametrize("argv", [t[0] for t in TABLE])
def test_options_are_frozen(argv: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options, _ = made(argv.split(), monkeypatch)
    for value in _frozen_values(options):
        for f in dataclasses.fields(value):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(value, f.name, getattr(value, f.name))
        with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
            value.saved_vars = {}  # nothing is added to them after parsing either
        assert isinstance(hash(value), int)


def test_options_are_made_once_per_command(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made_: list[LsOptions] = []
    real = parse.ls_options

    def counting(args: Any) -> LsOptions:
        made_.append(real(args))
        return made_[-1]

    monkeypatch.setattr(parse, "ls_options", counting)
    result = run_cli("ls", "b", "--exclude", "a")
    assert (result.code, result.out) == (0, "b\n")
    assert made_ == [LsOptions(P(root), S(("b",), ("a",)))]


# -- mistakes found while making the options -------------------------------------------------
MISTAKES = [
    ("build -j 0", "error: -j must be at least 1, got 0"),
    ("build --workers 0 -j -2", "error: -j must be at least 1, got -2"),
    ("build --profile nodir/t.json",
     "error: --profile nodir/t.json: the directory nodir does not exist"),
    ("build --plan plan.json b", "error: --plan runs exactly the saved plan: give no "
                                 "selectors, --exclude, --only, --force or --var with it"),
    ("build --plan plan.json --var n=1", "error: --plan runs exactly the saved plan: give "
                                         "no selectors, --exclude, --only, --force or --var "
                                         "with it"),
    ("build --plan plan.json --force", "error: --plan runs exactly the saved plan: give no "
                                       "selectors, --exclude, --only, --force or --var with it"),
    ("build --var =5", "error: --var expects NAME=VALUE, got '=5'"),
    ("explain --var n", "error: --var expects NAME=VALUE, got 'n'"),
    ("gc --keep -1", "error: --keep must be 0 or more, got -1"),
    ("show b --limit -1", "error: --limit must be 0 or more, got -1"),
    ("test --rows 3", "error: --force and --rows go with --generate NODE"),
    ("test --force", "error: --force and --rows go with --generate NODE"),
    ("test --generate b a", "error: --generate takes one NODE, not selectors"),
    ("test --generate b --exclude a", "error: --generate takes one NODE, not selectors"),
    ("test --generate b --rows 0", "error: --rows must be 1 or more, got 0"),
    ("-C nosuch ls", "error: -C nosuch: no such directory"),
    # the command's own flags come first, then -C, then --var
    ("-C nosuch build -j 0", "error: -j must be at least 1, got 0"),
    ("-C nosuch build --var =5", "error: -C nosuch: no such directory"),
]


@pytest.mark.parametrize("argv,message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_command_line_mistakes(argv: str, message: str, root: Path) -> None:
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    result = run_cli(*argv.split())
    assert result.code == 2, result.text
    assert result.err.splitlines()[0] == message
    assert "Traceback" not in result.text and result.out == ""
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_no_project_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("build", "-j", "1")
    assert result.code == 2
    assert result.err.splitlines() == [
        f"error: no odibi.yaml in {tmp_path.resolve()}",
        "hint: run odibi in a project directory, pass -C DIR, or create one with "
        "'odibi init DIR'"]
    assert list(tmp_path.iterdir()) == []
