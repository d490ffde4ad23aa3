"""Identifiers and closed sets shared by every layer. Imports nothing from odibi."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import NewType

NodeId = NewType("NodeId", str)
"""A node's (or check's) name: an identifier, unique across the project."""

Digest = NewType("Digest", str)
"""A hex blake3 digest."""



@dataclass(frozen=True, slots=True, order=True)
class OutputRef:
    """One stored version of a node's output: the node, and the fingerprint it was built
    with (its first 16 hex digits name the version). Opaque to the core: only the engine
    knows where the version lives (`odibi.engines.base`)."""

    node: NodeId
    version: str

    @staticmethod
    def of(node: NodeId, fingerprint: Digest) -> OutputRef:
        return OutputRef(node, fingerprint[:16])


NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Format(Enum):
    CSV = "csv"
    PARQUET = "parquet"
    JSON = "json"


FORMAT_BY_SUFFIX = {
    ".csv": Format.CSV,
    ".tsv": Format.CSV,
    ".parquet": Format.PARQUET,
    ".pq": Format.PARQUET,
    ".json": Format.JSON,
    ".jsonl": Format.JSON,
    ".ndjson": Format.JSON,
}


class NodeKind(Enum):
    READ = "read"
    SQL = "sql"
    PYTHON = "python"
    CHECK = "check"


class OnFail(Enum):
    HALT = "halt"
    WARN = "warn"


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USER_ERROR = 2
    INTERNAL_ERROR = 3
    INTERRUPTED = 130


class Status(Enum):
    UP_TO_DATE = "up-to-date"
    REBUILD = "rebuild"
    RESTORE = "restore"
    REVALIDATE = "revalidate"
    REEXPORT = "re-export"
    BLOCKED = "blocked"
    CUT_OFF = "cut off"

    @property
    def runs(self) -> bool:
        return self in (Status.REBUILD, Status.RESTORE, Status.REVALIDATE, Status.REEXPORT)


class Outcome(Enum):
    BUILT = "built"
    RESTORED = "restored"  # an earlier output pointed at again, nothing computed
    CUT_OFF = "cut off"  # its inputs came out identical: its output stands, not run
    EXPORTED = "exported"
    REVALIDATED = "revalidated"  # only its rules changed: they ran on its stored output
    PASSED = "passed"  # a check held
    WARNED = "warned"  # a check with on_fail: warn did not hold
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C, --fail-fast or a halting check
