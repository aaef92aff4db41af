"""The runtime library's own tests (runtime/tests), run on each runtime in the venv a generated project installs.

The venvs are the runtime tier's: `make install` of a generated project (the runtime's wheel from vendor/,
opea-comps 1.5 for comps), plus pytest from its requirements-dev.txt and hypothesis — the library is tested
as projects get it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.runtime.conftest import RUNTIMES, clean_environment

LIBRARY_TESTS = Path(__file__).resolve().parents[2] / "runtime" / "tests"

pytestmark = pytest.mark.slow

# every pin a generated service may install (a dataprep service installs them all), read from its template
REQUIREMENTS = Path(__file__).resolve().parents[2] / "templates" / "microservice" / "requirements.txt.jinja"
DOCUMENT_PINS = tuple(line for line in REQUIREMENTS.read_text().splitlines()
                      if "==" in line and not line.startswith(("#", "{", "opea-new-runtime")))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_library_suite_passes_on(runtime, runtime_venvs, tmp_path):
    python = runtime_venvs / runtime / "bin" / "python"
    installed = subprocess.run([str(python), "-c", "import opea_new_runtime; print(opea_new_runtime.__file__)"],
                               capture_output=True, text=True, check=True).stdout
    assert "site-packages" in installed  # the wheel, not a checkout
    # The suite's property tests need hypothesis, which projects themselves do not install; its OpenAI front-door
    # tests need the SDK (a project's requirements-dev.txt pins the same one); its document and store tests need
    # what a dataprep service pins (requirements.txt) and pgserver, a real PostgreSQL with pgvector; its control
    # tests need the docker SDK (requirements-dev.txt's pin).
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "hypothesis",
                    "openai==1.109.1", "docker==7.2.0", *DOCUMENT_PINS, "pgserver==0.1.4"],
                   capture_output=True, check=True, timeout=300)
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(LIBRARY_TESTS),
         "-c", "/dev/null", str(LIBRARY_TESTS)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=clean_environment(OPEA_NEW_RUNTIME=runtime),
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
