"""`targets:` and `sql_dialect:` of odibi.yaml -> the `Target` a command builds on.

    targets:
      dev:  {engine: duckdb}
      prod: {engine: spark, master: "spark://10.0.0.5:7077", warehouse: /mnt/lake/odibi,
             conf: {spark.sql.shuffle.partitions: 64},
             connections: {out: {base_path: /mnt/lake/exports}}}

The first target is the default; `--target NAME` picks another. A target's `connections:`
override the project's (as dbt's profiles do), so dev and prod never write the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from odibi.config.fields import File, check_keys, expect_map, opt_str, type_name
from odibi.config.model import DEFAULT_TARGET, EngineKind, Target
from odibi.config.substitute import Substituter
from odibi.config.ytree import YMap
from odibi.errors import ConfigError, Span, UsageError, did_you_mean
from odibi.ids import NAME_RE

TARGET_KEYS = {"engine", "master", "remote", "warehouse", "conf", "connections", "description"}
ENGINES = tuple(e.value for e in EngineKind)
SPARK_ONLY = ("master", "remote", "conf")
_URI_SCHEME = ("://", ":/")  # hdfs://, s3a://, abfss://, file:/...


def is_uri(text: str) -> bool:
    """Whether a location is a URI (`s3a://bucket/x`) rather than a local path."""
    head, sep, _ = text.partition(":")
    return bool(sep) and len(head) > 1 and head.replace("+", "").isalnum() and (
        text[len(head):].startswith("://") or text[len(head):].startswith(":/"))


def sql_dialect(top: YMap, f: File, default: EngineKind) -> tuple[EngineKind, Span | None]:
    """`sql_dialect:` (default: the engine of the default target)."""
    raw = top.get("sql_dialect")
    if raw is None:
        return default, None
    span = f.value(top, "sql_dialect")
    if raw not in ENGINES:
        raise ConfigError(f"sql_dialect: unknown dialect '{raw}'", span=span,
                          hint=f"supported: {', '.join(ENGINES)}")
    return EngineKind(raw), span


def choose_target(top: YMap, f: File, sub: Substituter, root: Path, wanted: str | None
                  ) -> tuple[Target, YMap | None]:
    """The target `wanted` (None: the default one) and its `connections:` overrides."""
    raw = top.get("targets")
    if raw is None:
        if wanted is not None and wanted != DEFAULT_TARGET.name:
            raise UsageError(f"--target {wanted}: odibi.yaml declares no targets",
                             hint="add a targets: section (README, \"Running on Spark\")")
        return DEFAULT_TARGET, None
    body = expect_map(raw, f, top.value_marks.get("targets"), "targets")
    if not body:
        raise ConfigError("targets: declares no target", span=f.value(top, "targets"),
                          hint="targets: {dev: {engine: duckdb}}")
    names = list(body)
    for name in names:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"invalid target name '{name}'", span=f.key(body, name),
                              hint="names are letters, digits and _, not starting with a digit")
    name = names[0] if wanted is None else wanted
    if name not in body:
        raise UsageError(f"--target {wanted}: no such target in odibi.yaml",
                         hint=did_you_mean(name, names) or f"targets: {', '.join(names)}")
    return _target(body, name, f, sub, root, default=name == names[0])


def _target(body: YMap, name: str, f: File, sub: Substituter, root: Path, *, default: bool
            ) -> tuple[Target, YMap | None]:
    what = f"target '{name}'"
    item = body[name]
    t = YMap() if item is None else expect_map(item, f, body.value_marks.get(name), what)
    check_keys(t, TARGET_KEYS, f, what)
    engine = t.get("engine", EngineKind.DUCKDB.value)
    if engine not in ENGINES:
        raise ConfigError(f"{what}: unknown engine '{engine}'", span=f.value(t, "engine"),
                          hint=f"supported: {', '.join(ENGINES)}")
    kind = EngineKind(engine)
    if kind is EngineKind.DUCKDB:
        for key in SPARK_ONLY:
            if key in t:
                raise ConfigError(f"{what}: '{key}' is for Spark targets", span=f.key(t, key),
                                  hint="add engine: spark, or remove it")
    master, remote = (_rendered(t, k, f, sub, what) for k in ("master", "remote"))
    if master is not None and remote is not None:
        raise ConfigError(f"{what}: give master or remote, not both", span=f.key(t, "remote"))
    if remote is not None and not remote.startswith("sc://"):
        raise ConfigError(f"{what}: remote must be a Spark Connect URL (sc://host:15002)",
                          span=f.value(t, "remote"))
    warehouse = _rendered(t, "warehouse", f, sub, what)
    if warehouse is not None and not is_uri(warehouse):
        p = Path(warehouse).expanduser()
        warehouse = str((p if p.is_absolute() else root / p).resolve())
    conns = t.get("connections")
    if conns is not None:
        conns = expect_map(conns, f, t.value_marks.get("connections"), f"{what}: connections")
    return Target(name, kind, default, master if kind is EngineKind.SPARK else None, remote,
                  warehouse, _conf(t, f, what), f.key(body, name)), conns


def _rendered(t: YMap, key: str, f: File, sub: Substituter, what: str) -> str | None:
    text = opt_str(t, key, f, what)
    if text is None:
        return None
    value = sub.render(text, f.origin(t, key), what)
    sub.take_used()
    return value


def _conf(t: YMap, f: File, what: str) -> Mapping[str, str]:
    raw = t.get("conf")
    if raw is None:
        return {}
    conf = expect_map(raw, f, t.value_marks.get("conf"), f"{what}: conf")
    out: dict[str, str] = {}
    for key, value in conf.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(f"{what}: conf {key} must be a string, number or boolean, got "
                              f"{type_name(value)}", span=f.value(conf, key))
        out[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def merged_connections(top: YMap, overrides: YMap | None) -> Any:
    """The project's `connections:` with a target's overrides laid over each (key by key:
    a target may give just another `base_path`). The parsed YAML is left as it was."""
    base = top.get("connections")
    if overrides is None:
        return base
    merged = _copy(base) if isinstance(base, YMap) else YMap()
    for name, body in overrides.items():
        if isinstance(body, YMap) and isinstance(merged.get(name), YMap):
            layered = _copy(merged[name])
            _lay(layered, body, body)
            merged[name] = layered
        else:
            _lay(merged, overrides, {name: body})
    return merged


def _copy(m: YMap) -> YMap:
    out = YMap()
    out.mark = m.mark
    _lay(out, m, m)
    return out


def _lay(into: YMap, source: YMap, items: Mapping[Any, Any]) -> None:
    for k, v in items.items():
        into[k] = v
        for marks in ("key_marks", "value_marks", "value_styles"):
            if k in getattr(source, marks):
                getattr(into, marks)[k] = getattr(source, marks)[k]


def first_target(root: Path) -> str | None:
    """The default target's name (the first of `targets:`), read without loading the
    project (a command given --target needs it to find its build state); None: there is
    none, or odibi.yaml cannot tell (loading the project then says why)."""
    from odibi.config.yaml_load import read_yaml_file

    try:
        top, _ = read_yaml_file(root / "odibi.yaml")
    except ConfigError:
        return None
    targets = top.get("targets") if isinstance(top, dict) else None
    if not isinstance(targets, dict) or not targets:
        return None
    first = next(iter(targets))
    return first if isinstance(first, str) else None
