"""odibi's DuckDB sandbox and the SQL text its DuckDB engine writes: literals, quoting,
reader options, and where an export is written before it is renamed into place.

Sandbox: every DuckDB odibi runs user SQL in (`connect`) has external access off, except
for the files it is given (`Access`: a build's read nodes' files and its exports'
temporary files), no extension loading or installing, and its configuration locked, so
no statement can read or write another file, attach a database or load an extension.
DuckDB's own files (the database, its WAL, its spill directory) are not subject to it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from odibi.engines.base import Access, EngineError
from odibi.ids import Format

READERS = {Format.CSV: "read_csv", Format.PARQUET: "read_parquet", Format.JSON: "read_json"}


def allowed_paths(access: Access) -> list[str]:
    """The files a sandboxed DuckDB may touch: the reads as they are, and the temporary
    file of each export destination (`export_temp`: DuckDB never writes the file itself)."""
    return sorted({str(p) for p in access.reads} | {str(export_temp(w)) for w in access.writes})


def allowed_dirs(access: Access) -> list[str]:
    # a partitioned export writes a directory of files at its temporary path
    found = {str(export_temp(w)) + os.sep for w in access.writes}
    return sorted(found | {str(d).rstrip(os.sep) + os.sep for d in access.directories})


NOTHING = Access()


def export_temp(dest: Path) -> Path:
    """Where an export is written before it is renamed into place: known before the
    build starts (the sandbox allows exactly it), one per destination and process (one
    node writes a file, and a node's exports run one after another)."""
    return dest.with_name(f".{dest.name}.odibi-tmp-{os.getpid()}")


def connect(database: str, reachable: Access = NOTHING, *, read_only: bool = False,
            config: Mapping[str, Any] | None = None, session: Sequence[str] = ()) -> Any:
    """A DuckDB connection in odibi's sandbox (module docstring). DuckDB accepts
    `allowed_paths` only once it runs, so they are set after connecting, then access is
    turned off and the configuration locked (a statement cannot turn it back on).
    `session`: SET statements for this connection, run before the lock."""
    import duckdb

    settings = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                **(config or {})}
    con = duckdb.connect(database, read_only=read_only, config=settings)
    try:
        for statement in session:
            con.execute(statement)
        con.execute(f"SET allowed_paths = {sql_literal(allowed_paths(reachable))}")
        con.execute(f"SET allowed_directories = {sql_literal(allowed_dirs(reachable))}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


SANDBOX_HINT = ("odibi runs SQL in DuckDB's sandbox: it reaches only the files of read nodes "
                "and exports; add a read node for that file")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: Any) -> str:
    """A YAML option value as a DuckDB literal (strings, numbers, booleans, lists, maps)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{sql_literal(str(k))}: {sql_literal(v)}"
                               for k, v in value.items()) + "}"
    raise EngineError(f"cannot pass {value!r} to DuckDB")


def reader_options(options: Mapping[str, Any]) -> str:
    return "".join(f", {k} = {sql_literal(v)}" for k, v in options.items())


def copy_options(fmt: Format, options: Mapping[str, Any]) -> str:
    parts = [f"FORMAT {fmt.value}"]
    given = {k.lower() for k in options}
    if fmt is Format.CSV and "header" not in given:
        parts.append("HEADER true")
    if "use_tmp_file" not in given:  # odibi writes a temporary file and renames it itself
        parts.append("USE_TMP_FILE false")
    parts += [f"{k} {sql_literal(v)}" for k, v in options.items()]
    return ", ".join(parts)


def engine_error(e: Exception, redact: Mapping[str, str] | None = None) -> EngineError:
    text = str(e).strip()
    text = text.split("\n\nLINE")[0] if text else type(e).__name__
    if type(e).__name__ == "PermissionException":  # the sandbox refused a file
        text = f"{text} ({SANDBOX_HINT})"
    # DuckDB quotes the values it could not use: an `${env:X}` value would otherwise reach
    # the terminal, the logs and the state's record of the failure
    for value, placeholder in (redact or {}).items():
        text = text.replace(value, placeholder)
    return EngineError(text)


def drop_stale_temps(dest: Path) -> None:
    """Remove what a killed odibi left of an earlier write of `dest` (its temp files, named
    after the process that wrote them, when that process is gone)."""
    prefix = f".{dest.name}.odibi-tmp-"
    try:
        names = [n for n in os.listdir(dest.parent) if n.startswith(prefix)]
    except OSError:
        return
    for n in names:
        pid = n[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(dest.parent / n)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's: leave it
    return True
