"""Shared test helpers: run the real CLI in-process, build temporary projects."""

from __future__ import annotations

import io
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from odibi.cli.main import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(*argv: str) -> CliResult:
    """Run `odibi argv...` in this process, capturing what it prints."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return CliResult(code, out.getvalue(), err.getvalue())


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A fresh copy of examples/shop."""
    dest = tmp_path / "shop"
    shutil.copytree(EXAMPLES / "shop", dest, ignore=shutil.ignore_patterns(".odibi", "output",
                                                                           "__pycache__"))
    return dest


@pytest.fixture
def project(tmp_path: Path):
    """Write a project from {relative path: text} and return its root."""
    def make(files: dict[str, str]) -> Path:
        return write_files(tmp_path / "proj", files)
    return make


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite the expected output of golden tests from what odibi prints")
