"""What a measure measures: the closed union `Measurement`, in a neutral form. Pure: no
data and no SQL dialect here.

Each engine renders a measurement to its own language (DuckDB: `odibi.engines.duckdb_rules`)
or evaluates it over rows. A measurement reads its dataset `t`; `Orphans` and `OrphanKeys`
read `p` too, the parent dataset of a `references` rule. Rows are selected by predicates of
the row language (`odibi.expr.rows`, SQL's three-valued logic: a row holds a predicate when
it is true). Each docstring says the plain Python value the measurement gives; "sorted" is
ascending, NULL last, tuples and rows (dicts, in column order) compared item by item; a
list of examples holds at most `odibi.expr.measures.EXAMPLES` items, and may be None
instead of empty (as a SQL list aggregate over no rows).

The aggregates (`AGGREGATES`) are taken together over one scan of `t`; the others are
queries of their own (`odibi.expr.measures.Form`). This module is imported only where rules
are compiled, measured or read back from a cache (0.3 ms a class): a no-op build of a
project without rules defines none of these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Union

from odibi.expr.measures import Form

if TYPE_CHECKING:
    from odibi.expr.rows import Row

__all__ = ["AGGREGATES", "DISTINCT", "Agg", "Aggregate", "CountWhere", "DistinctCount",
           "Duplicates", "Measurement", "NullCount", "NullCounts", "NullRows", "Orphans",
           "OrphanKeys", "Outside", "OutsideValues", "RepeatedKeys", "RowCount", "RowsWhere",
           "form_of"]


class Agg(Enum):
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    AVG = "avg"


# -- aggregates over t ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RowCount:
    """int: the rows of t."""


@dataclass(frozen=True, slots=True)
class CountWhere:
    """int: the rows of t that hold `where`."""

    where: Row


@dataclass(frozen=True, slots=True)
class Aggregate:
    """`fn` of the column's non-NULL values: MIN/MAX one of them, SUM a number, AVG a
    float; None when there is none."""

    fn: Agg
    column: str


@dataclass(frozen=True, slots=True)
class NullCount:
    """int: the rows of t with a NULL in any of `columns`."""

    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DistinctCount:
    """int: the distinct non-NULL values of the column."""

    column: str


@dataclass(frozen=True, slots=True)
class Duplicates:
    """int: the rows beyond the first of each key. One column: of the rows where it is
    not NULL (a NULL key is no duplicate); several: of all rows, NULLs equal to each other
    (rows - distinct key tuples)."""

    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outside:
    """int: the rows whose value of the column is not NULL and not in `values` (SQL's
    `NOT IN`: with a NULL among `values`, no row is outside)."""

    column: str
    values: tuple[Any, ...]


# -- queries over t (and p) ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Orphans:
    """int: the rows of t whose key (`columns`) has no NULL and equals the key
    (`parent_columns`) of no row of p."""

    columns: tuple[str, ...]
    parent_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutsideValues:
    """list: the first distinct values `Outside` counts, sorted."""

    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class RepeatedKeys:
    """list of {"k": key, "n": rows}: the keys of more than one row, most rows first, then
    by key. A key is a value (one column: NULL keys left out) or a tuple (several)."""

    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NullCounts:
    """list of int: the NULLs of each column, in the order of `columns`."""

    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NullRows:
    """list of dict: the first rows (whole: {column: value}, every column of t in its
    order) with a NULL in any of `columns`, sorted; equal rows are not merged."""

    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RowsWhere:
    """list of dict: the first distinct rows of `columns` ({column: value}, in the order
    of `columns`) among the rows that hold `where`, sorted."""

    columns: tuple[str, ...]
    where: Row


@dataclass(frozen=True, slots=True)
class OrphanKeys:
    """list: the first distinct keys of the rows `Orphans` counts, sorted. A key is a value
    (one column) or a tuple (several)."""

    columns: tuple[str, ...]
    parent_columns: tuple[str, ...]


Measurement = Union[RowCount, CountWhere, Aggregate, NullCount, DistinctCount, Duplicates,
                    Outside, Orphans, OutsideValues, RepeatedKeys, NullCounts, NullRows,
                    RowsWhere, OrphanKeys]
AGGREGATES = (RowCount, CountWhere, Aggregate, NullCount, DistinctCount, Duplicates, Outside)
DISTINCT = (DistinctCount, Duplicates)  # aggregates of distinct values: a query of their own


def form_of(what: Measurement) -> Form:
    return Form.AGGREGATE if isinstance(what, AGGREGATES) else Form.QUERY
