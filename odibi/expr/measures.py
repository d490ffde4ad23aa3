"""What a rule set measures, as SQL text: pure, no data is touched here.

A `Measure` is one value computed from data, in one of two forms (`Form`):
- AGGREGATE: an aggregate expression over one dataset, read as `t` (`count(*) FILTER
  (WHERE ...)`, `sum(col)`). The aggregates of a dataset share one query,
  `SELECT <aggregate>, <aggregate>, ... FROM <dataset> AS t`;
- QUERY: a scalar query reading `t` (and `p`, the parent dataset of a cross-dataset measure,
  the anti-join count of `references`), run as `WITH t AS (...), p AS (...) SELECT (<query>),
  (<query>), ...`. Examples of what broke a rule are queries too: a top-5 needs ORDER BY and
  LIMIT, which an aggregate cannot say.

Example queries are `only_if` follow-ups: measured only when the count they explain came
out non-zero, so a rule set that holds costs no extra query. Each returns at most five
items, in a deterministic order, and its `Shape` says how `odibi.expr.verdict` shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

EXAMPLES = 5  # offending values a failure message shows, at most


class Form(Enum):
    AGGREGATE = "aggregate"  # an aggregate over `t`: shares its dataset's query
    QUERY = "query"  # a scalar query over `t` (and `p`): a query per dataset (pair) and pass


class Shape(Enum):
    """How a follow-up measure's value (examples of what broke a rule) is shown."""

    VALUES = "values"  # a sorted list of values, as its own `label = [...]` (accepted_values)
    KEYS = "keys"  # distinct keys (tuples for several columns): `e.g. [101, 102]`
    COUNTED = "counted"  # {k: key, n: rows}: `e.g. 7 (x3), 12 (x2)`
    ROWS = "rows"  # {column: value} of the columns a condition reads: `e.g. {amount: -3}`
    NULL_ROWS = "null rows"  # whole rows: shown as their first non-null column and the nulls
    NULL_COUNTS = "null counts"  # a count per column of the rule: `(a: 2 nulls, c: 1 null)`


@dataclass(frozen=True, slots=True)
class Measure:
    """One value measured from `dataset` (read as `t`; `parent`, if any, as `p`).

    `columns` (of `dataset`) and `parent_columns` (of `parent`) are what it reads: they are
    checked against the data's columns before anything runs."""

    key: str
    dataset: str
    sql: str
    label: str  # how a failure message names it
    columns: tuple[str, ...] = ()
    distinct: bool = False  # a DISTINCT aggregate: measured in a query of its own kind
    only_if: str | None = None  # measured only when this count came out non-zero (examples)
    form: Form = Form.AGGREGATE
    parent: str | None = None  # a second dataset it reads (references): a query of its own
    parent_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Query:
    """Measures taken together in one query: over `dataset` (as `t`), and `parent` (as `p`)
    for cross-dataset ones; all of one `form`."""

    dataset: str
    parent: str | None
    form: Form
    measures: tuple[Measure, ...]


# -- SQL text ------------------------------------------------------------------------------
def q(name: str) -> str:
    """A column name, quoted."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    """A rule's literal value as SQL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _key(cols: Sequence[str], alias: str = "") -> str:
    """One column, or a row of several (DuckDB gives a tuple back)."""
    quoted = [alias + q(c) for c in cols]
    return quoted[0] if len(quoted) == 1 else f"row({', '.join(quoted)})"


def values_examples(col: str, outside: str) -> str:
    """accepted_values: the first distinct values outside the list."""
    return (f"SELECT list(v ORDER BY v) FROM (SELECT DISTINCT {q(col)} AS v FROM t "
            f"WHERE {outside} ORDER BY 1 LIMIT {EXAMPLES})")


def duplicate_examples(cols: Sequence[str]) -> str:
    """unique: the most repeated keys with their row counts (NULL keys of one column are not
    duplicates, as in the count; several columns group NULLs together, as DISTINCT does)."""
    where = f" WHERE {q(cols[0])} IS NOT NULL" if len(cols) == 1 else ""
    return (f"SELECT list(r ORDER BY r.n DESC, r.k) FROM (SELECT {_key(cols)} AS k, count(*) "
            f"AS n FROM t{where} GROUP BY 1 HAVING count(*) > 1 ORDER BY n DESC, k "
            f"LIMIT {EXAMPLES}) AS r")


def null_counts(cols: Sequence[str]) -> str:
    """not_null of several columns: the nulls of each."""
    counts = ", ".join(f"count(*) FILTER (WHERE {q(c)} IS NULL)" for c in cols)
    return f"SELECT [{counts}] FROM t"


def null_rows(cols: Sequence[str]) -> str:
    """not_null: the first rows holding a null, whole (the verdict picks what to show of
    them, and shows equal ones once). No DISTINCT: over whole rows it would hash every
    offending row, where a top-5 streams (2.5M offending rows: 0.6 s -> 0.2 s)."""
    where = " OR ".join(f"{q(c)} IS NULL" for c in cols)
    return (f"SELECT list(_odibi_row ORDER BY _odibi_row) FROM (SELECT * FROM t "
            f"WHERE {where} ORDER BY ALL LIMIT {EXAMPLES}) AS _odibi_row")


def false_rows(condition: str, cols: Sequence[str]) -> str:
    """all(condition): the first distinct rows (of the columns it reads) where it is false."""
    fields = ", ".join(f"{lit(c)}: {q(c)}" for c in cols)
    return (f"SELECT list(r ORDER BY r) FROM (SELECT DISTINCT {{{fields}}} AS r FROM t "
            f"WHERE NOT ({condition}) ORDER BY 1 LIMIT {EXAMPLES})")


def orphans(child: Sequence[str], parent: Sequence[str]) -> str:
    """references: the condition that a row of `t` is an orphan: its key has no NULL and
    no row of `p` has it (dbt's `relationships`: a NULL key is not checked)."""
    known = " AND ".join(f"_odibi_child.{q(c)} IS NOT NULL" for c in child)
    match = " AND ".join(f"_odibi_parent.{q(pc)} = _odibi_child.{q(c)}"
                         for c, pc in zip(child, parent))
    return f"{known} AND NOT EXISTS (SELECT 1 FROM p AS _odibi_parent WHERE {match})"


def orphan_count(child: Sequence[str], parent: Sequence[str]) -> str:
    return f"SELECT count(*) FROM t AS _odibi_child WHERE {orphans(child, parent)}"


def orphan_examples(child: Sequence[str], parent: Sequence[str]) -> str:
    """references: the first distinct orphan keys, sorted."""
    return (f"SELECT list(k ORDER BY k) FROM (SELECT DISTINCT {_key(child, '_odibi_child.')} "
            f"AS k FROM t AS _odibi_child WHERE {orphans(child, parent)} ORDER BY 1 "
            f"LIMIT {EXAMPLES})")
