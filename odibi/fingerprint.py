"""Fingerprints and the files behind them (DESIGN.md §2).

A node's fingerprint is a blake3 digest over its *own parts* and the fingerprints of its
upstream nodes (chained by the planner, which knows which upstream outputs will be
current). Own parts, each kept apart so an explanation can name what changed:

    logic     sql: the canonical parse tree (positions removed; vars as placeholders)
              python: the defining module's source + function name
              read: format + options
    config    the node's semantic config as key paths -> canonical JSON values
              (cosmetic keys, contracts, validate and write are not part of it)
    vars      only the variables the node uses, name -> canonical JSON value
    sources   read nodes: "connection:path" -> (blake3 of the bytes, size)
    scheme    SCHEME, bumped whenever this encoding changes

Contracts, validations and writes get their own keys (`contracts_key`, `validate_key`,
`write_key`): changing them re-checks or re-exports, never recomputes.

This module and `state`/`lockfile` are the only places that touch the filesystem. File
digests are cached by (path, size, mtime, inode): an unchanged file is never read twice; a
touched but unchanged file is rehashed and found unchanged.
"""

from __future__ import annotations

import glob as globlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from blake3 import blake3

from odibi.config.model import Check, Connection, Node, ReadSpec, SqlSpec, WriteSpec
from odibi.errors import ConfigError, did_you_mean
from odibi.hashing import DIGEST_CHARS, digest_bytes, digest_parts, digest_text
from odibi.ids import Digest, NodeId, NodeKind
from odibi.paths import shown
from odibi.resolve import Resolved
from odibi.trace import TraceParts

SCHEME = 2
RULES = "rules-1"  # how contracts/validations are evaluated; part of their keys, so a new
#                 evaluator re-checks every rule once

Stamp = tuple[int, int, int, Digest]  # size, mtime_ns, inode, digest
_NO_RULES = digest_parts(RULES, "[]")
_NO_WRITES = digest_text("[]")
RACY_NS = 3_000_000_000


class FileSystem(Protocol):
    def stat(self, path: str) -> tuple[int, int, int] | None: ...
    def hash(self, path: str) -> Digest: ...


