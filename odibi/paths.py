"""Paths as odibi shows and records them. Imports nothing from odibi."""

from __future__ import annotations

from pathlib import Path


def shown(path: Path | str, root: Path) -> str:
    """`path` relative to `root`, with forward slashes; as it is when outside `root`."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


STATE_DIR = ".odibi"
TARGETS_DIR = "targets"  # .odibi/targets/NAME/: the state of a target other than the default


def state_dir(root: Path, target: str | None = None) -> Path:
    """Where the build state of `target` lives (None: the default target, `.odibi/`)."""
    base = root / STATE_DIR
    return base if target is None else base / TARGETS_DIR / target
