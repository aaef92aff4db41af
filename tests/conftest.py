"""Test-wide isolation: a private HOME (template bundles, git config) and helpers to run the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_SPECS = REPO.parent / "shared" / "specs"
TEST_SPECS = REPO / "tests" / "specs"


def pytest_configure(config: pytest.Config) -> None:
    # opea-new keeps template bundles in ~/.cache/opea-new: give the whole run its own HOME so
    # tests never touch the developer's cache, and a git identity a fresh CI machine lacks.
    real_home = Path.home()
    home = Path(os.environ.get("OPEA_NEW_TEST_HOME") or _fresh_dir("opea-new-test-home"))
    os.environ.setdefault("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))
    os.environ["HOME"] = str(home)
    os.environ.setdefault("GIT_AUTHOR_NAME", "opea-new tests")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "tests@opea-new.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "opea-new tests")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "tests@opea-new.invalid")
    os.environ.pop("OPEA_NEW_TEMPLATES_DIR", None)
    os.environ.pop("OPEA_NEW_TEMPLATE_VERSION", None)


def _fresh_dir(prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=f"{prefix}-")


def opea_new_command() -> list[str]:
    """The installed console script when there is one (what users run), else the module."""
    script = Path(sys.executable).parent / "opea-new"
    if script.exists():
        return [str(script)]
    found = shutil.which("opea-new")
    return [found] if found else [sys.executable, "-m", "opea_new"]


def run_cli(*args: str | os.PathLike, cwd: Path | None = None, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*opea_new_command(), *map(str, args)],
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def project_venvs(tmp_path_factory) -> Path:
    """Venvs of generated projects for the whole run, one per runtime: `make install VENV=<this>/<runtime>`.

    Every tier that installs projects shares them: opea-comps alone takes ~80 s to install.
    """
    return tmp_path_factory.mktemp("project-venvs")
