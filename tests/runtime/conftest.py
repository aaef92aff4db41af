"""The runtime tier: generated megaservices on both runtimes, as real processes on 127.0.0.1.

Projects are generated with the `opea-new` command; each runtime has one venv for
the whole run (`project_venvs`, shared with the other tiers), filled once by
`make install` of a project that has every stub family. Services and
megaservices run with those venvs' Python on free ports and are stopped by PID
(SIGTERM, then SIGKILL) whatever the test's outcome; their logs are attached to
a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import free_port, run_cli

RUNTIMES = ("comps", "lite")

# Every stub family, so one `make install` puts every service's requirements into the venv.
EVERY_FAMILY = {
    "name": "every-family",
    "services": [{"name": name, "type": name}
                 for name in ("embedding", "retriever", "rerank", "llm", "guardrail", "dataprep")]
    + [{"name": "echo", "type": "undefined"}],
}


@dataclass
class Server:
    """A service or megaservice process."""

    name: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"{self.name}: no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Processes:
    """Starts services and megaservices of generated projects; stops every one of them at the end."""

    def __init__(self, venvs: Path, log_dir: Path) -> None:
        self.venvs = venvs
        self.log_dir = log_dir
        self.servers: list[Server] = []

    def python(self, runtime: str) -> str:
        return str(self.venvs / runtime / "bin" / "python")

    def service(self, project: Path, name: str, *, port: int | None = None, runtime: str = "lite",
                wait: bool = True, **env: str) -> Server:
        """services/<name> of `project` (`python -m app`), from the venv of `runtime`."""
        port = port or free_port()
        folder = project / "services" / name.replace("_", "-")
        return self._start(f"{project.name}-{name}", [self.python(runtime), "-m", "app"], folder,
                           {"HOST": "127.0.0.1", "PORT": str(port), **env}, port, wait)

    def megaservice(self, project: Path, nodes: dict[str, int], *, wait: bool = True, **env: str) -> Server:
        """The project's megaservice on its runtime's venv, node N at 127.0.0.1:nodes[N]."""
        runtime = yaml.safe_load((project / ".copier-answers.yml").read_text())["runtime"]
        port = free_port()
        environment = {"MEGA_SERVICE_HOST": "127.0.0.1", "MEGA_SERVICE_PORT": str(port), **env}
        for name, node_port in nodes.items():
            prefix = name.replace("-", "_").upper()
            environment[f"{prefix}_SERVICE_HOST_IP"] = "127.0.0.1"
            environment[f"{prefix}_SERVICE_PORT"] = str(node_port)
        return self._start(f"{project.name}-megaservice", [self.python(runtime), "-m", "megaservice"], project,
                           environment, port, wait)

    def _start(self, name: str, command: list[str], cwd: Path, env: dict[str, str], port: int,
               wait: bool) -> Server:
        log = self.log_dir / f"{name}-{port}.log"
        environment = clean_environment(PYTHONUNBUFFERED="1", LOG_LEVEL="warning", **env)
        with log.open("wb") as output:
            process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=output, stderr=subprocess.STDOUT)
        server = Server(name, port, process, log)
        self.servers.append(server)
        if wait:
            self.wait_healthy(server)
        return server

    def wait_healthy(self, *servers: Server, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for server in servers:
            while True:
                if not server.alive():
                    raise AssertionError(f"{server.name} exited with {server.process.returncode}:\n"
                                         f"{server.log.read_text(errors='replace')[-3000:]}")
                try:
                    if httpx.get(f"{server.url}/v1/health_check", timeout=2, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{server.name} did not answer /v1/health_check in {timeout:.0f} s")
                time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"--- {server.name} (pid {server.pid}, port {server.port})\n"
                         f"{server.log.read_text(errors='replace')[-2000:]}" for server in self.servers)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            if server.alive():
                server.process.terminate()
        for server in self.servers:
            server.stop(signal.SIGKILL, timeout=20)
        self.servers.clear()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def runtime_venvs(project_venvs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<dir>/comps and <dir>/lite, each with the megaservice's and every stub family's requirements."""
    work = tmp_path_factory.mktemp("runtime-venvs")
    for runtime in RUNTIMES:
        project = generate({**EVERY_FAMILY, "runtime": runtime}, work / runtime)
        result = subprocess.run(["make", "install", f"VENV={project_venvs / runtime}"], cwd=project,
                                capture_output=True, text=True, timeout=900, env=clean_environment())
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project_venvs


@pytest.fixture(scope="session")
def projects(tmp_path_factory: pytest.TempPathFactory):
    """generate(spec, runtime) → the project, rendered once per session by `opea-new megaservice`."""
    work = tmp_path_factory.mktemp("runtime-projects")
    rendered: dict[tuple[str, str], Path] = {}

    def make(spec: dict[str, Any], runtime: str) -> Path:
        key = (json.dumps(spec, sort_keys=True), runtime)
        if key not in rendered:
            # a folder per spec: two tests' specs may share a name (chatqna) and differ in their services
            rendered[key] = generate({**spec, "runtime": runtime}, work / runtime / str(len(rendered)))
        return rendered[key]

    return make


@pytest.fixture
def processes(runtime_venvs: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    started = Processes(runtime_venvs, tmp_path)
    try:
        yield started
    finally:
        report = request.node.stash.get(FAILED, False)
        if report:
            print(started.logs())
        started.stop_all()


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


# ---------------------------------------------------------------- helpers


def generate(spec: dict[str, Any], parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    spec_file = parent / f"{spec['name']}.json"
    spec_file.write_text(json.dumps(spec))
    destination = parent / spec["name"]
    result = run_cli("megaservice", "--spec", spec_file, "--output", destination, cwd=parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return destination


def clean_environment(**extra: str) -> dict[str, str]:
    inherited = ("_SERVICE_PORT", "_SERVICE_HOST_IP")
    proxies = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
    environment = {key: value for key, value in os.environ.items()
                   if not key.endswith(inherited) and key not in {"VENV", "MAKEFLAGS", *proxies}
                   and not key.startswith("MEGA_SERVICE_")}
    return {**environment, **extra}
