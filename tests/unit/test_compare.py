"""odibi.testing.compare: expected rows against actual rows."""

from __future__ import annotations

import math
from decimal import Decimal

from odibi.testing.compare import compare


def test_rows_compare_as_multisets() -> None:
    same = compare((["a"], [(1,), (1,), (2,)]), (["a"], [(2,), (1,), (1,)]))
    assert same.ok
    diff = compare((["a"], [(1,), (1,), (2,)]), (["a"], [(1,), (2,), (2,)]))
    assert not diff.ok
    assert diff.missing == ((1,),) and diff.unexpected == ((2,),)
    assert diff.summary() == "1 missing, 1 unexpected (expected 3 rows, got 3)"


def test_ordered_compares_position_by_position() -> None:
    diff = compare((["a", "b"], [(1, "x"), (2, "y")]), (["a", "b"], [(2, "y"), (1, "x")]),
                   ordered=True)
    assert not diff.ok and "in order" in diff.summary()


def test_changed_rows_pair_on_the_first_column() -> None:
    diff = compare((["id", "v"], [(1, 10.0)]), (["id", "v"], [(1, 11.0)]))
    assert not diff.missing and not diff.unexpected
    (changed,) = diff.changed
    assert changed.columns == ("v",)
    assert diff.grid() == [("~", ["1", "10.0 -> 11.0"], [False, True])]


def test_numbers_within_tolerance_and_nan_are_equal() -> None:
    assert compare((["v"], [(0.1 + 0.2,)]), (["v"], [(0.3,)])).ok
    assert not compare((["v"], [(1.0,)]), (["v"], [(1.001,)])).ok
    assert compare((["v"], [(1.0,)]), (["v"], [(1.001,)]), tolerance=0.01).ok
    assert compare((["v"], [(math.nan,)]), (["v"], [(math.nan,)])).ok
    assert compare((["v"], [(2.5,)]), (["v"], [(Decimal("2.50"),)])).ok
    assert not compare((["v"], [(True,)]), (["v"], [(1,)])).ok  # a boolean is not a number


def test_columns_exact_or_subset_case_insensitive() -> None:
    assert compare((["ID"], [(1,)]), (["id"], [(1,)])).ok
    extra = compare((["id"], [(1,)]), (["id", "x"], [(1, 2)]))
    assert extra.column_problem is not None and "also has x" in extra.column_problem
    assert compare((["id"], [(1,)]), (["id", "x"], [(1, 2)]), subset=True).ok
    missing = compare((["id", "y"], [(1, 2)]), (["id"], [(1,)]), subset=True)
    assert missing.column_problem is not None and "no column y" in missing.column_problem


def test_expecting_no_rows_needs_no_columns() -> None:
    assert compare(([], []), (["a"], [])).ok
    diff = compare(([], []), (["a"], [(1,)]))
    assert diff.unexpected == ((1,),) and "+  1" in diff.text()
