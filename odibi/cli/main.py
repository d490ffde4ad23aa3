"""`odibi` command line: argument parsing, dispatch and exit codes. The only `sys.exit`.

Exit codes (`ExitCode`): 0 ok, 1 a node/check/test failed, 2 bad command line or project,
3 internal error (a bug: shown with a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import IO

from odibi import __version__
from odibi.errors import UserError
from odibi.ids import ExitCode

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

    for name in ("build", "run"):
        p = sub.add_parser(name, parents=[common],
                           help="rebuild what changed" if name == "build" else "same as build")
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
    return parser


_COMMANDS = {
    "validate": "inspect_cmds:cmd_validate",
    "ls": "inspect_cmds:cmd_ls",
    "graph": "inspect_cmds:cmd_graph",
    "init": "init_cmd:cmd_init",
    "build": "build_cmd:cmd_build",
    "run": "build_cmd:cmd_build",
    "explain": "explain_cmd:cmd_explain",
    "show": "explain_cmd:cmd_show",
    "history": "history_cmd:cmd_history",
    "plan": "build_cmd:cmd_plan",
    "gc": "gc_cmd:cmd_gc",
    "test": "test_cmd:cmd_test",
}


def _dispatch(args: argparse.Namespace) -> Callable[..., int]:
    """Import only the module of the command being run (start-up time is a feature)."""
    import importlib

    module, func = _COMMANDS[args.command].split(":")
    return getattr(importlib.import_module(f"odibi.cli.{module}"), func)  # type: ignore[no-any-return]


def _command(argv: list[str]) -> str | None:
    """The command word: the first argument that is not a global option (or -C's DIR)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "-C":
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def main(argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    """Run one odibi command; returns its exit code (never raises for user errors)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # a bare --force means "all selected"; only --force=SELECTOR takes a value, so that
    # `build --force stg+` keeps stg+ as the selection (argparse cannot tell them apart)
    if _command(argv) != "test":  # (test's --force is a plain flag)
        argv = ["--force=*" if a == "--force" else a for a in argv]
    try:
        with contextlib.redirect_stdout(stdout or sys.stdout), \
                contextlib.redirect_stderr(stderr or sys.stderr):
            args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help(stdout or sys.stdout)
        return ExitCode.USER_ERROR
    from odibi.cli.render import Out

    out = Out(color=not args.no_color, quiet=args.quiet, verbose=args.verbose,
              json_mode=args.json, stdout=stdout, stderr=stderr)
    try:
        return int(_dispatch(args)(args, out))
    except UserError as e:
        out.error(e)
        return ExitCode.USER_ERROR
    except KeyboardInterrupt:
        out.err("interrupted")
        return ExitCode.INTERRUPTED
    except Exception as e:  # noqa: BLE001 - anything else is a bug: show it in full
        out.internal_error(e)
        return ExitCode.INTERNAL_ERROR


def entry() -> None:
    sys.exit(main())
