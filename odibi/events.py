"""What the core tells the outside world. The core never prints: it emits frozen events
(`Event`, a closed union) to a `Reporter`; the CLI supplies one that renders them, tests a
recording one. A reporter dispatches with `match` over the union and `assert_never`, so a
new kind of event is a type error in every reporter that does not handle it.

Who emits what: the executor `NodeStarted`, `NodeFinished` and `NodeBlocked` (from its one
scheduling thread, in the order things happen); the builder `Warning_`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeAlias

from odibi.errors import Span
from odibi.ids import Outcome, Status


@dataclass(frozen=True, slots=True)
class Warning_:
    """Something the user should know that does not stop the command."""

    message: str
    span: Span | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class NodeStarted:
    """A node begins to run. `action` is its plan status ('rebuild', 're-export', ...),
    `reason` the one-line headline, `evidence` the full reasons (shown with -v)."""

    node: str
    action: Status
    reason: str
    evidence: tuple[str, ...]
    worker: int
    at: float


@dataclass(frozen=True, slots=True)
class NodeFinished:
    """A node is done, whatever its outcome (a node cut off early ran nothing: it
    finishes without having started)."""

    node: str
    outcome: Outcome
    seconds: float
    worker: int
    rows: int | None = None
    error: str | None = None  # why it failed, or what a warning check found
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class NodeBlocked:
    """A node will not run in this build, because of `because`."""

    node: str
    because: str  # the failed node at the root of it


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the build did that is worth a line but is not a node running."""

    message: str


Event: TypeAlias = Warning_ | NodeStarted | NodeFinished | NodeBlocked | Notice


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class RecordingReporter:
    """Keeps every event, in order (tests, and callers that render later)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
