"""What SQL analysis says about a text, whichever parser said it (`odibi.sql` for DuckDB,
`odibi.sql_spark` for Spark SQL): the values and the cache protocol they share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from odibi.ids import Digest


@dataclass(frozen=True, slots=True)
class TableRef:
    name: str
    offset: int  # character offset of the reference in the text, -1 if unknown


@dataclass(frozen=True, slots=True)
class SqlInfo:
    """A text that is one SELECT: its canonical tree digest and the tables it reads."""

    tree: Digest
    tables: tuple[TableRef, ...]


@dataclass(frozen=True, slots=True)
class SqlProblem:
    """A text that is not one valid SELECT; `offset` is where, when the parser says."""

    message: str
    offset: int | None = None


SqlResult = SqlInfo | SqlProblem

NOT_A_SELECT = "must be a single SELECT statement (DDL and DML are not allowed)"
NO_STATEMENT = "holds no statement"


def several_statements(count: int) -> str:
    return f"holds {count} statements; a node is one SELECT"


def reads_files(how: str) -> str:
    """`how`: e.g. `read_csv()`, or `parquet.` and a quoted path."""
    return (f"reads files directly with {how}; add a read node for them so odibi can "
            "fingerprint them")


class SqlCache(Protocol):
    def get_sql(self, keys: list[Digest]) -> dict[Digest, SqlInfo]: ...
    def put_sql(self, items: Mapping[Digest, SqlInfo]) -> None: ...
