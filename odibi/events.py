"""What the core tells the outside world. The core never prints: it emits these frozen
events to a `Reporter`; the CLI supplies one that renders them, tests a recording one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from odibi.errors import Span


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
