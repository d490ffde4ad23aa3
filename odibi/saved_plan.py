"""Saved plans: `odibi plan -o plan.json`, then `odibi build --plan plan.json`.

A saved plan records, for each selected node, its status, its reasons and its fingerprint
with every part (as a build trace does), plus the selection, the forced nodes and the
variable overrides it was made with. Building from it re-plans the same selection and
refuses, naming the node and what changed, if any node's fingerprint or status differs:
the build runs exactly what was reviewed, or nothing.

Format (JSON): {"odibi_plan": 1, "project": ..., "selection": [...], "forced": [...],
"vars": {...}, "only": true (made with --only), "excluded": [...] (--exclude),
"nodes": [{"node", "kind", "status", "fingerprint", "reasons": [...], "parts": {...},
"sql": ...}]}. The
selection is every node the plan considered (the targets and what they need), so the
same plan is made again; a node that would run but is not in it is drift too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odibi.errors import UsageError
from odibi.ids import Digest, NodeId
from odibi.planner import Plan, Reason, explain_changes
from odibi.trace import Trace, TraceParts

PLAN_VERSION = 1


@dataclass(frozen=True, slots=True)
class SavedPlan:
    project: str
    selection: frozenset[NodeId]
    forced: frozenset[NodeId]
    vars: Mapping[str, Any]
    nodes: Mapping[NodeId, Mapping[str, Any]]
    only: bool = False  # made with --only
    excluded: frozenset[NodeId] = frozenset()  # --exclude


def dump(project: str, plan: Plan, forced: frozenset[NodeId], overrides: Mapping[str, Any],
         *, only: bool = False, excluded: frozenset[NodeId] = frozenset()) -> str:
    nodes = [{
        "node": s.node, "kind": s.kind.value, "status": s.status.value,
        "fingerprint": s.fingerprint, "reasons": [r.summary() for r in s.reasons],
        "parts": s.own.as_trace_parts(s.upstream).to_dict(), "sql": s.own.sql_text,
        **({"export_waits": list(s.export_waits)} if s.export_waits else {}),
    } for s in plan.steps]
    doc = {"odibi_plan": PLAN_VERSION, "project": project,
           "selection": sorted(s.node for s in plan.steps), "forced": sorted(forced),
           "vars": dict(overrides), "nodes": nodes}
    if only:
        doc["only"] = True
    if excluded:
        doc["excluded"] = sorted(excluded)
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def load(text: str, source: str) -> SavedPlan:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{source} is not a saved plan: {e}") from None
    if not isinstance(doc, dict) or doc.get("odibi_plan") != PLAN_VERSION:
        raise UsageError(f"{source} is not an odibi plan of version {PLAN_VERSION}",
                         hint="make one with: odibi plan -o plan.json")
    try:
        return SavedPlan(
            project=str(doc["project"]),
            selection=frozenset(NodeId(n) for n in doc["selection"]),
            forced=frozenset(NodeId(n) for n in doc["forced"]),
            vars=dict(doc.get("vars", {})),
            nodes={NodeId(n["node"]): n for n in doc["nodes"]},
            only=doc.get("only") is True,
            excluded=frozenset(NodeId(n) for n in doc.get("excluded", ())))
    except (KeyError, TypeError) as e:
        raise UsageError(f"{source} is not a valid saved plan (missing {e})") from None


def drift(saved: SavedPlan, now: Plan, source_names: Mapping[str, str]) -> list[str]:
    """What changed since the plan was saved, one line per node; [] if nothing did."""
    problems = []
    downstream = 0
    for name, entry in sorted(saved.nodes.items()):
        step = now.by_name.get(name)
        if step is None:
            problems.append(f"{name}: no longer in the project")
            continue
        if step.fingerprint == entry["fingerprint"]:
            if step.status.value != entry["status"]:
                problems.append(f"{name}: was '{entry['status']}', now '{step.status.value}'"
                                + (f" ({step.headline})" if step.headline else ""))
            continue
        try:
            parts = TraceParts.from_dict(entry["parts"])
        except (KeyError, TypeError, ValueError, IndexError):
            problems.append(f"{name}: its entry in the plan is malformed")
            continue
        then = Trace(fingerprint=Digest(entry["fingerprint"]), kind=str(entry["kind"]),
                     parts=parts, stored=None, output=None, rows=None, schema=(),
                     sql_text=entry.get("sql"))
        changes = explain_changes(step.own, step.upstream, then, source_names)
        own = [r for r in changes if r.reason is not Reason.UPSTREAM_REBUILT]
        if not own:
            downstream += 1  # changed only because something upstream did
            continue
        problems.append(f"{name}: " + "; ".join(r.summary() for r in own))
    for s in now.to_run():  # (the plan grew: a guard its exports now need, say)
        if s.node not in saved.nodes:
            problems.append(f"{s.node}: not in the plan, would now {s.status.value}"
                            + (f" ({s.headline})" if s.headline else ""))
    if downstream:
        problems.append(f"and {downstream} node{'s' if downstream > 1 else ''} downstream "
                        "of these")
    return problems
