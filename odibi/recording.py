"""What a build records of a node that ran: its `Trace`, made in one place.

A node that ran holds one of four things (`Produced`): a version it built now, a version
recorded before (restored, or its last record when it only re-exported or revalidated), its
last record moved to a new fingerprint (cut off), or a check's verdict. `trace_of` makes
its record from that and the step that ran, which gives every record the rule and write
keys and the SQL text as they are now (so that the next plan compares with what ran).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import assert_never

from odibi.engines.base import TableInfo
from odibi.ids import Digest, NodeId, OutputRef
from odibi.jobs import (Build, CheckRule, Job, Reexport, Restore, RestoreVerdict, Revalidate,
                        StepResult)
from odibi.planner import PlannedStep
from odibi.trace import Export, Trace

__all__ = ["CutOff", "NewVersion", "Produced", "StoredVersion", "Verdict", "produced",
           "trace_of"]


@dataclass(frozen=True, slots=True)
class NewVersion:
    """It built a new version of its output."""

    stored: OutputRef
    info: TableInfo
    inputs: Mapping[str, str]  # the upstream output digests it read
    exports: tuple[Export, ...]
    held: tuple[NodeId, ...]  # its exports wait for these checks (`exports`: the files as
    #                           odibi last wrote them)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """It holds a version recorded before (`record`): restored, or re-exported or
    revalidated (its last record)."""

    record: Trace
    exports: tuple[Export, ...]
    held: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class CutOff:
    """Its inputs came out as they were: its last record (`old`) stands, under its new
    fingerprint."""

    old: Trace


@dataclass(frozen=True, slots=True)
class Verdict:
    """A check held, or warned (`note`)."""

    inputs: Mapping[str, str]
    note: str | None


Produced = NewVersion | StoredVersion | CutOff | Verdict


def trace_of(step: PlannedStep, what: Produced) -> Trace:
    """The record of the node of `step` once it ran and holds `what`."""
    own = step.own
    parts = own.as_trace_parts(step.upstream)
    match what:
        case NewVersion(stored, info, inputs, exports, held):
            trace = Trace(step.fingerprint, step.kind.value, parts, stored, info.digest,
                          info.rows, info.schema, inputs, exports, held=held)
        case StoredVersion(record, exports, held):
            trace = replace(record, exports=exports, held=held)
        case CutOff(old):
            trace = replace(old, fingerprint=step.fingerprint, parts=parts)
        case Verdict(inputs, note):
            trace = Trace(step.fingerprint, step.kind.value, parts, None, None, None, (),
                          inputs, note=note)
        case _:
            assert_never(what)
    return replace(trace, write_key=own.write_key, validate_key=own.validate_key,
                   contracts_key=own.contracts_key, sql_text=own.sql_text,
                   text_digest=own.text_digest)


def produced(job: Job, result: StepResult, before: Mapping[NodeId, Trace],
             outputs: Mapping[NodeId, Digest | None]) -> Produced:
    """What the node of `job` holds now that it succeeded with `result`. `before`: the
    nodes' records when the build began; `outputs`: each node's current output digest."""
    node = job.step.node
    held = job.held if isinstance(job, (Build, Restore)) else ()
    last = before.get(node)
    # exports held for their guards: the files are still those odibi last wrote
    exports = result.exports if not held else (last.exports if last else ())
    inputs: dict[str, str] = {u: d for u in job.step.upstream
                              if (d := outputs.get(u)) is not None}
    match job:
        case Build():
            assert result.info is not None  # (a build that succeeded described its output)
            return NewVersion(job.output, result.info, inputs, exports, held)
        case Restore() | RestoreVerdict():
            return StoredVersion(job.stored, exports, held)
        case Revalidate() | Reexport():
            return StoredVersion(before[node], exports, held)
        case CheckRule():
            return Verdict(inputs, result.note)
        case _:
            assert_never(job)
