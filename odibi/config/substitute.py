"""`${vars.X}` and `${env:X}` substitution, and `--var NAME=VALUE` overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odibi.config.fields import File
from odibi.config.model import Piece, Scalar
from odibi.config.ytree import YMap, YSeq
from odibi.errors import ConfigError, Span, TextOrigin, UsageError, did_you_mean
from odibi.ids import NAME_RE

_SUB_RE = re.compile(r"\$(\$?)\{([^}]*)\}")
_VAR_RE = re.compile(r"\s*vars\.([A-Za-z_][A-Za-z0-9_]*)\s*\Z")
_ENV_RE = re.compile(r"\s*env:([A-Za-z_][A-Za-z0-9_]*)\s*\Z")


@dataclass(frozen=True, slots=True)
class VarOverride:
    """`--var NAME=VALUE` from the command line, with where NAME is in its text."""

    name: str
    value: Scalar
    span: Span


class Substituter:
    """Expands ``${vars.X}`` and ``${env:X}``; ``$${`` is a literal ``${``. Records which
    vars each rendering used (`used`), never storing environment values."""

    def __init__(self, variables: Mapping[str, Scalar], env: Mapping[str, str]) -> None:
        self.vars = variables
        self.env = env
        self.used: set[str] = set()
        self.env_used: set[str] = set()

    def render(self, template: str, origin: TextOrigin, what: str, *, track_env: bool = True,
               pieces: list[Piece] | None = None) -> str:
        """The rendered text. `pieces`, when given, receives each substitution as (start,
        end, length of its value): where the template and the rendered text differ, so a
        position in the rendered text can be found again in the template (`template_offset`)."""
        if "$" not in template:
            return template

        def replace(m: re.Match[str]) -> str:
            value = self._value(m, template, origin, what, track_env)
            if pieces is not None:
                pieces.append((m.start(), m.end(), len(value)))
            return value

        return _SUB_RE.sub(replace, template)

    def _value(self, m: re.Match[str], template: str, origin: TextOrigin, what: str,
               track_env: bool) -> str:
        """The text that replaces one ``${...}`` (or ``$${...}``) of `template`."""
        if m.group(1):  # $${...}: escaped
            return "${" + m.group(2) + "}"
        inner = m.group(2)
        span = origin.span_at(template, m.start(), m.end() - m.start())
        if vm := _VAR_RE.match(inner):
            name = vm.group(1)
            if name not in self.vars:
                raise ConfigError(f"{what}: undefined variable '{name}' in ${{{inner}}}",
                                  span=span, hint=did_you_mean(name, self.vars)
                                  or "define it under vars: in odibi.yaml")
            self.used.add(name)
            return _render_scalar(self.vars[name])
        if em := _ENV_RE.match(inner):
            name = em.group(1)
            if name not in self.env:
                raise ConfigError(f"{what}: environment variable {name} is not set "
                                  f"(${{{inner}}})", span=span)
            if track_env:
                self.env_used.add(name)
            return self.env[name]
        raise ConfigError(f"{what}: unknown substitution ${{{inner}}}", span=span,
                          hint="use ${vars.NAME} or ${env:NAME}; write $${ for a literal ${")

    def render_value(self, value: Any, f: File, m: YMap | YSeq, key: Any, what: str) -> Any:
        """Render every string inside an option value (scalars, lists, mappings)."""
        if isinstance(value, str):
            return self.render(value, f.origin(m, key), what)
        if isinstance(value, YMap):
            return {k: self.render_value(v, f, value, k, what) for k, v in value.items()}
        if isinstance(value, YSeq):
            return [self.render_value(v, f, value, i, what) for i, v in enumerate(value)]
        return value

    def take_used(self) -> frozenset[str]:
        used, self.used = frozenset(self.used), set()
        return used

    def take_env(self) -> Mapping[str, str]:
        """Digests of the environment variables used since the last call (never values)."""
        from odibi.hashing import digest_parts

        used = {n: digest_parts("env", n, self.env[n]) for n in sorted(self.env_used)}
        self.env_used = set()
        return used


def _render_scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_var_overrides(items: list[str]) -> list[VarOverride]:
    """`--var K=V` values; V is read as a YAML scalar (5 -> int, true -> bool)."""
    result: list[VarOverride] = []
    for item in items:
        text = f"--var {item}"
        key, sep, raw = item.partition("=")
        name = key.strip()
        lead = len(key) - len(key.lstrip())
        span = Span("<--var>", 1, 7 + lead, text=text, width=max(1, len(name)))
        if not sep or not NAME_RE.match(name):
            raise UsageError(f"--var expects NAME=VALUE, got '{item}'", span=span,
                             hint=f"e.g. --var {name or 'NAME'}=5")
        from odibi.config.yaml_load import parse_yaml

        try:
            value = parse_yaml(raw, "<--var>") if raw.strip() else raw
        except ConfigError:
            value = raw
        if not isinstance(value, (str, int, float, bool)):
            value = raw
        result.append(VarOverride(name, value, span))
    return result
