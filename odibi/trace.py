"""Traces: what a build of a node recorded, as plain frozen values (and their JSON).

A `Trace` is a verifying trace (Build Systems a la Carte): the fingerprint a node was
built with and each of its parts (`TraceParts`), the upstream output digests it read, and
what it produced. The planner compares a node with its trace; the lock is rendered from
traces; `.odibi/state.db` stores them as JSON (the only place that format is known).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from odibi.ids import Digest, NodeId, OutputRef


@dataclass(frozen=True, slots=True)
class TraceParts:
    """A fingerprint's parts, each kept apart so an explanation can name what changed."""

    logic: Digest
    config: Mapping[str, str]  # key path -> canonical JSON value
    vars: Mapping[str, str]  # variable -> canonical JSON value
    sources: Mapping[str, tuple[Digest, int]]  # "connection:path" -> (digest, size)
    upstream: Mapping[NodeId, Digest]  # upstream node -> its fingerprint
    scheme: int
    env: Mapping[str, str] = field(default_factory=dict)  # env var -> digest of its value

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "logic": self.logic, "config": dict(self.config), "vars": dict(self.vars),
            "sources": {k: [dg, sz] for k, (dg, sz) in self.sources.items()},
            "upstream": dict(self.upstream), "scheme": self.scheme}
        if self.env:
            d["env"] = dict(self.env)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> TraceParts:
        return TraceParts(
            logic=Digest(d["logic"]), config=dict(d.get("config", {})),
            vars=dict(d.get("vars", {})),
            sources={k: (Digest(v[0]), int(v[1])) for k, v in d.get("sources", {}).items()},
            upstream={NodeId(k): Digest(v) for k, v in d.get("upstream", {}).items()},
            scheme=int(d.get("scheme", 0)), env=dict(d.get("env", {})))


@dataclass(frozen=True, slots=True)
class Export:
    """An exported file as odibi last wrote it (to notice changes made outside odibi)."""

    path: str  # relative to the project root (absolute when outside it)
    size: int
    mtime_ns: int
    digest: Digest


@dataclass(frozen=True, slots=True)
class Trace:
    """What one successful build of a node recorded (a verifying trace).

    `parts` are the fingerprint's parts, each kept apart so explanations can name what
    changed; `inputs` are the output digests of the upstream nodes it was built from."""

    fingerprint: Digest
    kind: str
    parts: TraceParts
    stored: OutputRef | None  # the stored version that is its output (None for checks)
    output: Digest | None  # order-insensitive content digest of the output
    rows: int | None
    schema: tuple[str, ...]  # "column TYPE"
    inputs: Mapping[str, str] = field(default_factory=dict)
    exports: tuple[Export, ...] = ()
    write_key: Digest | None = None
    validate_key: Digest | None = None
    contracts_key: Digest | None = None
    sql_text: str | None = None  # the SQL as last built, to diff against
    text_digest: Digest | None = None
    note: str | None = None  # a check's last warning
    # its exports are not written yet for this output: they wait for these halting checks
    # (`exports` still describes the files as odibi last wrote them)
    held: tuple[str, ...] = ()

    def to_json(self) -> str:
        d = {
            "fingerprint": self.fingerprint, "kind": self.kind, "parts": self.parts.to_dict(),
            "stored": [self.stored.node, self.stored.version] if self.stored else None,
            "output": self.output, "rows": self.rows,
            "schema": list(self.schema), "inputs": dict(self.inputs),
            "exports": [[e.path, e.size, e.mtime_ns, e.digest] for e in self.exports],
            "write_key": self.write_key, "validate_key": self.validate_key,
            "contracts_key": self.contracts_key,
            "sql_text": self.sql_text, "text_digest": self.text_digest, "note": self.note,
        }
        if self.held:
            d["held"] = list(self.held)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Trace:
        d = json.loads(text)
        return Trace(
            fingerprint=Digest(d["fingerprint"]), kind=d["kind"],
            parts=TraceParts.from_dict(d["parts"]),
            stored=stored_of(d), output=d["output"], rows=d["rows"], schema=tuple(d["schema"]),
            inputs=d.get("inputs", {}),
            exports=tuple(Export(p, s, m, Digest(g)) for p, s, m, g in d.get("exports", [])),
            write_key=d.get("write_key"), validate_key=d.get("validate_key"),
            contracts_key=d.get("contracts_key"),
            sql_text=d.get("sql_text"), text_digest=d.get("text_digest"), note=d.get("note"),
            held=tuple(d.get("held", ())),
        )




def stored_of(d: Mapping[str, Any]) -> OutputRef | None:
    """The stored version a record names; a record written by earlier builds of odibi names the
    DuckDB table of it instead (`odibi_store."<node>__<16 hex>"`, '' for checks)."""
    if "stored" in d:
        ref = d["stored"]
        return OutputRef(NodeId(ref[0]), str(ref[1])) if ref else None
    table = str(d["table"])
    if not table:
        return None
    name = table.split(".", 1)[-1].strip('"').replace('""', '"')
    node, _, version = name.rpartition("__")
    return OutputRef(NodeId(node), version)
