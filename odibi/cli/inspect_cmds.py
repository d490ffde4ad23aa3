"""Read-only commands that need no data: validate, ls, graph."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, assert_never

from odibi.cli.common import open_project, selected
from odibi.cli.options import ProjectOptions, Selection
from odibi.cli.render import Out, escape
from odibi.fingerprint import check_sources
from odibi.config.model import SqlSpec
from odibi.ids import ExitCode, NodeId, NodeKind
from odibi.resolve import Resolved

if TYPE_CHECKING:
    from odibi.bind import Binding, Unknown


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    project: ProjectOptions
    bind: bool = True  # False with --no-bind


@dataclass(frozen=True, slots=True)
class LsOptions:
    project: ProjectOptions
    selection: Selection
    long: bool = False


class GraphFormat(Enum):
    TEXT = "text"
    DOT = "dot"
    MERMAID = "mermaid"


@dataclass(frozen=True, slots=True)
class GraphOptions:
    project: ProjectOptions
    selection: Selection
    format: GraphFormat = GraphFormat.TEXT


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_validate(opts: ValidateOptions, out: Out) -> int:
    from odibi.builder import load, open_state
    from odibi.warehouse import env_redactions

    root = opts.project.root
    state = open_state(root, writable=False, target=opts.project.build_target)
    try:
        resolved = load(root, list(opts.project.overrides), state, opts.project.build_target)
        check_sources(resolved)
        binding = None
        if opts.bind and resolved.project.binds_columns:
            from odibi.bind import bind_project

            binding = bind_project(resolved, state, env_redactions(resolved))
    finally:
        state.close()
    p = resolved.project
    kinds = Counter(n.kind.value for n in p.nodes.values())
    detail = ", ".join(f"{kinds[k.value]} {k.value}" for k in NodeKind if kinds[k.value])
    if out.json_mode:
        report: dict[str, object] = {
            "ok": True, "project": p.name, "nodes": len(p.nodes), "checks": len(p.checks),
            "pipelines": list(p.pipelines), "kinds": dict(kinds)}
        if binding is not None:
            report["bound"] = list(binding.bound)
            report["not_checked"] = {n: {"cause": u.cause, "why": u.why}
                                     for n, u in binding.unchecked.items()}
        out.json(report)
        return ExitCode.OK
    out.markup(f"[green]ok[/] project [bold]{p.name}[/]: {_count(len(p.nodes), 'node')} "
               f"({detail}), {_count(len(p.checks), 'check')}, "
               f"{_count(len(p.pipelines), 'pipeline')}")
    if binding is not None and (binding.bound or binding.unchecked):
        _binding_summary(out, resolved, binding)
    return ExitCode.OK


def _binding_summary(out: Out, resolved: Resolved, binding: Binding) -> None:
    """`bound 240 SQL nodes to their inputs' columns; 3 not checked`, then a note per
    root cause naming the nodes it leaves unchecked."""
    their = "its" if len(binding.bound) == 1 else "their"
    line = f"bound {_count(len(binding.bound), 'SQL node')} to {their} inputs' columns"
    if binding.unchecked:
        line += f"; {len(binding.unchecked)} not checked"
    if out.verbose:
        line += f" ({binding.fresh} schemas worked out by DuckDB now, the rest remembered)"
    out.line(line)
    for cause, names in not_checked(binding).items():
        out.markup(f"[cyan]note:[/] {escape(unchecked_text(resolved, cause, names))}")


def not_checked(binding: Binding) -> dict[Unknown, list[NodeId]]:
    """The unchecked SQL nodes, by root cause (in the order their first node comes)."""
    by_cause: dict[Unknown, list[NodeId]] = {}
    for n, u in binding.unchecked.items():
        by_cause.setdefault(u, []).append(n)
    return by_cause


def unchecked_text(resolved: Resolved, cause: Unknown, names: list[NodeId],
                   when: str = "") -> str:
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    kind = resolved.project.kind_of(cause.cause).value
    return f"not checked{when}: {shown} ({kind} node '{cause.cause}' {cause.why})"


def _describe(resolved: Resolved, name: NodeId) -> dict[str, object]:
    p = resolved.project
    t = p.target(name)
    described: dict[str, object] = {
        "name": name,
        "kind": p.kind_of(name).value,
        "pipeline": t.pipeline,
        "file": t.file,
        "depends_on": list(resolved.deps(name)),
        "tags": sorted(t.tags),
        "description": t.description,
    }
    spec = getattr(t, "producer", None)  # a check has none
    if isinstance(spec, SqlSpec):
        described["sql_file"] = spec.file  # None when the SQL is inline
    return described


def cmd_ls(opts: LsOptions, out: Out) -> int:
    resolved = open_project(opts.project)
    names = sorted(selected(resolved, opts.selection, out))
    if out.json_mode:
        out.json([_describe(resolved, n) for n in names])
    elif opts.long:
        rows = []
        for n in names:
            d = _describe(resolved, n)
            rows.append([n, str(d["kind"]), str(d["pipeline"]),
                         ", ".join(d["depends_on"]),  # type: ignore[arg-type]
                         ", ".join(d["tags"])])  # type: ignore[arg-type]
        out.table(["node", "kind", "pipeline", "inputs", "tags"], rows)
    else:
        if names:
            out.raw("\n".join(names))
    return ExitCode.OK


def cmd_graph(opts: GraphOptions, out: Out) -> int:
    resolved = open_project(opts.project)
    names = selected(resolved, opts.selection, out)
    chosen = set(names)
    edges = [(d, n) for n in names for d in resolved.deps(n) if d in chosen]
    kind = {n: resolved.project.kind_of(n).value for n in names}
    if out.json_mode:
        out.json({"nodes": [{"name": n, "kind": kind[n]} for n in names],
                  "edges": [{"from": a, "to": b} for a, b in edges]})
        return ExitCode.OK
    match opts.format:
        case GraphFormat.DOT:
            out.raw(_dot(names, edges, kind))
        case GraphFormat.MERMAID:
            out.raw(_mermaid(names, edges, kind))
        case GraphFormat.TEXT:
            out.raw(_text(resolved, names, chosen, kind))
        case _:
            assert_never(opts.format)
    return ExitCode.OK


_DOT_SHAPE = {"read": "cylinder", "sql": "box", "python": "component", "check": "diamond"}


def _dot(names: list[NodeId], edges: list[tuple[NodeId, NodeId]], kind: dict[NodeId, str]) -> str:
    lines = ["digraph odibi {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    lines += [f'  "{n}" [shape={_DOT_SHAPE[kind[n]]}];' for n in names]
    lines += [f'  "{a}" -> "{b}";' for a, b in edges]
    return "\n".join(lines + ["}"])


_MERMAID_SHAPE = {"read": ("[(", ")]"), "sql": ("[", "]"), "python": ("[[", "]]"),
                  "check": ("{", "}")}


def _mermaid(names: list[NodeId], edges: list[tuple[NodeId, NodeId]],
             kind: dict[NodeId, str]) -> str:
    lines = ["flowchart LR"]
    for n in names:
        left, right = _MERMAID_SHAPE[kind[n]]
        lines.append(f"  {n}{left}{n}{right}")
    lines += [f"  {a} --> {b}" for a, b in edges]
    return "\n".join(lines)


def _text(resolved: Resolved, names: list[NodeId], chosen: set[NodeId],
          kind: dict[NodeId, str]) -> str:
    """One line per node in build order: name, kind, and the inputs it reads."""
    if not names:
        return ""
    width = max(len(n) for n in names)
    lines = []
    for n in names:
        deps = [d for d in resolved.deps(n) if d in chosen]
        arrow = f"  <- {', '.join(deps)}" if deps else ""
        lines.append(f"{n:<{width}}  {kind[n]:<6}{arrow}".rstrip())
    return "\n".join(lines)
