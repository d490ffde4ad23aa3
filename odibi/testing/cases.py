"""Test files -> `Case`s. A project's tests are the files `tests/**/test_*.yaml` (or .yml):

    tests:
      - name: drops_non_positive_amounts
        node: clean_orders
        given:                              # one fixture per input of the node
          raw_orders:
            rows: [{order_id: 1, amount: 10.0}, {order_id: 2, amount: -5.0}]
            # or   csv: |  (inline)   or   file: fixtures/x.csv (.csv/.parquet, test-relative)
            schema: {order_id: BIGINT}      # optional types (of the SQL's engine), by column
        vars: {min_amount: 0}               # optional, over the project's vars
        expect:
          rows: [{order_id: 1, amount: 10.0}]   # or csv / file (and schema)
          ordered: false                    # compare in order (default: as multisets)
          columns: exact                    # or subset: only the columns given
          tolerance: 1.0e-9                 # for floats (relative and absolute)
        # or, when the node must fail (a contract, a validation, an error):
        #   expect: {error: "unique(order_id)"}   (text the failure message contains)

Every mistake is a ConfigError at the file, line and column (exit 2 from `odibi test`).
Only the shape of a file is checked here; what needs the project (the node exists, the
fixtures are its inputs) is checked by `runner.check_case`, what needs data (columns,
types) when the fixtures are loaded.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odibi.config.fields import File, check_keys, expect_map, opt_bool, req_str, type_name
from odibi.config.ytree import YMap, YSeq, read_bytes
from odibi.errors import ConfigError, Span, did_you_mean
from odibi.ids import NAME_RE, NodeId

FILE_KEYS = {"tests"}
CASE_KEYS = {"name", "node", "given", "vars", "expect", "description"}
DATA_KEYS = {"rows", "csv", "file", "schema"}
EXPECT_KEYS = DATA_KEYS | {"ordered", "columns", "tolerance", "error"}
FILE_GLOBS = ("tests/**/test_*.yaml", "tests/**/test_*.yml")
DEFAULT_TOLERANCE = 1e-9
_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_ ,()\[\]<>:]*\Z")  # (DuckDB's and Spark's)


@dataclass(frozen=True, slots=True)
class Data:
    """Rows given inline, as csv text, or by a file; `schema` types some columns (with the
    place each type is written, for errors)."""

    span: Span
    what: str  # "test 'x': given orders", to begin messages with
    rows: tuple[Mapping[str, Any], ...] | None = None
    csv: str | None = None
    file: Path | None = None
    schema: Mapping[str, str] = field(default_factory=dict)
    schema_spans: Mapping[str, Span] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    node: NodeId
    file: str  # project-relative
    span: Span  # the case's name
    node_span: Span
    given: Mapping[str, Data]
    vars: Mapping[str, Any]
    expect: Data | None  # None when an error is expected
    ordered: bool = False
    subset: bool = False
    tolerance: float = DEFAULT_TOLERANCE
    error: str | None = None  # the node must fail with a message containing this
    vars_span: Span | None = None
    var_spans: Mapping[str, Span] = field(default_factory=dict)  # each var's name

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


def test_files(root: Path) -> list[str]:
    """The project's test files (`tests/**/test_*.yaml`), project-relative, sorted."""
    found: set[str] = set()
    for pattern in FILE_GLOBS:
        found |= set(glob.glob(pattern, root_dir=root, recursive=True))
    return sorted(Path(f).as_posix() for f in found)


