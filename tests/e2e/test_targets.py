"""Targets (README "Targets"): each has its own build state, lock and warehouse; a
target's connections override the project's; the default one is the first, and a project
without `targets:` behaves as before."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli, write_files

PROJECT = {
    "odibi.yaml": """
        project: t
        connections:
          raw: {type: local, base_path: data}
          out: {type: local, base_path: out}
        targets:
          dev: {engine: duckdb}
          ci:
            engine: duckdb
            connections: {out: {base_path: out_ci}}
        nodes:
          - name: raw_t
            read: {connection: raw, path: t.csv}
          - name: doubled
            sql: SELECT id, amount * 2 AS amount FROM raw_t
            write: {connection: out, path: doubled.csv}
        """,
    "data/t.csv": "id,amount\n1,10\n2,20\n",
}


def test_each_target_builds_into_its_own_state_lock_and_files(tmp_path: Path) -> None:
    root = write_files(tmp_path / "p", PROJECT)
    first = run_cli("-C", str(root), "build")
    assert first.code == 0, first.err
    assert (root / "out" / "doubled.csv").read_text().splitlines() == [
        "id,amount", "1,20", "2,40"]
    assert (root / ".odibi" / "warehouse.duckdb").exists()
    assert (root / "odibi.lock").exists() and not (root / "odibi.ci.lock").exists()
    assert not (root / "out_ci").exists()

    ci = run_cli("-C", str(root), "build", "--target", "ci")
    assert ci.code == 0, ci.err
    assert "2 built" in ci.err or "2 built" in ci.out  # its own state: nothing built yet
    assert (root / "out_ci" / "doubled.csv").read_text() == (root / "out" / "doubled.csv").read_text()
    assert (root / ".odibi" / "targets" / "ci" / "warehouse.duckdb").exists()
    assert (root / "odibi.ci.lock").read_text().replace('"ci"', "") != ""

    # each is up to date on its own; the default's name picks the default's state
    for argv in ((), ("--target", "ci"), ("--target", "dev")):
        again = run_cli("-C", str(root), "build", *argv)
        assert again.code == 0 and "nothing to do" in again.out + again.err, argv

    # an edit rebuilds on the target built, and the other still sees it as changed
    (root / "data" / "t.csv").write_text("id,amount\n1,10\n2,20\n3,30\n")
    assert run_cli("-C", str(root), "build", "--target", "ci").code == 0
    assert len((root / "out_ci" / "doubled.csv").read_text().splitlines()) == 4
    assert len((root / "out" / "doubled.csv").read_text().splitlines()) == 3
    dev = run_cli("-C", str(root), "explain", "doubled")
    assert "rebuild" in dev.out, dev.out
    ci_explained = run_cli("-C", str(root), "explain", "--target", "ci", "doubled")
    assert "up-to-date" in ci_explained.out, ci_explained.out


def test_a_project_without_targets_keeps_its_state_and_lock_where_they_were(
        tmp_path: Path) -> None:
    files = dict(PROJECT)
    files["odibi.yaml"] = files["odibi.yaml"].replace(
        "        targets:\n          dev: {engine: duckdb}\n          ci:\n"
        "            engine: duckdb\n            connections: {out: {base_path: out_ci}}\n", "")
    root = write_files(tmp_path / "p", files)
    assert "targets" not in (root / "odibi.yaml").read_text()
    assert run_cli("-C", str(root), "build").code == 0
    assert sorted(p.name for p in (root / ".odibi").iterdir()) == [
        "build.lock", "state.db", "warehouse.duckdb"]
    assert (root / "odibi.lock").exists()
    # adding targets (the first is the default) keeps that state: nothing rebuilds
    write_files(root, {"odibi.yaml": PROJECT["odibi.yaml"]})
    again = run_cli("-C", str(root), "build")
    assert again.code == 0 and "nothing to do" in again.out + again.err, again.out + again.err


def test_the_lock_of_a_target_is_deterministic(tmp_path: Path) -> None:
    locks = []
    for name in ("a", "b"):
        root = write_files(tmp_path / name, PROJECT)
        assert run_cli("-C", str(root), "build", "--target", "ci").code == 0
        locks.append((root / "odibi.ci.lock").read_bytes())
    assert locks[0] == locks[1]
    assert b"/tmp" not in locks[0] and str(tmp_path).encode() not in locks[0]
