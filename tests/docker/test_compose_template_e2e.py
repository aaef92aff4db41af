"""templates/compose on a real engine, before the service templates exist.

Renders the compose template, fills the project with stand-in Dockerfiles (a
tiny stub per service that answers the payload contract of
tests/test_compose.sh, and a megaservice stub that calls every service by its
DNS name from the compose environment), then runs the rendered
tests/test_compose.sh against the private engine. This proves the compose
file's wiring (healthchecks in slim images, depends_on healthy, DNS names,
HOST/PORT, ports on 127.0.0.1, an `image:` service) and the script itself.
Once the generators exist, tests here render whole projects the same way.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from engine import BASE_IMAGE

pytestmark = pytest.mark.docker

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "compose"
PUBLISHED_STUB_IMAGE = "opea-new-test/published-stub:1.0"

SERVICE_STUB = '''\
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    "embedding": {"text": "What is OPEA?", "embedding": [0.1, 0.2]},
    "retriever": {"retrieved_docs": [{"text": "OPEA is an open platform."}]},
    "rerank": {"query": "What is OPEA?", "documents": ["OPEA is an open platform."]},
    "llm": {"text": "OPEA is an open platform.", "prompt": "What is OPEA?"},
    "guardrail": {"text": "hello", "blocked": False},
}


class Handler(BaseHTTPRequestHandler):
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"status": "healthy", "kind": os.environ.get("KIND", "passthrough")})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = os.environ.get("KIND", "passthrough")
        self.reply(ANSWERS.get(kind) or {**request, "trace": [kind]})


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
'''

MEGASERVICE_STUB = '''\
import json
import os
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NODES = sorted(key[: -len("_SERVICE_HOST_IP")] for key in os.environ if key.endswith("_SERVICE_HOST_IP"))


def is_healthy(node):
    host, port = os.environ[node + "_SERVICE_HOST_IP"], os.environ[node + "_SERVICE_PORT"]
    with urllib.request.urlopen(f"http://{host}:{port}/v1/health_check", timeout=5) as answer:
        return json.loads(answer.read())["status"] == "healthy"


class Handler(BaseHTTPRequestHandler):
    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"status": "healthy"})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        reached = ",".join(node for node in NODES if is_healthy(node))
        self.reply({"choices": [{"message": {"role": "assistant", "content": "reached " + reached}}]})


address = (os.environ["MEGA_SERVICE_HOST"], int(os.environ["MEGA_SERVICE_PORT"]))
ThreadingHTTPServer(address, Handler).serve_forever()
'''


def stub_dockerfile(copy_from: str, kind: str | None = None) -> str:
    lines = [f"FROM {BASE_IMAGE}", *([f"ENV KIND={kind}"] if kind else []), f"COPY {copy_from} /app/stub.py",
             'CMD ["python", "/app/stub.py"]']
    return "\n".join(lines) + "\n"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def render_compose(destination: Path, answers: dict) -> Path:
    from copier import run_copy

    run_copy(str(TEMPLATE), destination, data=answers, defaults=True, quiet=True)
    return destination


def add_stand_in_services(project: Path, answers: dict) -> None:
    """What the microservice and megaservice templates will generate, reduced to stubs."""
    for service in answers["services"]:
        if service["image"]:
            continue
        folder = project / "services" / service["name"].replace("_", "-")
        folder.mkdir(parents=True)
        (folder / "stub.py").write_text(SERVICE_STUB)
        (folder / "Dockerfile").write_text(stub_dockerfile("stub.py", service["type"]))
    (project / "megaservice").mkdir()
    (project / "megaservice" / "stub.py").write_text(MEGASERVICE_STUB)
    (project / "megaservice" / "Dockerfile").write_text(stub_dockerfile("megaservice/stub.py"))


def build_published_stub(docker_engine, directory: Path) -> None:
    """An image already in the engine, standing in for a published OPEA image (no registry here)."""
    directory.mkdir()
    (directory / "stub.py").write_text(SERVICE_STUB)
    (directory / "Dockerfile").write_text(stub_dockerfile("stub.py", "llm"))
    docker_engine.docker("build", "--quiet", "--tag", PUBLISHED_STUB_IMAGE, str(directory), timeout=600)


def test_rendered_compose_and_its_test_script_pass_on_a_real_engine(docker_engine, compose_project, tmp_path):
    embedding, retriever, echo, llm, mega = free_ports(5)
    answers = {
        "name": "e2e_app",
        "runtime": "lite",
        "megaservice": {"port": mega, "endpoint": "/v1/e2e_app", "protocol": "chat"},
        "services": [
            {"name": "embedding", "type": "embedding", "port": embedding, "endpoint": "/v1/embeddings",
             "image": None},
            {"name": "retriever", "type": "retriever", "port": retriever, "endpoint": "/v1/retrieval",
             "image": None},
            {"name": "echo_service", "type": "undefined", "port": echo, "endpoint": "/v1/echo",
             "image": None},
            {"name": "llm", "type": "llm", "port": llm, "endpoint": "/v1/chat/completions",
             "image": PUBLISHED_STUB_IMAGE},
        ],
    }
    build_published_stub(docker_engine, tmp_path / "published")
    directory = render_compose(tmp_path / "project", answers)
    add_stand_in_services(directory, answers)
    project = compose_project(directory)

    script = subprocess.run(["bash", "tests/test_compose.sh"], cwd=directory,
                            env=project.script_environment(), capture_output=True, text=True, timeout=900)

    output = script.stdout + script.stderr
    assert script.returncode == 0, output
    assert "all services answered" in output
    for name in ("embedding", "retriever", "echo_service"):
        assert f"[ {name} ] OK" in output, output
    # the megaservice reached every node, the image service too, by the DNS names in its environment
    assert "reached ECHO_SERVICE,EMBEDDING,LLM,RETRIEVER" in output, output
    assert project.containers() == []  # the script brought everything down