def load_cases(root: Path, rel: str) -> list[Case]:
    """The cases of one test file (`rel`, relative to the project root)."""
    from odibi.config.yaml_load import parse_yaml_bytes

    path = root / rel
    data = read_bytes(path)
    raw = parse_yaml_bytes(data, str(path))
    f = File(path, rel, data)
    if raw is None:
        raise ConfigError(f"{rel} is empty", span=Span(str(path), 1, 1),
                          hint="a test file holds 'tests:', a list of cases")
    top = expect_map(raw, f, None, "test file")
    check_keys(top, FILE_KEYS, f, "test file")
    cases = top.get("tests")
    if not isinstance(cases, YSeq):
        raise ConfigError("'tests' must be a list of cases", span=f.value(top, "tests"),
                          hint="write each case as '- name: ...' under tests:")
    out: list[Case] = []
    names: set[str] = set()
    for i, item in enumerate(cases):
        case = _case(expect_map(item, f, cases.item_marks[i], "a test case"), f, path.parent)
        if case.name in names:
            raise ConfigError(f"two test cases named '{case.name}' in {rel}", span=case.span)
        names.add(case.name)
        out.append(case)
    return out


def _case(m: YMap, f: File, here: Path) -> Case:
    check_keys(m, CASE_KEYS, f, "test case")
    name = req_str(m, "name", f, "test case")
    what = f"test '{name}'"
    node = req_str(m, "node", f, what)
    if not NAME_RE.match(node):
        raise ConfigError(f"{what}: invalid node name '{node}'", span=f.value(m, "node"))
    given: dict[str, Data] = {}
    if m.get("given") is not None:
        g = expect_map(m["given"], f, m.value_marks.get("given"), f"{what}: given")
        for dataset in g:
            given[str(dataset)] = _data(g, dataset, f, f"{what}: given {dataset}", here,
                                        DATA_KEYS, key_span=f.key(g, dataset))
    variables: dict[str, Any] = {}
    var_spans: dict[str, Span] = {}
    if m.get("vars") is not None:
        v = expect_map(m["vars"], f, m.value_marks.get("vars"), f"{what}: vars")
        variables = {str(k): x for k, x in v.items()}
        var_spans = {str(k): f.key(v, k) for k in v}
    e, expect, error = _expect(m, f, here, what)
    columns = e.get("columns", "exact")
    if columns not in ("exact", "subset"):
        raise ConfigError(f"{what}: columns must be 'exact' or 'subset', got {columns!r}",
                          span=f.value(e, "columns"))
    tolerance = e.get("tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ConfigError(f"{what}: tolerance must be a number >= 0, got {tolerance!r}",
                          span=f.value(e, "tolerance"))
    return Case(name, NodeId(node), f.rel, f.value(m, "name"), f.value(m, "node"), given,
                variables, expect, ordered=opt_bool(e, "ordered", f, what),
                subset=columns == "subset", tolerance=float(tolerance), error=error,
                vars_span=f.key(m, "vars") if "vars" in m else None, var_spans=var_spans)


def _expect(m: YMap, f: File, here: Path, what: str) -> tuple[YMap, Data | None, str | None]:
    """The case's `expect:` mapping, and either the rows it expects or the error."""
    if "expect" not in m:
        raise ConfigError(f"{what}: missing 'expect'", span=f.value(m, "name"),
                          hint="give the expected rows (expect: {rows: [...]}) or the error "
                               "expected (expect: {error: ...})")
    e = expect_map(m["expect"], f, m.value_marks.get("expect"), f"{what}: expect")
    check_keys(e, EXPECT_KEYS, f, f"{what}: expect")
    error = e.get("error")
    if error is None:
        return e, _data(m, "expect", f, f"{what}: expect", here, EXPECT_KEYS), None
    if not isinstance(error, str) or not error:
        raise ConfigError(f"{what}: 'error' is text the failure message must contain, got "
                          f"{type_name(error)}", span=f.value(e, "error"))
    if any(k in e for k in DATA_KEYS):
        raise ConfigError(f"{what}: expect gives both an error and rows", span=f.value(e, "error"),
                          hint="a case expects either rows or an error")
    return e, None, error


