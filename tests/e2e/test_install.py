"""`pip install .` (not editable) gives a working `odibi` whose grammar files are found.

Builds a wheel from a copy of the source, installs it into a fresh virtualenv (its
dependencies borrowed from this environment through a .pth file, so nothing is
downloaded), and runs the installed console script from outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.slow


def _run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_installed_wheel_runs_with_its_grammar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("odibi", "grammar"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "-q", "-w", wheels, src, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("odibi-*.whl"))

    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=tmp_path).stdout.strip())
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                     "--no-index", "--ignore-installed", "-q", wheel, cwd=tmp_path)
    if installed.returncode != 0 and "--python" in installed.stderr:  # pip < 22.3
        installed = _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                         "--ignore-installed", "-q", "--prefix", venv, wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    # dependencies come from this environment, after the venv's own site-packages (written
    # only now: pip must not see this environment's odibi and skip the install)
    (site / "zz_outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = _run(python, "-c", "import odibi, importlib.resources as r; print(odibi.__file__); "
                 "print(r.files('odibi.grammar').joinpath('selector.lark').is_file())",
                 cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    module_file, grammar_found = where.stdout.split()
    assert Path(module_file).is_relative_to(venv), "odibi was not imported from the wheel"
    assert grammar_found == "True"

    project = tmp_path / "shop"
    shutil.copytree(EXAMPLES / "shop", project, ignore=shutil.ignore_patterns(".odibi", "output"))
    odibi = venv / "bin" / "odibi"
    ok = _run(odibi, "-C", project, "validate", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    listed = _run(odibi, "-C", project, "ls", "+customer_segments,tag:daily", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["customer_orders", "customer_segments"]
    bad = _run(odibi, "-C", project, "ls", "a,,b", cwd=tmp_path)
    assert bad.returncode == 2 and "^" in bad.stderr and "Traceback" not in bad.stderr
    created = _run(odibi, "init", tmp_path / "fresh", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert _run(odibi, "-C", tmp_path / "fresh", "validate", cwd=tmp_path).returncode == 0
    # odibi.testing is in the wheel, and so is the scaffold's passing test
    tested = _run(odibi, "-C", tmp_path / "fresh", "test", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "4 passed, 0 failed" in tested.stdout
