"""Why a node runs, in words: the reason vocabulary (`Reason`, `ReasonDetail` with its
evidence) and how a difference between a node now and a recorded build of it is written
(`what_changed`, `as_before`, `reformatted`). Pure: the planner decides, this module says.

Guarantees: `what_changed` never returns an empty list for a fingerprint that differs (at
the least it says `config changed: fingerprint`); values are shown as a user reads them
(strings in single quotes), environment variables by name only (their values are never
stored); a detail about upstream nodes names them in `nodes`, for root-cause tracing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from odibi.fingerprint import SCHEME, OwnParts
from odibi.ids import Digest, NodeId, NodeKind, Status
from odibi.trace import Trace


class Reason(Enum):
    NEW = "new node"
    SQL_CHANGED = "sql changed"
    SQL_REFORMATTED = "sql reformatted only"
    PYTHON_CHANGED = "python changed"
    READ_CHANGED = "read changed"
    CONFIG_CHANGED = "config changed"
    VAR_CHANGED = "var changed"
    ENV_CHANGED = "environment variable changed"
    SOURCE_CHANGED = "source changed"
    SOURCE_ADDED = "source added"
    SOURCE_REMOVED = "source removed"
    UPSTREAM_REBUILT = "upstream rebuilt"
    UPSTREAM_RERUN = "upstream reruns"  # same fingerprint, its output may still change
    UPSTREAM_OUTPUT_CHANGED = "upstream output changed"
    INPUT_ADDED = "input added"
    INPUT_REMOVED = "input removed"
    UPSTREAM_NOT_BUILT = "upstream not built"
    OUTPUT_MISSING = "output missing"
    OUTPUT_MODIFIED = "output modified outside odibi"
    LAST_BUILD_FAILED = "last build failed"
    FORCED = "forced"
    ALWAYS_RUN = "always_run"
    WRITE_CHANGED = "write changed"
    VALIDATE_CHANGED = "validations changed"
    CONTRACTS_CHANGED = "contracts changed"
    SCHEME_CHANGED = "fingerprint scheme changed"
    CHECK_CHANGED = "rule changed"
    STORED = "a stored version matches"
    LAST_WARNING = "last run warned"
    EXPORT_HELD = "export held back"  # by a halting check that failed, or not yet run


@dataclass(frozen=True, slots=True)
class ReasonDetail:
    """One reason with its evidence: `subject` (a file, key path, var or node), old and
    new values where they exist, and for SQL a unified diff."""

    reason: Reason
    subject: str = ""
    old: str | None = None
    new: str | None = None
    diff: str | None = None
    # the upstream nodes it is about, for root-cause tracing (implied by the subject: not
    # part of equality)
    nodes: tuple[NodeId, ...] = field(default=(), compare=False)

    def summary(self) -> str:
        text = self.reason.value
        if self.reason is Reason.STORED and self.subject:
            return f"{text} ({self.subject})"
        if self.subject:
            text += f": {self.subject}"
        if self.old is not None or self.new is not None:
            text += f" {self.old if self.old is not None else '(unset)'} -> " \
                    f"{self.new if self.new is not None else '(unset)'}"
        return text


_AS_BEFORE = {Reason.SQL_CHANGED: "sql", Reason.CHECK_CHANGED: "rule",
              Reason.SCHEME_CHANGED: "fingerprint scheme", Reason.INPUT_ADDED: "inputs",
              Reason.INPUT_REMOVED: "inputs", Reason.SOURCE_ADDED: "sources",
              Reason.SOURCE_REMOVED: "sources", Reason.SOURCE_CHANGED: "sources"}


def as_before(changes: list[ReasonDetail]) -> ReasonDetail:
    """`a stored version matches (sql, var min_amount = 0 as in an earlier build)`: what
    came back to an earlier state. When only upstream nodes did, it names them (and root
    causes are traced through them)."""
    said: dict[str, None] = {}
    for r in changes:
        match r.reason:
            case Reason.PYTHON_CHANGED:
                said[f"python {r.subject}".rstrip()] = None
            case Reason.ENV_CHANGED:
                said[f"environment variable {r.subject}"] = None
            case Reason.CONFIG_CHANGED:
                said[f"config {r.subject}"] = None
            case Reason.VAR_CHANGED:
                said[f"var {r.subject} = {r.new}"] = None
            case Reason.UPSTREAM_REBUILT:
                said[f"upstream {', '.join(r.nodes)}"] = None
            case other:
                said[_AS_BEFORE.get(other, other.value)] = None
    nodes = tuple(n for r in changes for n in r.nodes)
    upstream_only = all(r.nodes for r in changes)
    return ReasonDetail(Reason.STORED, ", ".join(said) + " as in an earlier build",
                        nodes=nodes if upstream_only else ())


def reformatted(own: OwnParts, trace: Trace) -> tuple[ReasonDetail, ...]:
    """A note when the SQL text differs from the recorded one but not what it means."""
    if own.text_digest is not None and trace.text_digest not in (None, own.text_digest):
        return (ReasonDetail(Reason.SQL_REFORMATTED, own.sql_file or "",
                             diff=_diff(trace.sql_text, own.sql_text)),)
    return ()


def _show(canonical: str | None) -> str | None:
    """A canonical JSON value as a user reads it: strings in single quotes."""
    if canonical is None:
        return None
    try:
        value = json.loads(canonical)
    except ValueError:
        return canonical
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _diff(old: str | None, new: str | None) -> str:
    import difflib  # only when some SQL changed

    lines = difflib.unified_diff((old or "").splitlines(), (new or "").splitlines(),
                                 "last build", "now", lineterm="", n=2)
    return "\n".join(lines)


def explain_changes(own: OwnParts, upstream: Mapping[NodeId, Digest], then: Trace,
                    source_names: Mapping[str, str]) -> list[ReasonDetail]:
    """What differs between a node now and a recorded trace of it (a build, a saved plan)."""
    return what_changed(own, upstream, then, source_names, {})


def what_changed(own: OwnParts, upstream: Mapping[NodeId, Digest], trace: Trace,
             source_names: Mapping[str, str], statuses: Mapping[NodeId, Status]
             ) -> list[ReasonDetail]:
    """Why the fingerprint differs from the last build: each differing part, with evidence."""
    parts = trace.parts
    out: list[ReasonDetail] = []
    if parts.scheme != SCHEME:
        return [ReasonDetail(Reason.SCHEME_CHANGED, old=str(parts.scheme), new=str(SCHEME))]
    if trace.kind != own.kind.value:
        out.append(ReasonDetail(Reason.CONFIG_CHANGED, "kind", trace.kind, own.kind.value))
    elif parts.logic != own.logic:
        match own.kind:
            case NodeKind.SQL:
                out.append(ReasonDetail(Reason.SQL_CHANGED, own.sql_file or "",
                                        diff=_diff(trace.sql_text, own.sql_text)))
            case NodeKind.PYTHON:
                out.append(ReasonDetail(Reason.PYTHON_CHANGED, own.python_file or ""))
            case NodeKind.CHECK:
                out.append(ReasonDetail(Reason.CHECK_CHANGED))
            case NodeKind.READ:
                pass  # format/options: the config keys below name them
    out += _dict_changes(Reason.CONFIG_CHANGED, parts.config, own.config)
    out += _dict_changes(Reason.VAR_CHANGED, parts.vars, own.vars)
    old_env = parts.env
    out += [ReasonDetail(Reason.ENV_CHANGED, k) for k in sorted(set(old_env) | set(own.env))
            if old_env.get(k) != own.env.get(k)]  # values are never stored: names only
    out += _source_changes(parts.sources, own.sources, source_names)
    old_up = parts.upstream
    added = sorted(u for u in upstream if u not in old_up)
    if added:
        out.append(ReasonDetail(Reason.INPUT_ADDED, ", ".join(added)))
    changed = sorted(u for u, d in upstream.items() if u in old_up and old_up[u] != d)
    rebuilt = [u for u in changed if statuses.get(u, Status.UP_TO_DATE) is not Status.UP_TO_DATE]
    other = [u for u in changed if u not in rebuilt]
    if rebuilt:
        out.append(ReasonDetail(Reason.UPSTREAM_REBUILT, ", ".join(rebuilt),
                                nodes=tuple(rebuilt)))
    if other:  # changed since this node was built, by a build that did not include it
        out.append(ReasonDetail(Reason.UPSTREAM_REBUILT, ", ".join(other) + " (earlier)",
                                nodes=tuple(other)))
    gone = sorted(set(old_up) - set(upstream))
    if gone:
        out.append(ReasonDetail(Reason.INPUT_REMOVED, ", ".join(gone)))
    return out or [ReasonDetail(Reason.CONFIG_CHANGED, "fingerprint")]


def _dict_changes(reason: Reason, old: Mapping[str, str], new: Mapping[str, str]
                  ) -> list[ReasonDetail]:
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(ReasonDetail(reason, key, _show(old.get(key)), _show(new.get(key))))
    return out


def _size(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB" if n < 1_000_000 else f"{n / 1e6:.1f} MB"


def _source_changes(old: Mapping[str, tuple[Digest, int]], new: Mapping[str, tuple[Digest, int]],
                    names: Mapping[str, str]) -> list[ReasonDetail]:
    out = []
    for key in sorted(set(old) | set(new)):
        shown = names.get(key, key)
        if key not in old:
            out.append(ReasonDetail(Reason.SOURCE_ADDED, shown))
        elif key not in new:
            out.append(ReasonDetail(Reason.SOURCE_REMOVED, shown))
        elif old[key][0] != new[key][0]:
            before, after = old[key][1], new[key][1]
            a, b = _size(before), _size(after)
            if a == b and before != after:
                a, b = f"{before:,} B", f"{after:,} B"
            sizes = f"({a} -> {b})" if before != after else "(same size)"
            out.append(ReasonDetail(Reason.SOURCE_CHANGED, f"{shown} {sizes}"))
    return out
