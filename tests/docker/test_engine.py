"""The harness itself, proven on a tiny hand-written project.

One http.server service built FROM the stand-in python:3.11-slim (with a pip
install, so builds reach PyPI): build, `up --wait`, GET through the port
published on 127.0.0.1, `down -v`. And the failures `up --wait` must report
clearly: a service whose command dies, and a service whose healthcheck fails.
"""

from __future__ import annotations

import json
import socket
import textwrap
import urllib.request
from pathlib import Path

import pytest
from engine import BASE_IMAGE, EngineError

pytestmark = pytest.mark.docker

SERVER = '''\
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        answers = {
            "/v1/health_check": {"status": "healthy"},
            "/hello": {"hello": os.environ["GREETING"]},
        }
        if self.path not in answers:
            self.send_error(404)
            return
        body = json.dumps(answers[self.path]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
'''

DOCKERFILE = f'''\
FROM {BASE_IMAGE}
# A real download from PyPI: builds must get through this machine's proxy.
RUN pip install --no-cache-dir --quiet idna==3.10
COPY server.py /app/server.py
CMD ["python", "/app/server.py"]
'''

# The probe the generated compose files use: no curl in slim images, no proxy for 127.0.0.1.
HEALTH_PROBE = ("import sys, urllib.request as r; "
                "r.build_opener(r.ProxyHandler({})).open(sys.argv[1], timeout=3)")


def compose_file(published_port: int, *, command: list[str] | None = None,
                 health_path: str = "/v1/health_check", restart: str | None = None) -> str:
    service = {
        "build": {"context": "./hello"},
        "image": "opea-new-test/hello:latest",
        "environment": {"HOST": "0.0.0.0", "PORT": "8000", "GREETING": "opea"},
        "ports": [f"127.0.0.1:{published_port}:8000"],
        "healthcheck": {
            "test": ["CMD", "python", "-c", HEALTH_PROBE, f"http://127.0.0.1:8000{health_path}"],
            "interval": "1s",
            "timeout": "3s",
            "retries": 3,
            "start_period": "5s",
        },
    }
    if command:
        service["command"] = command
    if restart:
        service["restart"] = restart
    return json.dumps({"services": {"hello": service}}, indent=2)  # JSON is YAML


def write_project(directory: Path, published_port: int, **variant) -> Path:
    (directory / "hello").mkdir(parents=True)
    (directory / "hello" / "server.py").write_text(SERVER)
    (directory / "hello" / "Dockerfile").write_text(DOCKERFILE)
    (directory / "compose.yaml").write_text(compose_file(published_port, **variant))
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return json.loads(response.read())


def test_engine_answers_and_has_the_base_image(docker_engine):
    assert docker_engine.docker_host == f"unix://{docker_engine.work_dir}/docker.sock"
    inspected = json.loads(docker_engine.docker("image", "inspect", BASE_IMAGE).stdout)[0]
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in inspected["Config"]["Env"]
    version = docker_engine.docker("run", "--rm", BASE_IMAGE, "python", "--version").stdout
    assert version.startswith("Python 3.11")


def test_build_up_get_down(compose_project, tmp_path):
    port = free_port()
    project = compose_project(write_project(tmp_path / "ok", port))
    project.build()
    project.up(wait_timeout=60)

    assert get_json(f"http://127.0.0.1:{port}/hello") == {"hello": "opea"}
    health = json.loads(project.compose("ps", "--format", "json").stdout.splitlines()[0])["Health"]
    assert health == "healthy"

    project.down()
    assert project.containers() == []


# Without a restart policy compose sees the container exit; with one (the generated
# compose files use `unless-stopped`) it sees it restarting and calls it unhealthy.
@pytest.mark.parametrize(("restart", "verdict"), [(None, "exited (1)"), ("unless-stopped", "is unhealthy")])
def test_a_broken_command_makes_up_wait_fail(compose_project, tmp_path, restart, verdict):
    command = ["python", "-c", "raise SystemExit('boom: no such model')"]
    directory = write_project(tmp_path / "broken", free_port(), command=command, restart=restart)
    project = compose_project(directory)
    project.build()

    with pytest.raises(EngineError) as failure:
        project.up(wait_timeout=60)

    message = str(failure.value)
    assert f"container {project.name}-hello-1 {verdict}" in message, message
    assert "boom: no such model" in message, message  # the logs come with the failure


def test_a_failing_healthcheck_makes_up_wait_fail(compose_project, tmp_path):
    project = compose_project(write_project(tmp_path / "unhealthy", free_port(), health_path="/v1/missing"))
    project.build()

    with pytest.raises(EngineError) as failure:
        project.up(wait_timeout=60)

    message = str(failure.value)
    assert f"container {project.name}-hello-1 is unhealthy" in message, message


def test_failures_name_the_command_and_carry_its_output(docker_engine, tmp_path):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        services:
          bad:
            image: python:3.11-slim
            ports: ["not-a-port"]
        """))
    with pytest.raises(EngineError) as failure:
        docker_engine.compose(tmp_path, "config", "-q")
    message = str(failure.value)
    assert "config -q` failed with exit code" in message
    assert "not-a-port" in message