class RealFileSystem:
    """Files, and directories of part files (an export to `path/`) as one: a directory's
    stat is its files' total size, their latest mtime and its inode; its digest covers each
    file's name and bytes."""

    def stat(self, path: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        if stat.S_ISDIR(st.st_mode):
            files = [os.stat(p) for p in self._parts(path)]
            return (sum(f.st_size for f in files),
                    max([st.st_mtime_ns, *(f.st_mtime_ns for f in files)]), st.st_ino)
        return st.st_size, st.st_mtime_ns, st.st_ino

    @staticmethod
    def _parts(path: str) -> list[str]:
        return sorted(os.path.join(d, n) for d, _, names in os.walk(path) for n in names)

    def hash(self, path: str) -> Digest:
        if os.path.isdir(path):
            h = blake3()
            for part in self._parts(path):
                h.update(f"{os.path.relpath(part, path)}\0{self.hash(part)}\0".encode())
            return Digest(h.hexdigest()[:DIGEST_CHARS])
        h = blake3()
        size = os.path.getsize(path)
        if size > 1 << 20:
            h.update_mmap(path)
        else:
            with open(path, "rb") as f:
                h.update(f.read())
        return Digest(h.hexdigest()[:DIGEST_CHARS])


class FileDigests:
    """Digests of files, reusing earlier ones whose stat is unchanged. `changed` collects
    the new stamps for the caller to store."""

    def __init__(self, stamps: Mapping[str, Stamp], fs: FileSystem | None = None) -> None:
        self.stamps = stamps
        self.fs = fs or RealFileSystem()
        self.changed: dict[str, Stamp] = {}

    def digest(self, path: str) -> tuple[Digest, int] | None:
        st = self.fs.stat(path)
        if st is None:
            return None
        size, mtime_ns, inode = st
        old = self.changed.get(path) or self.stamps.get(path)
        if old is not None and old[:3] == (size, mtime_ns, inode):
            return old[3], size
        digest = self.fs.hash(path)
        # A file written within the last few seconds may change again without its mtime
        # moving (timestamp granularity): don't trust such a stamp next time ("racy" files,
        # as git calls them); it is trusted once the file has aged.
        racy = self.now_ns() - mtime_ns < RACY_NS
        self.changed[path] = (size, -1 if racy else mtime_ns, inode, digest)
        return digest, size

    def now_ns(self) -> int:
        return time.time_ns()


def stamp_file(path: Path, read: Callable[[Path], bytes]) -> tuple[bytes, Stamp]:
    """Read a file through `read`, with a stamp that later tells cheaply whether it still
    holds those bytes (`same_file`). The stat is taken before the read (a change during the
    read shows as a changed stat), and a racy file's mtime is not trusted."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    data = read(path)  # a missing or unreadable file: `read`'s own error
    st = st or os.stat(path)
    racy = time.time_ns() - st.st_mtime_ns < RACY_NS
    return data, (st.st_size, -1 if racy else st.st_mtime_ns, st.st_ino, digest_bytes(data))


def same_file(path: Path, stamp: Stamp) -> bool:
    """Whether the file still holds the bytes `stamp` was made from: its stat says so, or
    else its digest. Raises OSError when it cannot be read."""
    st = os.stat(path)
    if (st.st_size, st.st_mtime_ns, st.st_ino) == stamp[:3]:
        return True
    return digest_bytes(path.read_bytes()) == stamp[3]


@dataclass(frozen=True, slots=True)
class OwnParts:
    """Everything in a fingerprint except the upstream fingerprints."""

    kind: NodeKind
    logic: Digest
    config: Mapping[str, str]
    vars: Mapping[str, str]
    sources: Mapping[str, tuple[Digest, int]]
    digest: Digest  # all of the above (and env) and SCHEME
    contracts_key: Digest
    validate_key: Digest
    write_key: Digest
    sql_text: str | None = None
    text_digest: Digest | None = None
    python_file: str | None = None  # project-relative, for explanations
    env: Mapping[str, str] = field(default_factory=dict)  # env var -> digest of its value
    sql_file: str | None = None  # the node's .sql file, project-relative, for explanations
    #                              (not part of any digest: moving SQL to a file changes nothing)

    def as_trace_parts(self, upstream: Mapping[NodeId, Digest]) -> TraceParts:
        return TraceParts(self.logic, self.config, self.vars, self.sources, dict(upstream),
                          SCHEME, self.env)


_PLAIN = re.compile(r'[ !#-\[\]-~]*\Z')  # printable ASCII but '"' and '\\'


def canon(value: Any) -> str:
    """Canonical JSON text. Fast paths for the common small values (this runs several
    times per node on every build)."""
    if isinstance(value, str) and _PLAIN.match(value):
        return f'"{value}"'
    if not value and isinstance(value, (dict, list, tuple)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for k in sorted(value):
            _flatten(f"{prefix}.{k}", value[k], out)
    else:
        out[prefix] = canon(value)


def write_key(resolved: Resolved, writes: tuple[WriteSpec, ...]) -> Digest:
    """What the exports are: where each goes and how (rendered: variables and environment
    included, as a digest), so a change to any of it re-exports."""
    if not writes:
        return _NO_WRITES
    root = resolved.project.root
    return digest_text(canon([[shown(export_path(resolved, w), root), w.format.value,
                                w.rendered_options] for w in writes]))



def reachable_files(resolved: Resolved, own: Mapping[NodeId, OwnParts]
                    ) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(files a build may read, files it may write): every read node's source files and
    every export (read too, by nodes that read what another node exports). The warehouse
    engine's sandbox allows exactly these."""
    project = resolved.project
    writes = tuple(sorted(exported_paths(resolved)))
    reads = {project.connections[conn].root / rel for parts in own.values()
             for conn, _, rel in (key.partition(":") for key in parts.sources)}
    return tuple(sorted(reads)) + writes, writes


def exported_paths(resolved: Resolved) -> frozenset[Path]:
    """Every file some node writes."""
    return frozenset(export_path(resolved, w) for n in resolved.project.nodes.values()
                     for w in n.writes)


def _rules_key(rules: tuple[Any, ...]) -> Digest:
    return _NO_RULES if not rules else digest_parts(RULES, canon([r.text for r in rules]))


def own_parts(resolved: Resolved, name: NodeId, files: FileDigests,
              exported: frozenset[Path] = frozenset()) -> OwnParts:
    """`exported`: files written by nodes; a read of one is not fingerprinted by its bytes
    but by its writer's fingerprint (an upstream), since odibi itself writes it."""
    project = resolved.project
    target = project.target(name)
    variables = {v: canon(project.vars[v]) for v in sorted(target.vars_used)}
    config: dict[str, str] = {}
    sources: dict[str, tuple[Digest, int]] = {}
    sql_text = text_digest = python_file = sql_file = None
    if isinstance(target, Check):
        kind = NodeKind.CHECK
        logic = digest_text(target.rule.text)
        config["on_fail"] = canon(target.on_fail.value)
        keys = (_NO_RULES, _NO_RULES, _NO_WRITES)
        env = {}
    else:
        kind = target.kind
        env = dict(target.env_used)
        logic, python_file = _logic(resolved, target, files, config, sources, exported)
        if isinstance(target.producer, SqlSpec):
            sql_text = target.producer.template
            text_digest = resolved.sql[name].text
            sql_file = target.producer.file
        if target.version is not None:
            config["version"] = canon(target.version)
        keys = (_rules_key(target.contracts), _rules_key(target.validate),
                write_key(resolved, target.writes))
    digest = digest_parts(str(SCHEME), kind.value, logic, canon(config), canon(variables),
                          canon(sorted((k, d) for k, (d, _) in sources.items())),
                          canon(env))
    return OwnParts(kind, logic, config, variables, sources, digest, *keys,
                    sql_text=sql_text, text_digest=text_digest, python_file=python_file, env=env,
                    sql_file=sql_file)


def _logic(resolved: Resolved, node: Node, files: FileDigests, config: dict[str, str],
           sources: dict[str, tuple[Digest, int]], exported: frozenset[Path]
           ) -> tuple[Digest, str | None]:
    spec = node.producer
    project = resolved.project
    if isinstance(spec, SqlSpec):
        return resolved.sql[node.name].tree, None
    if isinstance(spec, ReadSpec):
        _flatten("read", {"connection": spec.connection, "path": spec.path,
                          "format": spec.format.value, "options": dict(spec.options)}, config)
        conn = project.connections[spec.connection]
        for path in list_sources(conn, spec, node):
            if path in exported:
                continue
            found = files.digest(str(path))
            if found is not None:
                sources[f"{conn.name}:{path.relative_to(conn.root).as_posix()}"] = found
        return digest_parts("read", spec.format.value, canon(dict(spec.options))), None
    fn = resolved.python[node.name]
    config["python"] = canon(f"{fn.module}:{fn.function}")
    found = files.digest(str(fn.file))
    module_digest = found[0] if found else Digest("missing")
    return digest_parts("python", module_digest, fn.function), shown(fn.file, project.root)


def chain(own: Digest, upstream: Mapping[NodeId, Digest]) -> Digest:
    """The fingerprint: own parts chained with the upstream fingerprints, by name."""
    parts: list[str] = [own]
    for name in sorted(upstream):
        parts += (name, upstream[name])
    return digest_parts(*parts)


def list_sources(conn: Connection, spec: ReadSpec, node: Node) -> tuple[Path, ...]:
    """The files a read node reads, sorted; () when none match (the caller decides)."""
    if spec.is_glob:
        names = sorted(globlib.glob(spec.rendered_path, root_dir=conn.root, recursive=True))
        paths = [conn.root / n for n in names]
        paths = [p for p in paths if p.is_file()]
    else:
        p = conn.root / spec.rendered_path
        paths = [p] if p.exists() else []
    for p in paths:
        real = p.resolve()
        if real != conn.root and conn.root not in real.parents:
            raise ConfigError(
                f"node '{node.name}': {p.relative_to(conn.root)} is a link that leaves "
                f"connection '{conn.name}' (base_path: {conn.base_path})", span=spec.path_span,
                node=node.name)
        if p.is_dir():
            raise ConfigError(f"node '{node.name}': '{spec.rendered_path}' is a directory",
                              span=spec.path_span, node=node.name,
                              hint="read its files with a glob, e.g. dir/*.parquet")
    return tuple(paths)


def check_sources(resolved: Resolved) -> None:
    """Every read node whose files no other node writes must find at least one file."""
    project = resolved.project
    for name, node in project.nodes.items():
        spec = node.producer
        if not isinstance(spec, ReadSpec) or any(
                project.nodes[d].writes for d in resolved.deps(name)):
            continue  # another node writes what it reads: it exists once that node ran
        conn = project.connections[spec.connection]
        if list_sources(conn, spec, node):
            continue
        target = conn.root / spec.rendered_path
        where = shown(target, project.root)
        parent = target.parent
        siblings = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
        hint = did_you_mean(target.name, siblings) if not spec.is_glob else None
        raise ConfigError(f"node '{name}': source file not found: {where}", span=spec.path_span,
                          node=name, hint=hint or f"check the path and connection "
                          f"'{conn.name}' (base_path: {conn.base_path})")


def export_path(resolved: Resolved, write: WriteSpec) -> Path:
    return resolved.project.connections[write.connection].root / write.rendered_path


def export_changed(path: str, size: int, mtime_ns: int, digest: Digest,
                   files: FileDigests) -> str | tuple[int, int] | None:
    """None if the export is as odibi wrote it; 'missing' or 'modified' if not; its new
    (size, mtime_ns) if only its stamp moved (touched, same bytes: worth recording)."""
    st = files.fs.stat(path)
    if st is None:
        return "missing"
    if st[0] == size and st[1] == mtime_ns:
        return None
    return (st[0], st[1]) if files.fs.hash(path) == digest else "modified"
