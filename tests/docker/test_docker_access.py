"""Issue 12's access-control proof in the real engine: API keys on a generated project, end to end.

The documents pipeline of test_docker_documents (embedding → retriever → llm,
dataprep beside the flow, the web UI, the nginx front door), lite runtime, with
`API_KEYS` in its `.env` as `.env.example` says, and compose.ports.yaml so each
service's own port is there too. Then, as a client on 127.0.0.1:

* every protected endpoint — the pipeline, OpenAI's routes, the statistics, the
  instances (`/v1/services`), dataprep's API — answers 401 (with a JSON body that
  says what is missing, and `WWW-Authenticate: Bearer`) without a key and with a
  wrong one, and 200 with the key: through the front door and on each service's
  own port;
* the health checks, nginx's /healthz and the UI's pages stay open;
* the key is in no file the project holds (but the `.env` the user wrote), in no
  image (every layer of every image the project built, `docker save`), in no
  container's log after all of the above, and in no answer.
"""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine import ComposeProject, Engine
from test_docker_documents import documents_spec, write_env
from test_docker_projects import generate

from tests.conftest import free_ports

pytestmark = pytest.mark.docker

KEY = secrets.token_urlsafe(32)
WRONG = secrets.token_urlsafe(32)
QUESTION = {"messages": [{"role": "user", "content": "What is OPEA?"}], "stream": False}


