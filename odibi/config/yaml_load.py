"""YAML text -> plain Python values that remember where they came from.

The only importer of `yaml`. Documents are loaded safely (the C loader when present) into
`YMap` (a dict) and `YSeq` (a list) that carry the 1-based (line, col) of themselves, of
each key and of each value, so that later stages can point at the exact place of a
mistake. Scalars stay plain Python values; their position lives in their parent.

Refused here, each as a `ConfigError` naming file, line and column:
- syntax errors;
- duplicate keys in one mapping (PyYAML would silently keep the last);
- alias bombs: anchors/aliases are allowed, but a document whose expansion would be far
  larger than its text (the "billion laughs") is rejected without being expanded;
- nesting deeper than `MAX_DEPTH`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from odibi.config.ytree import Mark, YMap, YSeq
from odibi.errors import ConfigError, Span

try:  # the C loader is 10x faster on large pipeline files
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

MAX_DEPTH = 64
MAX_EXPANSION_FACTOR = 10
MAX_EXPANSION_SLACK = 10_000

def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _style(node: yaml.Node) -> str:
    return (getattr(node, "style", None) or "") if isinstance(node, yaml.ScalarNode) else ""


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    pass


_STR_TAG = "tag:yaml.org,2002:str"


class _Converter:
    """Composed YAML nodes -> YMap/YSeq/scalars, in one recursive pass.

    Faster than PyYAML's generic constructor, and it measures the expanded size of the
    document as it goes: an alias to a collection reuses the object built for the anchor
    (nothing is copied) but counts its full size, so an alias bomb is refused after
    linear work."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.built: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, expanded size)

    def convert(self, node: yaml.Node, depth: int) -> tuple[Any, int]:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value, 1
            return self.loader.construct_object(node, deep=True), 1
        key = id(node)
        done = self.built.get(key)
        if done is not None:
            return done
        if depth > MAX_DEPTH:
            line, col = _mark(node)
            raise ConfigError(f"YAML nested deeper than {MAX_DEPTH} levels",
                              span=Span(self.file, line, col))
        if isinstance(node, yaml.MappingNode):
            result = self._map(node, depth)
        elif isinstance(node, yaml.SequenceNode):
            result = self._seq(node, depth)
        else:  # pragma: no cover - the composer makes only these three kinds
            raise ConfigError("unsupported YAML node", span=Span(self.file, *_mark(node)))
        self.built[key] = result
        return result

    def _map(self, node: yaml.MappingNode, depth: int) -> tuple[YMap, int]:
        result = YMap()
        result.mark = _mark(node)
        size = 1
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("a mapping key must be a plain value",
                                  span=Span(self.file, *_mark(key_node)))
            key, _ = self.convert(key_node, depth + 1)
            if key in result:
                line, col = _mark(key_node)
                raise ConfigError(
                    f"duplicate key '{key}' (first given on line {result.key_marks[key][0]})",
                    span=Span(self.file, line, col, width=len(str(key))),
                )
            value, n = self.convert(value_node, depth + 1)
            size += n
            self._put(result, key, value, key_node, value_node)
        for merge in merges:  # merge keys (<<): the mapping's own keys win, then the first
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise ConfigError("a merge key (<<) needs a mapping or a list of mappings",
                                      span=Span(self.file, *_mark(source)))
                merged, n = self.convert(source, depth + 1)
                size += n
                for key, value in merged.items():
                    if key not in result:
                        result[key] = value
                        result.key_marks[key] = merged.key_marks[key]
                        result.value_marks[key] = merged.value_marks[key]
                        result.value_styles[key] = merged.value_styles[key]
        return result, size

    @staticmethod
    def _put(result: YMap, key: Any, value: Any, key_node: yaml.Node, value_node: yaml.Node) -> None:
        result[key] = value
        result.key_marks[key] = _mark(key_node)
        result.value_marks[key] = _mark(value_node)
        result.value_styles[key] = _style(value_node)

    def _seq(self, node: yaml.SequenceNode, depth: int) -> tuple[YSeq, int]:
        result = YSeq()
        result.mark = _mark(node)
        size = 1
        for item in node.value:
            value, n = self.convert(item, depth + 1)
            size += n
            result.append(value)
            result.item_marks.append(_mark(item))
            result.item_styles.append(_style(item))
        return result, size


_CLOSERS = {"flow mapping": ("{", "}"), "flow sequence": ("[", "]")}


def _char_at(text: str, mark: Any) -> str:
    lines = text.splitlines()
    if mark is None or mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return ""
    return lines[mark.line][mark.column]


def _syntax_error(e: yaml.MarkedYAMLError, file: str, text: str) -> ConfigError:
    """PyYAML's words, made plainer for the slips people make most."""
    mark = e.problem_mark or e.context_mark
    problem = e.problem or e.context or "invalid YAML"
    hint = None
    for kind, (opener, closer) in _CLOSERS.items():
        if e.context and kind in e.context and e.context_mark is not None \
                and f"'{closer}'" in problem:
            mark, problem = e.context_mark, f"'{opener}' is never closed"
            hint = f"add the missing '{closer}'"
    if "cannot start any token" in problem and _char_at(text, e.problem_mark) == "\t":
        problem, hint = "a tab character cannot indent YAML", "indent with spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        hint = "quote a value that contains ': ', or write it as a block (sql: |)"
    span = Span(file, mark.line + 1, mark.column + 1) if mark else None
    return ConfigError(f"YAML syntax error: {problem}", span=span, hint=hint)


def parse_yaml(text: str, file: str) -> Any:
    """Parse one YAML document. `file` is used in error spans. Empty text gives None."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        converter = _Converter(loader, file)
        value, size = converter.convert(node, 1)
        unique = len(converter.built)
        if size > MAX_EXPANSION_FACTOR * unique + MAX_EXPANSION_SLACK and size > 100_000:
            line, col = _mark(node)
            raise ConfigError(
                f"YAML aliases expand to {size:,} values from {unique:,} collections "
                "(an alias bomb?); refused without expanding",
                span=Span(file, line, col), hint="use fewer nested anchors/aliases")
        return value
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(e, file, text) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"YAML error: {e}", span=Span(file, 1, 1)) from None
    except RecursionError:
        raise ConfigError(
            f"YAML nested deeper than {MAX_DEPTH} levels", span=Span(file, 1, 1)
        ) from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path) -> tuple[Any, bytes]:
    from odibi.config.ytree import read_bytes

    """Read and parse a YAML file; returns (value, raw bytes) so callers can digest the
    bytes without reading the file twice."""
    data = read_bytes(path)
    return parse_yaml_bytes(data, str(path)), data


def parse_yaml_bytes(data: bytes, file: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError("file is not valid UTF-8", span=Span(file, line, 1)) from None
    return parse_yaml(text, file)
