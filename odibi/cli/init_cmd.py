"""`odibi init DIR`: write a small working project (orders -> clean -> python -> export)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from odibi.cli.render import Out, path_for_display
from odibi.errors import UsageError
from odibi.ids import ExitCode


@dataclass(frozen=True, slots=True)
class InitOptions:
    """`directory` is -C's (no project there yet), `target` the DIR to create in it."""

    directory: Path
    target: str


_RENAMES = {"gitignore": ".gitignore"}


def _files(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        rel = f"{prefix}{_RENAMES.get(child.name, child.name)}"
        if child.is_dir():
            out += _files(child, rel + "/")
        else:
            out.append((rel, child))
    return out


def cmd_init(opts: InitOptions, out: Out) -> int:
    target = opts.directory / opts.target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{path_for_display(target)} exists and is not empty",
                         hint="odibi init writes a new project; pick a new or empty directory")
    name = re.sub(r"[^A-Za-z0-9_]", "_", target.resolve().name) or "project"
    if name[0].isdigit():
        name = "p_" + name
    files = _files(resources.files("odibi") / "scaffold")
    for rel, src in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        if rel == "odibi.yaml":
            data = data.replace(b"PROJECT_NAME", name.encode())
        dest.write_bytes(data)
    if out.json_mode:
        out.json({"created": str(target), "files": [rel for rel, _ in files]})
        return ExitCode.OK
    out.markup(f"[green]created[/] {path_for_display(target)} ({len(files)} files)")
    out.line(f"next: cd {path_for_display(target)} && odibi build && odibi test")
    return ExitCode.OK
