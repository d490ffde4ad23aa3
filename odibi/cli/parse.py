"""The command line: its grammar (argparse), and the only reading of what argparse parsed.

`build_parser()` defines every command and option; `normalise(argv)` fixes up what argparse
cannot tell apart; the `*_options(args)` functions turn the Namespace into the command's
frozen options (defined beside each command, made of the parts in `odibi.cli.options`).
No Namespace goes further than this module.

Guarantees: every mistake on the command line that needs no project (`-j 0`, a --profile
directory that does not exist, `--keep -1`, `--var =5`, ...) is a `UsageError` raised while
making the options, before anything is read or written, with the message it always had.
They are checked in a fixed order: the command's own flags, then -C and the project root,
then --var; a mistake in the project itself is found later, when the command loads it.
Making options reads no project file, and imports only the module of the command run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from odibi import __version__
from odibi.errors import UsageError
from odibi.ids import NodeId

if TYPE_CHECKING:
    from argparse import _SubParsersAction as Subparsers

    from odibi.cli.build_cmd import BuildOptions, SavePlanOptions
    from odibi.cli.explain_cmd import ExplainOptions, ShowOptions
    from odibi.cli.gc_cmd import GcOptions
    from odibi.cli.history_cmd import HistoryOptions
    from odibi.cli.init_cmd import InitOptions
    from odibi.cli.inspect_cmds import GraphOptions, LsOptions, ValidateOptions
    from odibi.cli.options import OutputOptions, ProjectOptions, Selection
    from odibi.cli.test_cmd import TestOptions


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)  # noqa: E731
    parser.add_argument("-C", dest="directory", metavar="DIR", default=d("."),
                        help="run as if odibi was started in DIR")
    parser.add_argument("--json", action="store_true", default=d(False),
                        help="machine-readable output")
    parser.add_argument("-q", "--quiet", action="store_true", default=d(False),
                        help="print only errors")
    parser.add_argument("-v", "--verbose", action="count", default=d(0),
                        help="more detail (repeatable)")
    parser.add_argument("--no-color", action="store_true", default=d(False),
                        help="no colours (also: NO_COLOR=1)")
    parser.add_argument("--target", dest="build_target", metavar="NAME", default=d(None),
                        help="build on this target of odibi.yaml (default: the first)")


def _selector_args(p: argparse.ArgumentParser, *, only: bool = False) -> None:
    p.add_argument("select", nargs="*", metavar="SELECTOR",
                   help="nodes to include: name, +name, name+, tag:x, pipeline:x, path:x, globs")
    p.add_argument("-s", "--select", dest="select_opt", action="extend", nargs="+", default=[],
                   metavar="SELECTOR", help="the same as the positional SELECTOR (as in dbt)")
    p.add_argument("--exclude", action="append", default=[], metavar="SELECTOR",
                   help="nodes to leave out (repeatable)")
    if only:
        p.add_argument("--only", action="store_true",
                       help="run just the selected nodes, from their upstreams' last outputs "
                            "(as dbt does); by default a selected node brings every "
                            "out-of-date ancestor up to date too (as make does)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odibi",
        description="A declarative build engine for data pipelines: rebuilds exactly what "
                    "changed, says why, runs the rest in parallel.",
        epilog="exit codes: 0 ok, 1 a node/check/test failed, 2 bad command line or project, "
               "3 internal error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"odibi {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    # in this order in --help
    _inspect_parsers(sub, common)
    for name in ("build", "run"):
        _build_parser(sub.add_parser(
            name, parents=[common],
            help="rebuild what changed" if name == "build" else "same as build"))
    _other_parsers(sub, common)
    _reading_parsers(sub, common)
    return parser


def _inspect_parsers(sub: Subparsers[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """validate, ls, graph"""
    p = sub.add_parser("validate", parents=[common], help="check the project without running it")
    p.add_argument("--var", action="append", default=[], metavar="K=V")
    p.add_argument("--no-bind", action="store_true",
                   help="skip binding SQL to its inputs' columns (no DuckDB)")

    p = sub.add_parser("ls", parents=[common], help="list nodes")
    _selector_args(p)
    p.add_argument("-l", "--long", action="store_true", help="a table with kind, pipeline, inputs")

    p = sub.add_parser("graph", parents=[common], help="print the dependency graph")
    _selector_args(p)
    p.add_argument("--format", choices=("text", "dot", "mermaid"), default="text")


def _build_parser(p: argparse.ArgumentParser) -> None:
    """`build` and its alias `run`."""
    _selector_args(p, only=True)
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="run N nodes at a time (default: the number of CPUs)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--parallel", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--keep-going", dest="fail_fast", action="store_false", default=False,
                      help="independent branches go on after a failure (default)")
    mode.add_argument("--fail-fast", dest="fail_fast", action="store_true",
                      help="start nothing new after the first failure")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="print what would run and why; run nothing")
    p.add_argument("--force", nargs="?", const="*", default=None, metavar="SELECTOR",
                   help="rebuild even if up to date (the selected nodes, or SELECTOR)")
    p.add_argument("--var", action="append", default=[], metavar="K=V",
                   help="override a project variable")
    p.add_argument("--plan", metavar="FILE",
                   help="run exactly this saved plan (refused if anything drifted)")
    p.add_argument("--profile", metavar="FILE",
                   help="write a Chrome trace-event timeline (Perfetto, chrome://tracing)")
    p.add_argument("--no-wait", action="store_true",
                   help="fail (exit 2) instead of waiting when another build is running")
    p.add_argument("--no-bind", action="store_true",
                   help="skip binding the SQL to run to its inputs' columns first")


def _other_parsers(sub: Subparsers[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """plan, gc, history"""
    p = sub.add_parser("plan", parents=[common], help="save what a build would do, to review "
                                                      "and run later with build --plan")
    _selector_args(p, only=True)
    p.add_argument("-o", "--output", metavar="FILE", help="write the plan here (default: stdout)")
    p.add_argument("--force", nargs="?", const="*", default=None, metavar="SELECTOR")
    p.add_argument("--var", action="append", default=[], metavar="K=V")

    p = sub.add_parser("gc", parents=[common], help="drop stored outputs nothing points at")
    p.add_argument("--keep", type=int, default=0, metavar="N",
                   help="also keep the N most recent earlier versions of each node")
    p.add_argument("-n", "--dry-run", action="store_true", help="say what would be dropped")
    p.add_argument("--no-wait", action="store_true",
                   help="fail instead of waiting when a build is running")

    p = sub.add_parser("history", parents=[common], help="recent builds")
    p.add_argument("-n", "--limit", type=int, default=20, metavar="N")



def _reading_parsers(sub: Subparsers[argparse.ArgumentParser],
                     common: argparse.ArgumentParser) -> None:
    """explain, show, test, init"""
    p = sub.add_parser("explain", parents=[common], help="why each node will (or won't) run")
    _selector_args(p, only=True)
    p.add_argument("--var", action="append", default=[], metavar="K=V")

    p = sub.add_parser("show", parents=[common], help="the first rows of a node's output")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--limit", type=int, default=10, metavar="N")
    p.add_argument("--var", action="append", default=[], metavar="K=V")

    p = sub.add_parser("test", parents=[common],
                       help="unit-test nodes on the fixtures of tests/**/test_*.yaml")
    _selector_args(p)
    p.add_argument("--generate", metavar="NODE", default=None,
                   help="write tests/test_NODE.yaml from a sample of the last build")
    p.add_argument("--rows", type=int, default=None, metavar="N",
                   help="with --generate: rows sampled from each input (default: 5)")
    p.add_argument("--force", action="store_true",
                   help="with --generate: replace an existing test file")

    p = sub.add_parser("init", parents=[common], help="create a working example project")
    p.add_argument("target", metavar="DIR")


def _command(argv: list[str]) -> str | None:
    """The command word: the first argument that is not a global option (or -C's DIR)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in ("-C", "--target"):
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def normalise(argv: list[str]) -> list[str]:
    """A bare --force means "all selected"; only --force=SELECTOR takes a value, so that
    `build --force stg+` keeps stg+ as the selection (argparse cannot tell them apart)."""
    if _command(argv) == "test":  # (test's --force is a plain flag)
        return argv
    return ["--force=*" if a == "--force" else a for a in argv]


# -- the parts several commands share --------------------------------------------------------
def output_options(args: argparse.Namespace) -> OutputOptions:
    """The global output flags (every command has them; they never fail)."""
    from odibi.cli.options import OutputOptions

    return OutputOptions(color=not args.no_color, quiet=args.quiet, verbose=args.verbose,
                         json=args.json)


def _project(args: argparse.Namespace, var: list[str] | None = None) -> ProjectOptions:
    """-C DIR (it must exist and hold odibi.yaml), then the --var overrides."""
    from odibi.cli.options import ProjectOptions
    from odibi.config.load import find_project_root, parse_var_overrides

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"-C {args.directory}: no such directory")
    root = find_project_root(directory.resolve())
    target = getattr(args, "build_target", None)
    if target is not None:
        from odibi.config.targets import first_target

        if target == first_target(root):  # the default target: its state is .odibi/
            target = None
    return ProjectOptions(root, tuple(parse_var_overrides(var or [])), target)


