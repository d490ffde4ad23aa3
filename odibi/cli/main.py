"""`odibi` command line: dispatch and exit codes. The only `sys.exit`.

The command line is parsed by `odibi.cli.parse`, into the frozen options of the command
run; the command gets those options and an `Out`, and only its module is imported.

Exit codes (`ExitCode`): 0 ok, 1 a node/check/test failed, 2 bad command line or project,
3 internal error (a bug: shown with a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from odibi.cli import parse
from odibi.errors import UserError
from odibi.ids import ExitCode

if TYPE_CHECKING:
    from odibi.cli.render import Out


def _run(args: argparse.Namespace, out: Out) -> int:
    """Make the options of the command (raising UsageError for a mistake in them) and run
    it, importing only the command's module (start-up time is a feature)."""
    match args.command:
        case "validate":
            from odibi.cli.inspect_cmds import cmd_validate
            return cmd_validate(parse.validate_options(args), out)
        case "ls":
            from odibi.cli.inspect_cmds import cmd_ls
            return cmd_ls(parse.ls_options(args), out)
        case "graph":
            from odibi.cli.inspect_cmds import cmd_graph
            return cmd_graph(parse.graph_options(args), out)
        case "build" | "run":
            from odibi.cli.build_cmd import cmd_build
            return cmd_build(parse.build_options(args), out)
        case "plan":
            from odibi.cli.build_cmd import cmd_plan
            return cmd_plan(parse.save_plan_options(args), out)
        case "explain":
            from odibi.cli.explain_cmd import cmd_explain
            return cmd_explain(parse.explain_options(args), out)
        case "show":
            from odibi.cli.explain_cmd import cmd_show
            return cmd_show(parse.show_options(args), out)
        case "gc":
            from odibi.cli.gc_cmd import cmd_gc
            return cmd_gc(parse.gc_options(args), out)
        case "history":
            from odibi.cli.history_cmd import cmd_history
            return cmd_history(parse.history_options(args), out)
        case "test":
            from odibi.cli.test_cmd import cmd_test
            return cmd_test(parse.test_options(args), out)
        case "init":
            from odibi.cli.init_cmd import cmd_init
            return cmd_init(parse.init_options(args), out)
    raise AssertionError(f"no command {args.command!r}")  # argparse allows no other


def main(argv: Sequence[str] | None = None, *, stdout: IO[str] | None = None,
         stderr: IO[str] | None = None) -> int:
    """Run one odibi command; returns its exit code (never raises for user errors)."""
    parser = parse.build_parser()
    argv = parse.normalise(list(sys.argv[1:] if argv is None else argv))
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

    output = parse.output_options(args)
    out = Out(color=output.color, quiet=output.quiet, verbose=output.verbose,
              json_mode=output.json, stdout=stdout, stderr=stderr)
    try:
        return int(_run(args, out))
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
