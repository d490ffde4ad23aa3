"""Each node's and check's rules, parsed and compiled against what they may read.

- `validate:` on node X reads X's new output (bare names are its columns);
- `contracts:` on a read node read the data it read; on another node they read its
  inputs (bare names mean the only input, if there is exactly one);
- a check reads any node it names, and names them all (no defaults).

Mistakes are ConfigErrors at the rule's place in the YAML, with a caret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from odibi.config.model import Check, Node, Project, RuleText
from odibi.errors import ConfigError, ExprSyntaxError, Span
from odibi.expr.check import RuleError, RulePlan, Scope, compile_rules
from odibi.ids import NodeId, NodeKind
from odibi.pickling import compact_pickle


@compact_pickle
@dataclass(frozen=True, slots=True)
class NodeRules:
    contracts: RulePlan | None = None
    validate: RulePlan | None = None


def compile_check(check: Check, project: Project) -> RulePlan:
    names = {n.lower(): n for n in project.nodes}
    example = next(iter(project.nodes), "raw_orders")
    scope = Scope(names, None, defaults_hint=f"a check names the nodes it reads: "
                                             f"row_count({example}) or {example}.row_count",
                  unknown="a node")
    plan = _compile(f"check '{check.name}'", (check.rule,), scope, check.name)
    if not plan.datasets:
        raise ConfigError(f"check '{check.name}' names no dataset", span=check.rule.span,
                          node=check.name, hint=f"qualify measures with a node: "
                          f"row_count({example}) or {example}.row_count")
    return plan


def compile_node(node: Node, inputs: Iterable[NodeId]) -> NodeRules:
    contracts = validate = None
    if node.validate:
        scope = Scope({node.name.lower(): node.name}, node.name,
                      unknown=f"{node.name}'s output (validations read only the node's own "
                              "output)",
                      unknown_hint="to compare datasets, write a check (checks: in odibi.yaml "
                                   "or a pipeline file)")
        validate = _compile(f"node '{node.name}': validate", node.validate, scope, node.name)
    if node.contracts:
        if node.kind is NodeKind.READ:
            scope = Scope({node.name.lower(): node.name}, node.name)
        else:
            ins = list(inputs)
            default = ins[0] if len(ins) == 1 else None
            hint = (f"{node.name} reads {len(ins)} datasets ({', '.join(ins)}): name the "
                    f"one you mean, e.g. row_count({ins[0]}) or not_null({ins[0]}.id)"
                    if ins else f"{node.name} has no inputs")
            scope = Scope({i.lower(): i for i in ins}, default, defaults_hint=hint,
                          unknown=f"an input of {node.name}")
        contracts = _compile(f"node '{node.name}': contracts", node.contracts, scope,
                             node.name)
    return NodeRules(contracts, validate)


def _compile(what: str, rules: Iterable[RuleText], scope: Scope, owner: str) -> RulePlan:
    from odibi.expr.parse import parse_rule  # lark: only when rules must be parsed

    items = list(rules)
    parsed = []
    for rule in items:
        try:
            parsed.append((rule.text, parse_rule(rule.text)))
        except ExprSyntaxError as e:
            raise ConfigError(f"{what}: rule does not parse: {e.message}", node=owner,
                              span=_at(rule, e.col - 1, 1)) from None
    try:
        return compile_rules(parsed, scope)
    except RuleError as e:
        rule = items[getattr(e, "index", 0)]
        raise ConfigError(f"{what}: {e.message}", node=owner, hint=e.hint,
                          span=_at(rule, e.pos.start, max(1, e.pos.end - e.pos.start))) from None


def _at(rule: RuleText, offset: int, width: int) -> Span:
    if rule.origin is None:
        return rule.span
    return rule.origin.span_at(rule.text, offset, width)


def compile_all(project: Project, deps: Mapping[NodeId, tuple[NodeId, ...]]
                ) -> dict[NodeId, NodeRules]:
    return {name: compile_node(node, deps.get(name, ()))
            for name, node in project.nodes.items() if node.contracts or node.validate}