@dataclass
class Keyed:
    spec: dict[str, Any]
    directory: Path
    compose: ComposeProject
    nginx_port: int
    answers: list[str]  # the body of every answer the tests read, searched for the key at the end

    def port(self, service: str) -> int:
        if service == "megaservice":
            return self.spec["megaservice"]["port"]
        if service == "ui":
            return self.spec["megaservice"]["ui_port"]
        return next(entry["port"] for entry in self.spec["services"] if entry["name"] == service)

    def send(self, method: str, url: str, key: str | None, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(timeout=60, trust_env=False) as client:  # 127.0.0.1 only, never through a proxy
            answer = client.request(method, url, headers=headers, json=body)
        self.answers.append(answer.text)
        return answer


@pytest.fixture(scope="module")
def keyed(docker_engine: Engine, tmp_path_factory) -> Iterator[Keyed]:
    spec = documents_spec("keyed")
    directory = generate(spec, tmp_path_factory.mktemp("keyed"), "lite")
    assert "\nAPI_KEYS=\n" in (directory / ".env.example").read_text()
    nginx_port = free_ports(1)[0]
    write_env(directory, {"API_KEYS": KEY, "NGINX_PORT": str(nginx_port),
                          "COMPOSE_FILE": "compose.yaml:compose.ports.yaml"})
    project = Keyed(spec, directory, ComposeProject(docker_engine, directory, "t-keyed"), nginx_port, [])
    try:
        project.compose.up(wait_timeout=300, build=True)
        yield project
    finally:
        project.compose.down()


def protected(keyed: Keyed) -> list[tuple[str, str, Any]]:
    """(method, url, body) of every endpoint that needs the key: through the front door and directly."""
    front = f"http://127.0.0.1:{keyed.nginx_port}"
    mega = f"http://127.0.0.1:{keyed.port('megaservice')}"
    dataprep = f"http://127.0.0.1:{keyed.port('dataprep')}"
    endpoint = keyed.spec["megaservice"]["endpoint"]
    return [
        ("POST", f"{front}{endpoint}", QUESTION),
        ("POST", f"{front}/v1/chat/completions", QUESTION),
        ("GET", f"{front}/v1/models", None),
        ("POST", f"{front}/v1/dataprep/get", None),
        ("GET", f"{front}/v1/statistics", None),  # the UI's proxy to the megaservice
        ("GET", f"{front}/v1/services", None),
        ("POST", f"{mega}{endpoint}", QUESTION),
        ("POST", f"{mega}/v1/chat/completions", QUESTION),
        ("GET", f"{mega}/v1/statistics", None),
        ("GET", f"{mega}/v1/services", None),
        ("GET", f"{mega}/metrics", None),
        ("POST", f"{dataprep}/v1/dataprep/get", None),
    ]


def test_every_protected_endpoint_refuses_without_the_key_and_answers_with_it(keyed: Keyed):
    for method, url, body in protected(keyed):
        for key, why in ((None, "no key"), (WRONG, "a wrong key")):
            refused = keyed.send(method, url, key, body)
            assert refused.status_code == 401, (url, why, refused.status_code, refused.text)
            assert refused.headers.get("www-authenticate", "").lower().startswith("bearer"), (url, refused.headers)
            error = json.dumps(refused.json()).lower()  # a JSON body that says what is wrong
            assert "key" in error or "authorization" in error, (url, refused.text)
        answered = keyed.send(method, url, KEY, body)
        assert answered.status_code == 200, (url, answered.status_code, answered.text)
    chat = keyed.send("POST", f"http://127.0.0.1:{keyed.nginx_port}{keyed.spec['megaservice']['endpoint']}", KEY,
                      QUESTION)
    assert chat.json()["choices"][0]["message"]["content"], chat.text


def test_health_and_the_ui_pages_stay_open(keyed: Keyed):
    front = f"http://127.0.0.1:{keyed.nginx_port}"
    assert keyed.send("GET", f"{front}/healthz", None).text == "ok\n"
    for page in ("/", "/chat", "/documents", "/statistics"):
        answer = keyed.send("GET", f"{front}{page}", None)
        assert answer.status_code == 200, (page, answer.text)
        assert answer.headers["content-type"].startswith("text/html"), page
    health = {"megaservice": ("/v1/health_check", "/v1/health", "/v1/health/ready"), "ui": ("/v1/health",),
              "dataprep": ("/v1/health_check",), "llm": ("/v1/health_check",)}
    for service, paths in health.items():
        for path in paths:
            answer = keyed.send("GET", f"http://127.0.0.1:{keyed.port(service)}{path}", None)
            assert answer.status_code == 200, (service, path, answer.text)


def project_images(keyed: Keyed) -> list[str]:
    output = keyed.compose.compose("config", "--images", timeout=60).stdout.split()
    return sorted({image for image in output if image.startswith("keyed/")})


def files_holding(archive: tarfile.TarFile, needle: bytes, seen: set[str]) -> Iterator[str]:
    """Names of the files of a `docker save` archive, and of the files inside its layers, that hold `needle`."""
    for member in archive:
        if not member.isfile() or member.name in seen:  # layers the images share are searched once
            continue
        seen.add(member.name)
        content = archive.extractfile(member).read()
        if needle in content:
            yield member.name
        try:
            with tarfile.open(fileobj=io.BytesIO(content), mode="r:*") as layer:
                for entry in layer:
                    if entry.isfile() and needle in layer.extractfile(entry).read():
                        yield f"{member.name}: {entry.name}"
        except tarfile.ReadError:  # a config or manifest blob, not a layer: searched above
            pass


def test_the_key_is_in_no_file_image_log_or_answer(keyed: Keyed, tmp_path):
    # the requests of the other tests (refused and answered) happened first; these make sure, if run alone
    for method, url, body in protected(keyed)[:3]:
        keyed.send(method, url, None, body)
        keyed.send(method, url, KEY, body)
    key = KEY.encode()

    holding = [str(path.relative_to(keyed.directory)) for path in keyed.directory.rglob("*")
               if path.is_file() and path.name != ".env" and key in path.read_bytes()]
    assert holding == [], f"the key is in {holding}"

    images = project_images(keyed)
    assert len(images) == 5, images  # the megaservice's (the UI runs on it too) and each service's
    seen: set[str] = set()
    for image in images:
        saved = tmp_path / "image.tar"
        keyed.compose.engine.docker("image", "save", "--output", str(saved), image, timeout=300)
        with tarfile.open(saved) as archive:
            assert list(files_holding(archive, key, seen)) == [], f"the key is in {image}"
        saved.unlink()

    logs = keyed.compose.compose("logs", "--no-color", timeout=120).stdout
    assert '" 401' in logs, "the refused requests are not in the logs searched"  # uvicorn's access log
    assert KEY not in logs, "the key is in a container's log"
    assert not [text for text in keyed.answers if KEY in text], "the key is in an answer"


def test_the_projects_own_compose_check_sends_the_key(keyed: Keyed):
    """tests/test_compose.sh reads API_KEYS from .env, as compose does, and sends the first key: it passes on a
    keyed project (it starts the project again on the same ports and brings it down at the end)."""
    keyed.compose.down()
    result = subprocess.run(["bash", "tests/test_compose.sh"], cwd=keyed.directory, capture_output=True, text=True,
                            env=keyed.compose.script_environment(), timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "all services answered" in output, output[-3000:]
    assert KEY not in output
    assert keyed.compose.containers() == []
