"""odibi.lock: the readable, committed record of what was built and from what.

Format (valid TOML, written by hand here so the bytes are exactly ours):

    # odibi.lock ... (a fixed header comment)
    version = 1
    project = "shop"

    [nodes.clean_orders]
    kind = "sql"
    fingerprint = "<hex>"
    logic = "<hex>"                      # parse tree / module source / read format+options
    config."read.options.delim" = ";"    # each semantic config key and its value
    vars.min_amount = 0                  # each variable the node uses, and its value
    env.REGION = "<hex>"                 # each environment variable it uses: a digest only
    sources."raw:orders.csv" = "<hex>"   # each source file's bytes
    upstream.raw_orders = "<hex>"        # each upstream fingerprint
    output = "<hex>"                     # order-insensitive digest of the output
    rows = 62
    schema = ["order_id BIGINT", "amount DOUBLE"]

Deterministic: nodes and keys sorted, no timestamps, durations or machine paths, so the
same inputs give byte-identical files and CI can check the lock is current. One table per
node, separated by blank lines, so branches that touched different nodes merge cleanly.

The lock is a projection of the build state (`.odibi/state.db`), never the source of
truth: it is rewritten from the state at the end of each build, and an unreadable or old
lock is reported and replaced, never trusted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from odibi.ids import NodeId
from odibi.state import Trace

LOCK_FILE = "odibi.lock"
LOCK_VERSION = 1
HEADER = ("# odibi.lock: what odibi built, and from what. Written by `odibi build`; commit it.\n"
          "# Deterministic (sorted; no times or machine paths): the same inputs give the same bytes.\n")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _str(k)


_PLAIN = re.compile(r'[ !#-\[\]-~]*\Z')  # printable ASCII but '"' and '\\'


def _str(v: str) -> str:
    if _PLAIN.match(v):
        return f'"{v}"'
    # a JSON string is a TOML basic string, but for DEL, which TOML wants escaped
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(canonical: str) -> str:
    """A config/var value (canonical JSON text) as TOML: strings, numbers and booleans as
    themselves; lists, mappings and nulls as their JSON text in a string."""
    try:
        value = json.loads(canonical)
    except ValueError:
        return _str(canonical)
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return canonical
    return _str(canonical)


def render(project: str, traces: Mapping[NodeId, Trace], names: Iterable[NodeId]) -> str:
    """The lock text for `names` (the project's nodes that have been built)."""
    out = [HEADER, f"version = {LOCK_VERSION}\n", f"project = {_str(project)}\n"]
    for name in sorted(names):
        trace = traces.get(name)
        if trace is None:
            continue
        parts = trace.parts
        lines = [f"\n[nodes.{_key(name)}]", f"kind = {_str(trace.kind)}",
                 f"fingerprint = {_str(trace.fingerprint)}", f"logic = {_str(parts.logic)}"]
        for section, values in (("config", parts.config), ("vars", parts.vars),
                                ("env", parts.env)):
            for k, v in sorted(values.items()):
                lines.append(f"{section}.{_key(k)} = {_value(v)}")
        for k, (digest, _size) in sorted(parts.sources.items()):
            lines.append(f"sources.{_key(k)} = {_str(digest)}")
        for k, v in sorted(parts.upstream.items()):
            lines.append(f"upstream.{_key(k)} = {_str(v)}")
        if trace.output is not None:
            lines.append(f"output = {_str(trace.output)}")
        if trace.rows is not None:
            lines.append(f"rows = {trace.rows}")
        if trace.schema:
            lines.append("schema = [" + ", ".join(_str(c) for c in trace.schema) + "]")
        out.append("\n".join(lines) + "\n")
    return "".join(out)


def check(text: str) -> str | None:
    """None if `text` is a readable lock of this version, else what is wrong with it."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return f"it does not parse ({e})"
    version = doc.get("version")
    if version is None:
        return "it has no version"
    if version != LOCK_VERSION:
        return f"lock version {version!r} is not {LOCK_VERSION}"
    if not isinstance(doc.get("nodes", {}), dict):
        return "it has no [nodes] table"
    return None


def lock_name(target: str | None = None) -> str:
    """`odibi.lock`, or `odibi.NAME.lock` for a target other than the default."""
    return LOCK_FILE if target is None else f"odibi.{target}.lock"


def write_if_changed(root: Path, text: str, *, ours: bool = False,
                     name: str = LOCK_FILE) -> tuple[bool, str | None]:
    """Write the lock atomically (temp file, fsync, rename) unless it already holds `text`.
    Returns (written, problem with the old file or None). `ours`: the file is as odibi last
    wrote it (same size, mtime and inode), so it need not be parsed to be trusted; a file
    changed since (a checkout, a merge, a truncation) is parsed, so damage is reported.
    Temp files that a killed build left behind are removed."""
    path = root / name
    prefix = f".{name}."
    try:
        old = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        old = None
    except (OSError, UnicodeDecodeError):
        old = "\0"  # a TOML parser refuses a NUL: reported as unreadable below
    if old == text:
        return False, None
    head = HEADER + f"version = {LOCK_VERSION}\n"
    problem = None if old is None or (ours and old.startswith(head)) else (
        "it is empty" if not old else "it is unreadable" if old == "\0" else check(old))
    import tempfile  # only when the lock changes

    for stale in root.glob(f"{prefix}*"):  # one build at a time: these are dead
        stale.unlink(missing_ok=True)

    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True, problem


@dataclass(frozen=True, slots=True)
class LockedNode:
    fingerprint: str
    upstream: Mapping[str, str]


def read_entries(root: Path, name: str = LOCK_FILE) -> tuple[dict[str, LockedNode], str | None]:
    """{node: its fingerprint and upstream fingerprints} from odibi.lock (for
    `state:modified`), and a problem if the file is unreadable."""
    import tomllib

    path = root / name
    if not path.exists():
        return {}, None
    text = path.read_text(encoding="utf-8", errors="replace")
    problem = check(text)
    if problem:
        return {}, problem
    nodes = tomllib.loads(text).get("nodes", {})
    entries = {}
    for n, t in nodes.items():
        up = t.get("upstream", {}) if isinstance(t, dict) else None
        if not isinstance(up, dict) or not isinstance(t.get("fingerprint", ""), str):
            return {}, f"its entry for '{n}' is malformed"
        entries[n] = LockedNode(str(t.get("fingerprint", "")), {str(k): str(v) for k, v in up.items()})
    return entries, None
