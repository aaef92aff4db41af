"""The repository's own Python passes its lint configuration (pyproject.toml [tool.ruff])."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import tool

REPO = Path(__file__).resolve().parents[2]


def test_ruff_passes_on_the_generator_tests_and_benchmarks():
    result = subprocess.run([tool("ruff"), "check", "--no-cache", "generator", "tests", "benchmarks"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
