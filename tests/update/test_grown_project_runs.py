"""Acceptance: a service added into the middle of a DAG really serves — `make test` passes, `make run`
answers, and a request flows through the new node instead of the edge it replaced."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from tests.update.helpers import commit_all

pytestmark = pytest.mark.slow


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def make(project: Path, target: str, venv: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", target, f"VENV={venv}"], cwd=project, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with closing(opener.open(request, timeout=30)) as response:
        return json.loads(response.read())


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run exited with {process.returncode}")
        try:
            with closing(opener.open(url, timeout=2)):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.mark.parametrize("runtime", ["lite", "comps"])
def test_a_service_added_into_a_dag_serves_and_is_on_the_request_path(tier, tmp_path, runtime):
    mega, *ports = free_ports(6)
    spec = f"""\
name: grown
runtime: {runtime}
megaservice: {{port: {mega}, protocol: raw}}
services:
  - {{name: source, type: undefined, port: {ports[0]}}}
  - {{name: left, type: undefined, port: {ports[1]}}}
  - {{name: right, type: undefined, port: {ports[2]}}}
  - {{name: sink, type: undefined, port: {ports[3]}}}
flow:
  - {{service: source, next: [left, right]}}
  - {{service: left, next: [sink]}}
"""
    project = tier.generate(spec, tmp_path / "grown")
    added = tier.cli("add-service", "audit", "--type", "undefined", "--port", str(ports[4]), "--after", "source",
                     "--before", "left", "--project", project)
    assert added.returncode == 0, added.stdout + added.stderr
    commit_all(project, "add audit")
    venv = tmp_path / "venv"

    install = make(project, "install", venv, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    tests = make(project, "test", venv, timeout=600)
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-3000:]
    assert "services/audit/" in tests.stdout

    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(["make", "run", f"VENV={venv}"], cwd=project, stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True,
                           env={**os.environ, "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"})
    try:
        wait_healthy(f"http://127.0.0.1:{mega}/health", run, timeout=180)
        answer = post(f"http://127.0.0.1:{mega}/v1/grown", {"text": "hello"})
    finally:
        os.killpg(run.pid, signal.SIGTERM)  # make and its children: the group this test started
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        log.close()

    assert answer["sink"]["trace"] == ["source", "audit", "left", "sink"], answer
    assert answer["right"]["trace"] == ["source", "right"], answer
