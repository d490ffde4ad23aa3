"""Loading the lark grammars of `grammar/` (shipped in the wheel as `odibi.grammar`).

From an installed wheel the files are package data of `odibi.grammar`; from a source
checkout they are read from the repository's `grammar/` directory. Parsers are built once
per process and kept.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any


def grammar_text(name: str) -> str:
    try:
        return resources.files("odibi.grammar").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        source_tree = Path(__file__).resolve().parent.parent / "grammar" / name
        return source_tree.read_text(encoding="utf-8")


@functools.cache
def lalr_parser(name: str, start: str = "start") -> Any:
    from lark import Lark  # 37 ms: only commands that parse selectors or rules pay it

    return Lark(grammar_text(name), parser="lalr", start=start, propagate_positions=True,
                maybe_placeholders=False)
