"""Faster pickling for the frozen dataclasses the project cache stores. Imports nothing
from odibi.

A frozen, slotted dataclass unpickles through dataclasses' generic `__setstate__` (a call
to `fields()` and an `object.__setattr__` per field, per object); reducing to the class
and its field values instead halves the time to load a cached 10,000-node project.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def compact_pickle(cls: type[T]) -> type[T]:
    """Class decorator (apply after @dataclass): pickle as cls(*field values)."""
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    def __reduce__(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return cls, tuple(getattr(self, n) for n in names)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign,assignment]
    return cls
