"""Parsed YAML values that remember where they came from (see `yaml_load`).

Kept apart from the parser so that loading a cached parse (a pickle of these) does not
import PyYAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from odibi.errors import ConfigError

CACHE_VERSION = "3"  # bump when YMap/YSeq change shape: cached parses become misses

Mark = tuple[int, int]  # 1-based line, col


class YMap(dict[Any, Any]):
    """A mapping with positions: `mark` of the mapping, `key_marks[k]`, `value_marks[k]`.
    `value_styles[k]` is the scalar style ('|', '>', '"', "'" or '') of string values."""

    __slots__ = ("mark", "key_marks", "value_marks", "value_styles")

    def __init__(self) -> None:
        super().__init__()
        self.mark: Mark = (1, 1)
        self.key_marks: dict[Any, Mark] = {}
        self.value_marks: dict[Any, Mark] = {}
        self.value_styles: dict[Any, str] = {}


class YSeq(list[Any]):
    """A sequence with positions: `mark` of the sequence, `item_marks[i]` of each item."""

    __slots__ = ("mark", "item_marks", "item_styles")

    def __init__(self) -> None:
        super().__init__()
        self.mark: Mark = (1, 1)
        self.item_marks: list[Mark] = []
        self.item_styles: list[str] = []




def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