def _selection(args: argparse.Namespace, *, only: bool = False,
               force: str | None = None) -> Selection:
    from odibi.cli.options import Selection

    return Selection(selectors=(*args.select, *args.select_opt), exclude=tuple(args.exclude),
                     only=only, force=force)


# -- each command's options ------------------------------------------------------------------
def validate_options(args: argparse.Namespace) -> ValidateOptions:
    from odibi.cli.inspect_cmds import ValidateOptions

    return ValidateOptions(_project(args, args.var), bind=not args.no_bind)


def ls_options(args: argparse.Namespace) -> LsOptions:
    from odibi.cli.inspect_cmds import LsOptions

    return LsOptions(_project(args), _selection(args), long=args.long)


def graph_options(args: argparse.Namespace) -> GraphOptions:
    from odibi.cli.inspect_cmds import GraphFormat, GraphOptions

    return GraphOptions(_project(args), _selection(args), GraphFormat(args.format))


def build_options(args: argparse.Namespace) -> BuildOptions:
    from odibi.cli.build_cmd import BuildOptions

    jobs = args.jobs if args.jobs is not None else (args.workers or os.cpu_count() or 1)
    if jobs < 1:
        raise UsageError(f"-j must be at least 1, got {jobs}")
    if args.profile and not Path(args.profile).parent.is_dir():
        raise UsageError(f"--profile {args.profile}: the directory "
                         f"{Path(args.profile).parent} does not exist")
    selection = _selection(args, only=args.only, force=args.force)
    if args.plan and (selection.narrowed or selection.force or args.var or selection.only):
        raise UsageError("--plan runs exactly the saved plan: give no selectors, --exclude, "
                         "--only, --force or --var with it")
    return BuildOptions(
        _project(args, args.var), selection, jobs=jobs, fail_fast=args.fail_fast,
        dry_run=args.dry_run, plan_file=args.plan or None,
        profile=Path(args.profile) if args.profile else None, wait=not args.no_wait,
        bind=not args.no_bind,
        invocation=" ".join(["odibi", *sys.argv[1:]]) if sys.argv[1:] else "odibi build")


