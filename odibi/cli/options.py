"""The parts of a command's options that several commands share, as frozen values.

Each command's own options (`BuildOptions`, `ExplainOptions`, ...) are a frozen dataclass
beside the function that runs it (as `PlanOptions` is beside `plan()`), made of these
parts; `odibi.cli.parse` makes them, once, from the command line, and is the only reader of
argparse's Namespace. Nothing is added to options after they are made: a saved plan's
variables, for one, travel with the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from odibi.config.substitute import VarOverride


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """How to print: `color` False with --no-color (NO_COLOR is read by `Out`)."""

    color: bool = True
    quiet: bool = False
    verbose: int = 0
    json: bool = False


@dataclass(frozen=True, slots=True)
class ProjectOptions:
    """The project a command works on: its root (-C DIR, which holds odibi.yaml), the
    --var overrides, parsed, in the order given, and the target (--target)."""

    root: Path
    overrides: tuple[VarOverride, ...] = ()
    build_target: str | None = None  # --target NAME; None: the default (first) target


@dataclass(frozen=True, slots=True)
class Selection:
    """Which nodes: `selectors` (positional and -s/--select alike, in that order), the
    --exclude selectors, --only, and --force: None without it, `*` for a bare --force (the
    selected nodes), else the selector given with --force=SELECTOR."""

    selectors: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    only: bool = False
    force: str | None = None

    @property
    def narrowed(self) -> bool:
        """True if selectors or --exclude leave out part of the project."""
        return bool(self.selectors or self.exclude)
