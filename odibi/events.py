"""What the core tells the outside world. The core never prints: it emits these frozen
events to a `Reporter`; the CLI supplies one that renders them, tests a recording one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from odibi.errors import Span
from odibi.ids import Outcome, Status


@dataclass(frozen=True, slots=True)
class Warning_:
    """Something the user should know that does not stop the command."""

    message: str
    span: Span | None = None
    hint: str | None = None


class Reporter(Protocol):
    def emit(self, event: object) -> None: ...


class RecordingReporter:
    """Keeps every event, in order (tests, and callers that render later)."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def emit(self, event: object) -> None:
        self.events.append(event)


class NullReporter:
    def emit(self, event: object) -> None:
        pass


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
    node: str
    outcome: Outcome
    seconds: float
    worker: int
    rows: int | None = None
    error: str | None = None  # why it failed, or what a warning check found
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class NodeBlocked:
    node: str
    because: str  # the failed node at the root of it


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the build did that is worth a line but is not a node running."""

    message: str
