"""Test-wide isolation: a private HOME (template bundles, git config) and helpers to run the CLI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------- helpers shared by the tiers


def free_ports(count: int) -> list[int]:
    """`count` different ports of 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def free_port() -> int:
    return free_ports(1)[0]


def tool(name: str) -> str:
    """A command installed beside this Python (the test venv), else on PATH; skips, saying why, when missing."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} not found beside {sys.executable} or on PATH (pip install {name})")
    return found


def copier_render(template: Path, data: dict[str, Any], destination: Path, **kwargs: Any) -> Path:
    """One template rendered with copier itself (not through opea-new), as the template tests need."""
    from copier import run_copy

    run_copy(str(template), destination, data=data, defaults=True, quiet=True, **kwargs)
    return destination


def files_of(root: Path) -> dict[str, str]:
    """Every file under `root` by its POSIX path relative to it, with its text."""
    return {path.relative_to(root).as_posix(): path.read_text() for path in sorted(root.rglob("*"))
            if path.is_file()}