def save_plan_options(args: argparse.Namespace) -> SavePlanOptions:
    from odibi.cli.build_cmd import SavePlanOptions

    selection = _selection(args, only=args.only, force=args.force)
    return SavePlanOptions(_project(args, args.var), selection, output=args.output)


def explain_options(args: argparse.Namespace) -> ExplainOptions:
    from odibi.cli.explain_cmd import ExplainOptions

    return ExplainOptions(_project(args, args.var), _selection(args, only=args.only))


def show_options(args: argparse.Namespace) -> ShowOptions:
    from odibi.cli.explain_cmd import ShowOptions

    if args.limit < 0:
        raise UsageError(f"--limit must be 0 or more, got {args.limit}")
    return ShowOptions(_project(args, args.var), NodeId(args.node), limit=args.limit)


def gc_options(args: argparse.Namespace) -> GcOptions:
    from odibi.cli.gc_cmd import GcOptions

    if args.keep < 0:
        raise UsageError(f"--keep must be 0 or more, got {args.keep}")
    return GcOptions(_project(args), keep=args.keep, dry_run=args.dry_run,
                     wait=not args.no_wait)


def history_options(args: argparse.Namespace) -> HistoryOptions:
    from odibi.cli.history_cmd import HistoryOptions

    return HistoryOptions(_project(args), limit=max(1, args.limit))


def test_options(args: argparse.Namespace) -> TestOptions:
    from odibi.cli.test_cmd import TestOptions

    selection = _selection(args)
    if args.generate is None:
        if args.force or args.rows is not None:
            raise UsageError("--force and --rows go with --generate NODE")
        return TestOptions(_project(args), selection)
    if selection.narrowed:
        raise UsageError("--generate takes one NODE, not selectors")
    rows = 5 if args.rows is None else args.rows
    if rows < 1:
        raise UsageError(f"--rows must be 1 or more, got {rows}")
    return TestOptions(_project(args), selection, generate=NodeId(args.generate), rows=rows,
                       force=args.force)


def init_options(args: argparse.Namespace) -> InitOptions:
    from odibi.cli.init_cmd import InitOptions

    return InitOptions(Path(args.directory), args.target)
