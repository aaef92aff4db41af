"""Hostile requests (issue 9): every stub family and a megaservice answer 4xx to bad input, never 5xx, and go on.

Both tests run in a venv of their own (`hostile_venv`: the runtime from runtime/, the pins generated
projects use, pytest, hypothesis and schemathesis; created once per session, bounded by a timeout):

* the library's hostile-request tests (runtime/tests/test_hostile_requests.py) with hypothesis: a table
  of 18 bodies and HYPOTHESIS_EXAMPLES generated ones per family and megaservice;
* schemathesis (runtime/tests/conformance.py) against the real processes of a project with every stub
  family (`processes`, the runtime tier's lite venv) and its megaservice: CONFORMANCE_EXAMPLES examples
  per operation, every response check (no server errors, documented status codes, content types and
  schemas, schema-valid data accepted, schema-invalid data refused).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.conftest import EVERY_FAMILY, clean_environment

pytestmark = pytest.mark.slow

LIBRARY = Path(__file__).resolve().parents[2] / "runtime"
PINS = ["fastapi==0.124.0", "pydantic==2.11.7", "pydantic-settings==2.10.1", "uvicorn==0.35.0", "starlette==0.49.1",
        "anyio==4.10.0", "prometheus-client==0.22.1", "httpx==0.28.1", "aiohttp==3.12.15", "httptools==0.6.4"]
TOOLS = ["pytest==8.4.2", "hypothesis", "schemathesis"]
HYPOTHESIS_EXAMPLES = 60
CONFORMANCE_EXAMPLES = 40


@pytest.fixture(scope="session")
def hostile_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("hostile") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", str(LIBRARY), *PINS, *TOOLS],
                            capture_output=True, text=True, timeout=900, env=clean_environment())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    installed = {line.lower().replace("_", "-") for line in freeze.splitlines()}  # pip freeze spells some with _
    moved = [pin for pin in PINS if pin.lower() not in installed]
    assert not moved, f"schemathesis moved {moved}:\n{freeze}"
    return python


def run_pytest(python: Path, target: str, cwd: Path, timeout: float, **env: str) -> str:
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(LIBRARY / "tests"),
         "-c", "/dev/null", str(LIBRARY / "tests" / target)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean_environment(OPEA_NEW_RUNTIME="lite", **env),
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
    return summary


def test_hostile_bodies_are_refused_by_every_family_and_the_megaservice(hostile_venv, tmp_path):
    run_pytest(hostile_venv, "test_hostile_requests.py", tmp_path, 600, HYPOTHESIS_EXAMPLES=str(HYPOTHESIS_EXAMPLES))


def test_schemathesis_finds_every_family_and_the_megaservice_true_to_their_schemas(
        hostile_venv, projects, processes, tmp_path):
    project = projects(EVERY_FAMILY, "lite")
    services = {service["name"]: processes.service(project, service["name"]) for service in EVERY_FAMILY["services"]}
    megaservice = processes.megaservice(project, {name: server.port for name, server in services.items()})
    targets = {name: server.url for name, server in services.items()} | {"megaservice": megaservice.url}
    summary = run_pytest(hostile_venv, "conformance.py", tmp_path, 900, CONFORMANCE_TARGETS=json.dumps(targets),
                         CONFORMANCE_EXAMPLES=str(CONFORMANCE_EXAMPLES), CONFORMANCE_TMP=str(tmp_path))
    assert all(server.alive() for server in processes.servers), processes.logs()
    print(summary)
