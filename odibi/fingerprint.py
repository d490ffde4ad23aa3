"""Fingerprints and the files behind them (DESIGN.md §2).

This module is where source files are listed and read. Listing resolves globs inside a
connection and refuses any match that a symlink leads outside of it.
"""

from __future__ import annotations

import glob as globlib
from pathlib import Path

from odibi.config.model import Connection, Node, ReadSpec
from odibi.errors import ConfigError


def list_sources(conn: Connection, spec: ReadSpec, node: Node) -> tuple[Path, ...]:
    """The files a read node reads, sorted; [] when none match (the caller decides)."""
    if spec.is_glob:
        names = sorted(globlib.glob(spec.rendered_path, root_dir=conn.root, recursive=True))
        paths = [conn.root / n for n in names]
        paths = [p for p in paths if p.is_file()]
    else:
        p = conn.root / spec.rendered_path
        paths = [p] if p.exists() else []
    for p in paths:
        real = p.resolve()
        if real != conn.root and conn.root not in real.parents:
            raise ConfigError(
                f"node '{node.name}': {p.relative_to(conn.root)} is a link that leaves "
                f"connection '{conn.name}' ({conn.root})", span=node.span, node=node.name)
        if p.is_dir():
            raise ConfigError(f"node '{node.name}': '{spec.rendered_path}' is a directory",
                              span=node.span, node=node.name,
                              hint="read its files with a glob, e.g. dir/*.parquet")
    return tuple(paths)
