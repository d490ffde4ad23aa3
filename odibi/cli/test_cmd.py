"""`odibi test [SELECTOR ...]`: run the project's unit tests (tests/**/test_*.yaml).

A case runs when its node is selected. Exit codes: 0 every case passed (or there were
none), 1 a case failed, 2 a bad test file or command line (nothing runs then).
`--generate NODE` writes tests/test_NODE.yaml from a sample of the last build instead.
DuckDB (and pandas, for Python nodes; pyspark for a project whose SQL is Spark SQL) are
imported only once there is a case to run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from odibi.cli.common import open_project, selected
from odibi.cli.options import ProjectOptions, Selection
from odibi.cli.render import Out, path_for_display
from odibi.errors import UsageError
from odibi.ids import ExitCode, NodeId
from odibi.testing.cases import Case, load_cases, test_files


@dataclass(frozen=True, slots=True)
class TestOptions:
    """With `generate` (a NODE), write a starter test instead of running the tests,
    sampling `rows` rows of each input; replace an existing file only with `force`."""

    project: ProjectOptions
    selection: Selection
    generate: NodeId | None = None
    rows: int = 5  # 1 or more
    force: bool = False


def cmd_test(opts: TestOptions, out: Out) -> int:
    if opts.generate is not None:
        return _generate(opts, opts.generate, out)
    from odibi.testing.runner import check_case, run_cases

    started = time.perf_counter()
    resolved = open_project(opts.project)
    root = resolved.project.root
    cases = [c for rel in test_files(root) for c in load_cases(root, rel)]
    for case in cases:  # a bad case anywhere is exit 2 before anything runs
        check_case(resolved, case)
    if opts.selection.narrowed:
        chosen = set(selected(resolved, opts.selection, out))
        cases = [c for c in cases if c.node in chosen]
    if not cases and not out.json_mode:
        out.line("no test cases" + (" for the selected nodes" if opts.selection.narrowed
                                    else " (tests/**/test_*.yaml)"))
    results = run_cases(resolved, cases, on_result=None if out.json_mode else
                        lambda r: _report(out, r))
    seconds = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if out.json_mode:
        out.json({"ok": not failed, "passed": len(results) - len(failed), "failed": len(failed),
                  "seconds": round(seconds, 3), "cases": [_json(r) for r in results]})
    elif results:
        style = "red" if failed else "green"
        out.markup(f"[{style}]{len(results) - len(failed)} passed, {len(failed)} failed[/] "
                   f"in {seconds:.2f}s")
    return ExitCode.FAILED if failed else ExitCode.OK


def _report(out: Out, result: Any) -> None:
    case: Case = result.case
    if result.ok:
        if not out.quiet:
            out.markup(f"[green]PASS[/] {case.id} [dim]({case.node})[/]")
        return
    out.result_failed(f"FAIL {case.id} ({case.node})", result.message or "failed", result.diff)


def _json(result: Any) -> dict[str, Any]:
    case: Case = result.case
    return {"id": case.id, "file": case.file, "name": case.name, "node": case.node,
            "ok": result.ok, "seconds": round(result.seconds, 4), "message": result.message,
            "diff": result.diff.as_json() if result.diff is not None else None}


def _generate(opts: TestOptions, name: NodeId, out: Out) -> int:
    from odibi.builder import open_state
    from odibi.testing.generate import check_node, generate, sample_inputs, test_path

    resolved = open_project(opts.project)
    check_node(resolved, name)
    dest = test_path(resolved, name)
    if dest.exists() and not opts.force:
        raise UsageError(f"{path_for_display(dest)} exists",
                         hint="odibi test --generate never overwrites a test: move it, or "
                              "pass --force to replace it")
    state = open_state(resolved.project.root, writable=False,
                       target=resolved.project.build_target.key)
    try:
        traces = state.records.traces(resolved.deps(name))
    finally:
        state.close()
    text = generate(resolved, name, sample_inputs(resolved, name, traces, opts.rows))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    if out.json_mode:
        out.json({"written": str(dest), "node": name})
    else:
        out.markup(f"[green]wrote[/] {path_for_display(dest)}: a starter test for {name} "
                   "(run it with odibi test)")
    return ExitCode.OK
