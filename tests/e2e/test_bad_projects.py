"""The bad-input corpus: each tests/fixtures/bad/*.case is a broken project with the exact
error odibi must print (a golden). Every case must exit 2, print no traceback, name the
file and line (or the node), and write nothing into the project.

Case format: comment lines (`#`) say what the mistake is; then sections, each starting
with a line `--- NAME`: a project file (`--- odibi.yaml`, `--- pipelines/p.yaml`, ...),
`--- argv` (the command, default `validate`), `--- env` (NAME=VALUE lines), and
`--- expected` (the stderr, exactly). Regenerate with `pytest --update-goldens`. A unit-test
file is a project file like any other (`--- tests/test_x.yaml`, with `--- argv` `test`).
A command-line mistake (a case with `--- argv`) may be located by naming the argument it is
about (an option, a selector, a file) rather than a file:line or a node.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_cli

CASES = sorted((Path(__file__).parent.parent / "fixtures" / "bad").glob("*.case"))
_LOCATED = re.compile(r"^(\S+:\d+:\d+: error: |error: .*(node|check) '\w+'|error: .*\n.*\n\s*\^)",
                      re.M)


def parse_case(path: Path) -> tuple[str, dict[str, str]]:
    description: list[str] = []
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("--- "):
            current = sections.setdefault(line[4:].strip(), [])
        elif current is None:
            description.append(line.lstrip("# ").rstrip())
        else:
            current.append(line)
    return " ".join(description).strip(), {k: "".join(v) for k, v in sections.items()}


def names_an_argument(err: str, argv: list[str]) -> bool:
    """A command-line mistake is located by naming what it is about: its error line holds
    one of the command's arguments (an option, a selector, a file)."""
    line = next((x for x in err.splitlines() if "error: " in x), "")
    words = {w for arg in argv[1:] for w in arg.split("=") if w} | {argv[0]}
    return any(w in line.split("error: ", 1)[1] for w in words) if line else False


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_project(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     request: pytest.FixtureRequest) -> None:
    description, sections = parse_case(case)
    assert description, f"{case.name}: say what the mistake is in a comment"
    root = tmp_path / "p"
    root.mkdir()
    special = {"argv", "env", "expected"}
    for rel, text in sections.items():
        if rel not in special:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
    for line in sections.get("env", "").splitlines():
        if line.strip():
            key, _, value = line.partition("=")
            monkeypatch.setenv(key.strip(), value.strip())
    argv = sections.get("argv", "validate").split()
    before = snapshot(root)
    monkeypatch.chdir(root)
    result = run_cli(*argv)

    assert result.code == 2, result.text
    assert "Traceback" not in result.text
    assert snapshot(root) == before, "a failed command wrote into the project"
    assert _LOCATED.search(result.err) or ("argv" in sections and names_an_argument(
        result.err, argv)), f"message names no file:line, node or argument:\n{result.err}"
    if request.config.getoption("--update-goldens"):
        text = case.read_text()
        head = text.split("--- expected\n")[0].rstrip("\n") + "\n"
        case.write_text(head + "--- expected\n" + result.err)
        return
    assert "expected" in sections, f"{case.name}: no expected section (run --update-goldens)"
    assert result.err == sections["expected"]
