"""Generate realistic benchmark projects: layered DAGs of small SQL nodes.

One generated source table (`src`, read from a csv) feeds layers of `width` SQL nodes;
each node reads 1-3 nodes of the layer above with a filter, an aggregate or a join, so
data stays small and every statement is cheap, as in the incumbents' benchmarks.

The pipeline is kept as a neutral list of `GenNode`s so the same logical pipeline can be
written for odibi (here) and, for comparisons, for other tools.

    python bench/generate.py 1000 /tmp/p1000
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GenNode:
    name: str
    layer: int
    inputs: tuple[str, ...]
    sql: str  # references inputs by bare name


def _sql(inputs: tuple[str, ...], rng: random.Random) -> str:
    a = inputs[0]
    if len(inputs) == 1:
        if rng.random() < 0.5:
            return f"SELECT id, k, v FROM {a} WHERE v > {rng.randint(0, 40)}"
        return f"SELECT min(id) AS id, k, sum(v) % 100003 AS v FROM {a} GROUP BY k"
    # sums modulo a prime: values stay in range however deep the DAG
    joins = " ".join(f"LEFT JOIN {x} AS t{i} USING (id)" for i, x in enumerate(inputs[1:], 1))
    total = " + ".join(f"coalesce(t{i}.v, 0)" for i in range(1, len(inputs)))
    return f"SELECT t0.id, t0.k, (t0.v + {total}) % 100003 AS v FROM {a} AS t0 {joins}"


def generate(n: int, width: int = 50, seed: int = 0) -> list[GenNode]:
    """`n` SQL nodes in layers of `width` (plus the source read node, not counted)."""
    rng = random.Random(seed)
    nodes: list[GenNode] = []
    previous = ["src"]
    layer = 0
    while len(nodes) < n:
        layer += 1
        current: list[str] = []
        for j in range(min(width, n - len(nodes))):
            name = f"n{layer:03d}_{j:02d}"
            k = min(len(previous), rng.choice((1, 1, 2, 2, 3)))
            inputs = tuple(rng.sample(previous, k))
            nodes.append(GenNode(name, layer, inputs, _sql(inputs, rng)))
            current.append(name)
        previous = current
    return nodes


def source_csv(rows: int = 1000, seed: int = 0) -> str:
    rng = random.Random(seed)
    lines = ["id,k,v"]
    lines += [f"{i},{rng.randint(0, 49)},{rng.randint(0, 100)}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def write_odibi(nodes: list[GenNode], dest: Path, rows: int = 1000,
                layers_per_file: int = 10) -> Path:
    """Write an odibi project: odibi.yaml, data/src.csv, pipelines/layers_NNN.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "data").mkdir(exist_ok=True)
    (dest / "pipelines").mkdir(exist_ok=True)
    (dest / "data" / "src.csv").write_text(source_csv(rows))
    (dest / "odibi.yaml").write_text(
        "project: bench\n"
        "connections:\n  raw: {type: local, base_path: data}\n"
        "vars:\n  threshold: 10\n"
        "pipelines: [pipelines/*.yaml]\n"
        "nodes:\n"
        "  - name: src\n"
        "    read: {connection: raw, path: src.csv, format: csv}\n"
    )
    by_file: dict[int, list[GenNode]] = {}
    for node in nodes:
        by_file.setdefault((node.layer - 1) // layers_per_file, []).append(node)
    for index, group in sorted(by_file.items()):
        lines = [f"pipeline: layers_{index:03d}", "nodes:"]
        for node in group:
            lines.append(f"  - name: {node.name}")
            lines.append(f"    tags: [layer{node.layer}]")
            lines.append("    sql: |")
            lines.append(f"      {node.sql}")
        (dest / "pipelines" / f"layers_{index:03d}.yaml").write_text("\n".join(lines) + "\n")
    return dest


def closure_sizes(nodes: list[GenNode]) -> dict[str, int]:
    """Size of each node's downstream closure (itself included)."""
    children: dict[str, list[str]] = {}
    for n in nodes:
        for i in n.inputs:
            children.setdefault(i, []).append(n.name)
    below: dict[str, set[str]] = {}
    for n in reversed(nodes):
        mine = {n.name}
        for c in children.get(n.name, []):
            mine |= below[c]
        below[n.name] = mine
    return {k: len(v) for k, v in below.items()}


def edit_target(nodes: list[GenNode], near: int = 241) -> tuple[GenNode, int, str, str]:
    """What the edit benchmarks change: the filter node (`... WHERE v > C`) whose downstream
    closure is nearest `near` nodes, that closure's size, its filter `WHERE v > C` and the
    edited filter. The edit keeps about half the rows (a new threshold would often keep
    them all: values grow layer by layer), so the output changes and the closure runs."""
    sizes = closure_sizes(nodes)
    filters = [x for x in nodes if re.search(r" WHERE v > \d+\Z", x.sql)]
    node = min(filters, key=lambda x: abs(sizes[x.name] - near))
    where = re.search(r"WHERE v > \d+\Z", node.sql).group(0)  # type: ignore[union-attr]
    return node, sizes[node.name], where, f"{where} AND id % 2 = 0"


def set_sql(proj: Path, node: GenNode, old: str, new: str) -> None:
    """In an odibi project written by `write_odibi`, replace `old` by `new` in `node`'s SQL."""
    for f in (proj / "pipelines").glob("*.yaml"):
        text = f.read_text()
        needle = f"- name: {node.name}\n"
        if needle in text:
            head, tail = text.split(needle, 1)
            f.write_text(head + needle + tail.replace(old, new, 1))
            return
    raise SystemExit(f"{node.name} not found")


if __name__ == "__main__":
    count = int(sys.argv[1])
    out = Path(sys.argv[2])
    write_odibi(generate(count), out)
    print(f"wrote {count} nodes to {out}")
