"""Paths as odibi shows and records them. Imports nothing from odibi."""

from __future__ import annotations

from pathlib import Path


def shown(path: Path | str, root: Path) -> str:
    """`path` relative to `root`, with forward slashes; as it is when outside `root`."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)
