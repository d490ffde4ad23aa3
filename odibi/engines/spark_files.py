"""The Spark warehouse's layout, and what odibi does to it without Spark.

    <warehouse>/store/<node>__<version>/   one stored version: a Parquet directory, written
                                           once (into tmp/, then renamed here whole)
    <warehouse>/current/<node>             the version a node names now (one line of text)
    <warehouse>/exports/<node>__<version>/<key>   a copy of each file exported from that
                                           version: restoring it copies the file back
    <warehouse>/tmp/                       what is being written (a crash leaves it: cleared
                                           by the next build, which holds the build lock)

A version is in the store only once it is whole (the rename is the commit), and a node's
pointer is replaced by a rename, so a driver killed at any moment leaves every version
either whole or absent and every pointer old or new. The pointers, the store's listing and
the stamp are read here with plain file operations: planning, restores and `gc` on a local
warehouse start no JVM. A warehouse at a URI (hdfs://, s3a://, abfss://) is reached through
the cluster's Hadoop filesystem (`spark_engine.HadoopFiles`), which needs Spark.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from odibi.ids import NodeId, OutputRef

STORE, CURRENT, EXPORTS, TMP = "store", "current", "exports", "tmp"
SCHEMA_FILE = "_odibi_schema.json"  # in a version's directory: its Spark schema
MARKER = "odibi-warehouse.json"  # says what this directory is (and its layout's version)
LAYOUT = 1


def version_dir(out: OutputRef) -> str:
    return f"{out.node}__{out.version}"


def ref_of(name: str) -> OutputRef | None:
    node, sep, version = name.rpartition("__")
    return OutputRef(NodeId(node), version) if sep and node and version else None


def local_stamp(where: Path) -> str | None:
    """The warehouse as seen from outside: the modification times of its store and pointer
    directories (a version added or dropped, a pointer replaced, changes one). None: there
    is no warehouse."""
    try:
        marker = os.stat(where / MARKER)
        store = os.stat(where / STORE)
        current = os.stat(where / CURRENT)
    except OSError:
        return None
    return json.dumps(["spark", marker.st_ino, store.st_mtime_ns, store.st_ino,
                       current.st_mtime_ns, current.st_ino])


class Files(Protocol):
    """The warehouse's file operations (local paths, or a Hadoop filesystem)."""

    def exists(self, rel: str) -> bool: ...
    def uri(self, rel: str) -> str: ...
    def mkdirs(self, rel: str) -> None: ...
    def listdir(self, rel: str) -> list[str]: ...
    def read_text(self, rel: str) -> str | None: ...
    def write_text(self, rel: str, text: str) -> None:
        """Whole or not at all (a temporary file renamed into place)."""
        ...
    def rename(self, src: str, dst: str) -> None: ...
    def delete(self, rel: str) -> None: ...
    def size(self, rel: str) -> int: ...


class LocalFiles:
    """A warehouse on a local (or mounted) path."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def exists(self, rel: str) -> bool:
        return (self.where / rel).exists()

    def uri(self, rel: str) -> str:
        return str(self.where / rel)

    def mkdirs(self, rel: str) -> None:
        (self.where / rel).mkdir(parents=True, exist_ok=True)

    def listdir(self, rel: str) -> list[str]:
        try:
            return os.listdir(self.where / rel)
        except FileNotFoundError:
            return []

    def read_text(self, rel: str) -> str | None:
        try:
            return (self.where / rel).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_text(self, rel: str, text: str) -> None:
        path = self.where / rel
        tmp = self.where / TMP / f"{path.name}.{uuid.uuid4().hex}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(self.where / src, self.where / dst)

    def delete(self, rel: str) -> None:
        path = self.where / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def size(self, rel: str) -> int:
        total = 0
        for dirpath, _, names in os.walk(self.where / rel):
            for n in names:
                try:
                    total += os.path.getsize(os.path.join(dirpath, n))
                except OSError:
                    pass
        return total


class Layout:
    """The warehouse's directories, over its `Files`."""

    def __init__(self, files: Files) -> None:
        self.files = files

    def create(self) -> None:
        for d in (STORE, CURRENT, EXPORTS, TMP):
            self.files.mkdirs(d)
        if not self.files.exists(MARKER):
            self.files.write_text(MARKER, json.dumps({"odibi": "spark warehouse",
                                                      "layout": LAYOUT}) + "\n")

    def is_warehouse(self) -> bool | None:
        """True: an odibi Spark warehouse; None: nothing there yet; False: something else."""
        text = self.files.read_text(MARKER)
        if text is None:
            return None if not self.files.listdir("") else False
        try:
            return json.loads(text).get("layout") == LAYOUT
        except ValueError:
            return False

    def stored(self) -> frozenset[OutputRef]:
        return frozenset(r for n in self.files.listdir(STORE) if (r := ref_of(n)) is not None)

    def current(self) -> dict[NodeId, OutputRef]:
        found: dict[NodeId, OutputRef] = {}
        for name in self.files.listdir(CURRENT):
            version = self.files.read_text(f"{CURRENT}/{name}")
            if version and version.strip():
                found[NodeId(name)] = OutputRef(NodeId(name), version.strip())
        return found

    def point(self, node: NodeId, out: OutputRef) -> None:
        self.files.write_text(f"{CURRENT}/{node}", out.version + "\n")

    def unpoint(self, node: NodeId) -> None:
        self.files.delete(f"{CURRENT}/{node}")

    def version_path(self, out: OutputRef) -> str:
        return f"{STORE}/{version_dir(out)}"

    def export_copy(self, out: OutputRef, key: str) -> str:
        return f"{EXPORTS}/{version_dir(out)}/{key}"

    def temp(self, what: str) -> str:
        return f"{TMP}/{what}.{uuid.uuid4().hex}"

    def drop(self, out: OutputRef) -> None:
        self.files.delete(self.version_path(out))
        self.files.delete(f"{EXPORTS}/{version_dir(out)}")

    def clear_temps(self) -> None:
        """Remove what a killed build left half-written (the caller holds the build lock)."""
        for name in self.files.listdir(TMP):
            self.files.delete(f"{TMP}/{name}")

    def walk_sizes(self) -> Iterator[int]:
        for d in (STORE, EXPORTS):
            yield self.files.size(d)
