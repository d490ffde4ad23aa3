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

from odibi.errors import ConfigError, Span

try:  # the C loader is 10x faster on large pipeline files
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

MAX_DEPTH = 64
MAX_EXPANSION_FACTOR = 10
MAX_EXPANSION_SLACK = 10_000

Mark = tuple[int, int]  # 1-based line, col


class YMap(dict[Any, Any]):
    """A mapping with positions: `mark` of the mapping, `key_marks[k]`, `value_marks[k]`.
    `value_styles[k]` is the scalar style ('|', '>', '"', "'" or '') of string values."""

    __slots__ = ("mark", "key_marks", "value_marks", "value_styles")

    def __init__(self) -> None:
        super().__init__()
        self.mark: Mark = (1, 1)
        self.key_marks: dict[Any, Mark] = {}
        self.value_marks: dict[Any, Mark] = {}
        self.value_styles: dict[Any, str] = {}


class YSeq(list[Any]):
    """A sequence with positions: `mark` of the sequence, `item_marks[i]` of each item."""

    __slots__ = ("mark", "item_marks", "item_styles")

    def __init__(self) -> None:
        super().__init__()
        self.mark: Mark = (1, 1)
        self.item_marks: list[Mark] = []
        self.item_styles: list[str] = []


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _style(node: yaml.Node) -> str:
    return (getattr(node, "style", None) or "") if isinstance(node, yaml.ScalarNode) else ""


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    file: str = "<yaml>"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YMap:
    loader.flatten_mapping(node)  # resolves merge keys (<<)
    result = YMap()
    result.mark = _mark(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            line, col = _mark(key_node)
            raise ConfigError("a mapping key must be a plain value", span=Span(loader.file, line, col))
        if key in result:
            line, col = _mark(key_node)
            raise ConfigError(
                f"duplicate key '{key}' (first given on line {result.key_marks[key][0]})",
                span=Span(loader.file, line, col, width=len(str(key))),
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_marks[key] = _mark(key_node)
        result.value_marks[key] = _mark(value_node)
        result.value_styles[key] = _style(value_node)
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> YSeq:
    result = YSeq()
    result.mark = _mark(node)
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_marks.append(_mark(item))
        result.item_styles.append(_style(item))
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _check_expansion(root: yaml.Node, file: str) -> None:
    """Refuse documents whose aliases would expand far beyond their size, or that nest
    too deep. Sizes are memoised per node object, so this is linear in the text."""
    size: dict[int, int] = {}
    unique = 0
    # iterative post-order walk: (node, depth, children_done)
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if id(node) in size:
            continue
        children = _children(node)
        if depth > MAX_DEPTH:
            line, col = _mark(node)
            raise ConfigError(
                f"YAML nested deeper than {MAX_DEPTH} levels", span=Span(file, line, col)
            )
        if done or not children:
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            unique += 1
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in size)
    limit = MAX_EXPANSION_FACTOR * unique + MAX_EXPANSION_SLACK
    if size[id(root)] > limit:
        line, col = _mark(root)
        raise ConfigError(
            f"YAML aliases expand to {size[id(root)]:,} values from {unique:,} "
            "(an alias bomb?); refused without expanding",
            span=Span(file, line, col),
            hint="use fewer nested anchors/aliases",
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(text: str, file: str) -> Any:
    """Parse one YAML document. `file` is used in error spans. Empty text gives None."""
    loader = _Loader(text)
    loader.file = file
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, file)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else None
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", span=span) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"YAML error: {e}", span=Span(file, 1, 1)) from None
    except RecursionError:
        raise ConfigError(
            f"YAML nested deeper than {MAX_DEPTH} levels", span=Span(file, 1, 1)
        ) from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path) -> tuple[Any, bytes]:
    """Read and parse a YAML file; returns (value, raw bytes) so callers can digest the
    bytes without reading the file twice."""
    file = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"file not found: {file}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {file}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError("file is not valid UTF-8", span=Span(file, line, 1)) from None
    return parse_yaml(text, file), data
