"""Steps most commands share: open the project, turn selector arguments into nodes."""

from __future__ import annotations

import argparse
from pathlib import Path

from odibi.cli.render import Out
from odibi.config.load import find_project_root, load_project, parse_var_overrides
from odibi.config.model import ReadSpec
from odibi.errors import ConfigError, UsageError
from odibi.fingerprint import list_sources
from odibi.ids import NodeId
from odibi.resolve import Resolved, resolve
from odibi.select import SelectIndex, parse_selector, select


def project_root(args: argparse.Namespace) -> Path:
    root = Path(args.directory)
    if not root.is_dir():
        raise UsageError(f"-C {args.directory}: no such directory")
    return find_project_root(root.resolve())


def open_project(args: argparse.Namespace) -> Resolved:
    root = project_root(args)
    project = load_project(root, parse_var_overrides(getattr(args, "var", []) or []))
    return resolve(project)


def check_sources(resolved: Resolved) -> None:
    """Every read node whose files no other node writes must find at least one file."""
    project = resolved.project
    for name, node in project.nodes.items():
        spec = node.producer
        if not isinstance(spec, ReadSpec):
            continue
        conn = project.connections[spec.connection]
        if list_sources(conn, spec, node):
            continue
        if any(resolved.project.nodes[d].writes for d in resolved.deps(name)):
            continue  # another node writes it: it will exist once that node has run
        raise ConfigError(f"node '{name}': source file not found: "
                          f"{spec.rendered_path} (in {conn.root})", span=node.span, node=name,
                          hint="check the path and the connection's base_path")


def select_index(resolved: Resolved) -> SelectIndex:
    p = resolved.project
    targets = {**{n: node for n, node in p.nodes.items()}, **{n: c for n, c in p.checks.items()}}
    return SelectIndex(
        graph=resolved.graph,
        tags={n: t.tags for n, t in targets.items()},
        pipeline={n: t.pipeline for n, t in targets.items()},
        path={n: t.file for n, t in targets.items()},
        kind={n: p.kind_of(n).value for n in targets},
    )


def selected(resolved: Resolved, args: argparse.Namespace, out: Out) -> list[NodeId]:
    """The nodes chosen by the SELECTOR arguments and --exclude, in build order."""
    index = select_index(resolved)
    chosen: frozenset[NodeId] = frozenset(resolved.graph.names)
    texts = getattr(args, "select", None) or []
    if texts:
        s = select(parse_selector(" ".join(texts)), index)
        for t in s.empty_terms:
            out.warning(f"selector '{t}' matches no node")
        chosen = s.nodes
    for text in getattr(args, "exclude", None) or []:
        e = select(parse_selector(text), index)
        for t in e.empty_terms:
            out.warning(f"--exclude '{t}' matches no node")
        chosen = chosen - e.nodes
    return resolved.graph.ordered(chosen)