def _data(parent: YMap, key: Any, f: File, what: str, here: Path, allowed: set[str],
          key_span: Span | None = None) -> Data:
    m = expect_map(parent[key], f, parent.value_marks.get(key), what)
    check_keys(m, allowed, f, what)
    given = [k for k in ("rows", "csv", "file") if k in m]
    span = key_span or f.value(parent, key)
    if len(given) != 1:
        raise ConfigError(f"{what}: give exactly one of rows, csv, file"
                          + (f" (got {', '.join(given)})" if given else ""), span=span)
    schema, schema_spans = _schema(m, f, what)
    if "rows" in m:
        rows = m["rows"]
        if not isinstance(rows, YSeq):
            raise ConfigError(f"{what}: rows must be a list of mappings, got {type_name(rows)}",
                              span=f.value(m, "rows"))
        out = []
        for i, r in enumerate(rows):
            if not isinstance(r, YMap):
                raise ConfigError(f"{what}: each row is a mapping column: value, got "
                                  f"{type_name(r)}", span=f.at(rows.item_marks[i]))
            out.append({str(k): v for k, v in r.items()})
        _same_columns(out, rows, f, what, schema, schema_spans, f.value(m, "rows"),
                      expect="ordered" in allowed)
        return Data(span, what, rows=tuple(out), schema=schema, schema_spans=schema_spans)
    if "csv" in m:
        if not isinstance(m["csv"], str) or not m["csv"].strip():
            raise ConfigError(f"{what}: csv is the text of a csv file (csv: |), with a header",
                              span=f.value(m, "csv"))
        return Data(span, what, csv=m["csv"], schema=schema, schema_spans=schema_spans)
    if not isinstance(m["file"], str):
        raise ConfigError(f"{what}: file is a path, got {type_name(m['file'])}",
                          span=f.value(m, "file"))
    path = (here / m["file"]).resolve()
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"{what}: fixture files are .csv or .parquet, got '{m['file']}'",
                          span=f.value(m, "file"))
    if not path.is_file():
        raise ConfigError(f"{what}: no file {m['file']} (paths are relative to {f.rel})",
                          span=f.value(m, "file"))
    return Data(span, what, file=path, schema=schema, schema_spans=schema_spans)


def _schema(m: YMap, f: File, what: str) -> tuple[dict[str, str], dict[str, Span]]:
    if m.get("schema") is None:
        return {}, {}
    s = expect_map(m["schema"], f, m.value_marks.get("schema"), f"{what}: schema")
    types, spans = {}, {}
    for column, t in s.items():
        spans[str(column)] = f.value(s, column)
        if not isinstance(t, str) or not _TYPE_RE.match(t):
            raise ConfigError(f"{what}: schema: '{column}' must be a DuckDB type such as "
                              f"BIGINT, DOUBLE, VARCHAR, DATE, got {t!r}",
                              span=spans[str(column)])
        types[str(column)] = t
    return types, spans


def _same_columns(rows: list[dict[str, Any]], raw: YSeq, f: File, what: str,
                  schema: Mapping[str, str], schema_spans: Mapping[str, Span], span: Span,
                  *, expect: bool) -> None:
    """Every row names the same columns; a column typed in the schema is in the rows."""
    if not rows:
        if not schema and not expect:  # expecting no rows needs no columns
            raise ConfigError(f"{what}: no rows and no schema: the columns are unknown",
                              span=span, hint="give schema: {column: TYPE} for an empty input")
        return
    columns = list(rows[0])
    for i, r in enumerate(rows[1:], 1):
        missing = [c for c in columns if c not in r]
        extra = [c for c in r if c not in columns]
        if missing or extra:
            problem = (f"row {i + 1} has no {', '.join(missing)}" if missing else
                       f"row {i + 1} has {', '.join(extra)}, which row 1 does not")
            raise ConfigError(f"{what}: {problem}", span=f.at(raw.item_marks[i]),
                              hint="every row gives the same columns (null for none)")
    for c in schema:
        if c not in columns:
            raise ConfigError(f"{what}: the schema types '{c}', which the rows do not have",
                              span=schema_spans[c],
                              hint=did_you_mean(c, columns) or f"columns: {', '.join(columns)}")
