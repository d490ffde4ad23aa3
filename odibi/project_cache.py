"""The loaded project, cached in the build state: a command whose project files did not
change reuses the last resolved project instead of reading YAML and parsing SQL.

A cached project is reused only if everything it was made from is the same (`LoadedFrom`):
odibi's own code, the --var overrides, the YAML files (by content digest) and the files the
pipeline globs match, the .sql files nodes name (by stat), the Python transform modules (by
content digest). A project that uses `${env:...}` is never cached whole: its values would be
written to disk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odibi.config.load import VarOverride, load_project
from odibi.config.ytree import CACHE_VERSION, read_bytes
from odibi.fingerprint import Stamp, same_file, stamp_file
from odibi.hashing import digest_bytes, digest_parts
from odibi.ids import Digest
from odibi.resolve import Resolved, resolve
from odibi.state import State


@dataclass(frozen=True, slots=True)
class LoadedFrom:
    """What a cached project was loaded from; it is reused only if all of it is the same."""

    version: str
    overrides: str
    patterns: tuple[str, ...]
    files: Mapping[str, Digest]  # project-relative YAML file -> content digest
    modules: Mapping[str, Digest]  # Python transform module file -> content digest
    sql_files: Mapping[str, Stamp] = field(default_factory=dict)  # project-relative .sql files


CachedProject = tuple[LoadedFrom, Resolved]


def load(root: Path, overrides: list[VarOverride], state: State | None,
         target: str | None = None) -> Resolved:
    """Load and resolve the project (see `load_fresh`), remembering it in a writable
    state for the next command."""
    resolved, entry = load_fresh(root, overrides, state, target)
    if entry is not None and state is not None and (state.writable or state.holding):
        remember(state, entry)
    return resolved


def remember(state: State, entry: CachedProject) -> None:
    state.caches.put_project(str(entry[1].project.root), entry[0], entry[1])


def load_fresh(root: Path, overrides: list[VarOverride], state: State | None,
               target: str | None = None) -> tuple[Resolved, CachedProject | None]:
    """Load and resolve the project. When nothing it was made from changed, the last
    resolved project is reused from the state; otherwise unchanged YAML files and SQL texts
    still come from the state's parse caches, and the result is returned with what to
    cache (None: not to be cached)."""
    usable = state is not None and state.available
    caching = usable or (state is not None and state.holding)
    root = root.resolve()
    wanted = _overrides_key(overrides)
    if usable:
        hit = _cached_project(root, wanted, state)  # type: ignore[arg-type]
        if hit is not None:
            return hit, None
    files = _ProjectFiles(root, state if caching else None)
    project = load_project(root, overrides, read_file=files.read, read_sql=files.read_sql,
                           target=target)
    resolved = resolve(project, state.caches if caching and state is not None else None)
    if files.uses_env:
        return resolved, None
    modules = {str(fn.file): digest_bytes(fn.file.read_bytes())
               for fn in resolved.python.values()}
    made = LoadedFrom(_cache_version(), wanted, project.pipeline_patterns, files.digests,
                       modules, files.sql_files)
    return resolved, (made, resolved)


class _ProjectFiles:
    """Reads the project's files for `load_project`, noting what each was (the cache key of
    the project) and whether any uses `${env:...}`; YAML parses come from the state's
    cache (`state`: None, no cache)."""

    def __init__(self, root: Path, state: State | None) -> None:
        self.root = root
        self.state = state
        self.digests: dict[str, Digest] = {}  # project-relative YAML file -> digest
        self.sql_files: dict[str, Stamp] = {}
        self.uses_env = False

    def _note(self, data: bytes) -> None:
        self.uses_env = self.uses_env or b"${env:" in data or b"${ env:" in data

    def read_sql(self, path: Path) -> bytes:
        data, stamp = stamp_file(path, read_bytes)  # many small files: stat, not hash, later
        self.sql_files[path.relative_to(self.root).as_posix()] = stamp
        self._note(data)
        return data

    def read(self, path: Path) -> tuple[Any, bytes]:
        data = read_bytes(path)
        self.digests[path.relative_to(self.root).as_posix()] = digest_bytes(data)
        self._note(data)
        if self.state is None:
            return _parse(data, path), data
        key = digest_parts(CACHE_VERSION, digest_bytes(data))
        value = self.state.caches.get_yaml(str(path), key)
        if value is None:
            value = _parse(data, path)
            self.state.caches.put_yaml(str(path), key, value)
        return value, data


_CODE: list[str] = []


def _cache_version() -> str:
    """What a cached project was made by: the cache format and odibi's own code (size and
    mtime of its modules), so that an upgraded odibi never reuses a project another
    version resolved."""
    if not _CODE:
        package = Path(__file__).parent
        stamps = []
        for path in sorted(package.rglob("*.py")):
            st = path.stat()
            stamps.append((path.relative_to(package).as_posix(), st.st_size, st.st_mtime_ns))
        _CODE.append(digest_parts(CACHE_VERSION, json.dumps(stamps)))
    return _CODE[0]


def _overrides_key(overrides: list[VarOverride]) -> str:
    return json.dumps(sorted((o.name, repr(o.value)) for o in overrides))


def _cached_project(root: Path, overrides: str, state: State) -> Resolved | None:
    def fresh(made: Any) -> bool:
        if not isinstance(made, LoadedFrom) or made.version != _cache_version() \
                or made.overrides != overrides:
            return False
        from odibi.config.load import PROJECT_FILE, pipeline_files

        files = [PROJECT_FILE, *pipeline_files(root, made.patterns)]
        if files != list(made.files):
            return False
        try:
            return all(digest_bytes((root / rel).read_bytes()) == made.files[rel]
                       for rel in files) and \
                all(same_file(root / rel, st) for rel, st in made.sql_files.items()) and \
                all(digest_bytes(Path(p).read_bytes()) == d for p, d in made.modules.items())
        except OSError:
            return False

    resolved = state.caches.get_project(str(root), fresh)
    return resolved if isinstance(resolved, Resolved) else None


def _parse(data: bytes, path: Path) -> Any:
    from odibi.config.yaml_load import parse_yaml_bytes  # PyYAML only on a cache miss

    return parse_yaml_bytes(data, str(path))
