"""The events the core emits (`odibi.events.Event`) as the CLI shows them: the exact lines
the build reporter prints for each kind of event and outcome, with and without -v (piped,
so plain text); every kind of event handled by the reporter and the live board."""

from __future__ import annotations

import io
import typing

import pytest

from odibi.cli.render import LiveBoard, Out
from odibi.cli.report import BuildReporter
from odibi.errors import Span
from odibi.events import (Event, NodeBlocked, NodeFinished, NodeStarted, Notice,
                          RecordingReporter, Warning_)
from odibi.ids import Outcome, Status

STARTED = NodeStarted("b", Status.REBUILD, "sql changed", ("sql changed", "also: var n 1 -> 2"),
                      0, 0.0)

# (event, -v count, expected stdout, expected stderr)
CASES: list[tuple[Event, int, str, str]] = [
    (STARTED, 0, "b     rebuild: sql changed\n", ""),
    (STARTED, 1, "b     rebuild: sql changed\n" + " " * 15 + "also: var n 1 -> 2\n", ""),
    (NodeFinished("b", Outcome.FAILED, 0.1, 0, error="boom [x]"), 0, "", "failed b: boom [x]\n"),
    (NodeFinished("b", Outcome.FAILED, 0.1, 0, error="boom", attempts=3), 0, "",
     "failed b (after 3 attempts): boom\n"),
    (NodeFinished("chk", Outcome.WARNED, 0.1, 0, error="2 rows"), 0, "",
     "warning check chk: 2 rows\n"),
    (NodeFinished("b", Outcome.INTERRUPTED, 0.1, 0), 0, "", "interrupted b\n"),
    (NodeFinished("b", Outcome.CUT_OFF, 0.0, -1), 0,
     "b     cut off: its inputs came out unchanged\n", ""),
    (NodeFinished("b", Outcome.BUILT, 0.5, 0, rows=1000), 0, "", ""),
    (NodeFinished("b", Outcome.BUILT, 0.5, 0, rows=1000), 1, "      done b in 0.50s, 1,000 rows\n",
     ""),
    (NodeFinished("b", Outcome.RESTORED, 0.25, 0), 1, "      done b in 0.25s\n", ""),
    (NodeFinished("chk", Outcome.PASSED, 0.25, 1), 1, "      done chk in 0.25s\n", ""),
    (NodeBlocked("c", "b"), 0, "", ""),
    (NodeBlocked("c", "b"), 1, "c     blocked: b failed\n", ""),
    (Warning_("odibi.lock was unreadable", hint="nothing to do"), 0, "",
     "warning: odibi.lock was unreadable\nhint: nothing to do\n"),
    (Warning_("odd", span=Span("<--var>", 1, 3, text="x = 1")), 0, "",
     "warning: odd\n    x = 1\n      ^\n"),
    (Notice("restored 2 views"), 0, "restored 2 views\n", ""),
]


def _out(verbose: int = 0) -> tuple[Out, io.StringIO, io.StringIO]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return Out(color=False, verbose=verbose, stdout=stdout, stderr=stderr), stdout, stderr


@pytest.mark.parametrize("event,verbose,stdout,stderr", CASES,
                         ids=[f"{type(c[0]).__name__}-{i}" for i, c in enumerate(CASES)])
def test_build_reporter_prints(event: Event, verbose: int, stdout: str, stderr: str) -> None:
    out, o, e = _out(verbose)
    reporter = BuildReporter(out, width=4)
    reporter.emit(event)
    assert (o.getvalue(), e.getvalue()) == (stdout, stderr)
    assert reporter.events == [event]


def test_every_kind_of_event_and_outcome_has_a_case() -> None:
    kinds = {type(event) for event, *_ in CASES}
    assert kinds == set(typing.get_args(Event))
    outcomes = {event.outcome for event, *_ in CASES if isinstance(event, NodeFinished)}
    assert outcomes == set(Outcome) - {Outcome.EXPORTED, Outcome.REVALIDATED}
    for outcome in (Outcome.EXPORTED, Outcome.REVALIDATED):  # as a built node
        out, o, _ = _out(verbose=1)
        BuildReporter(out, width=1).emit(NodeFinished("b", outcome, 1.0, 0))
        assert o.getvalue() == "   done b in 1.00s\n"


def test_live_board_follows_the_nodes() -> None:
    out, o, e = _out()
    board = LiveBoard(out, ["a", "b", "c"], {"a": 1.0}, jobs=2)
    events: list[Event] = [NodeStarted("a", Status.REBUILD, "new node", (), 0, 0.0),
                           NodeStarted("b", Status.RESTORE, "stored", (), 1, 0.0),
                           Warning_("w"), Notice("n"),
                           NodeFinished("a", Outcome.BUILT, 0.1, 0), NodeBlocked("c", "a")]
    for event in events:
        board.update(event)
    assert (set(board.running), board.finished) == ({"b"}, {"a", "c"})
    assert board.running["b"][1] == "stored"
    assert (o.getvalue(), e.getvalue()) == ("", "")  # the board prints nothing by itself


def test_recording_reporter_keeps_every_event_in_order() -> None:
    reporter = RecordingReporter()
    events: list[Event] = [STARTED, NodeFinished("b", Outcome.BUILT, 0.1, 0), Notice("x")]
    for event in events:
        reporter.emit(event)
    assert reporter.events == events
