"""The swap-in tier reuses the runtime tier's venvs, projects and process handling."""

from tests.runtime.conftest import processes, projects, pytest_runtest_makereport, runtime_venvs  # noqa: F401
