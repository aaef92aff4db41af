"""The whole project in Docker, checked through the docker Python SDK.

What tests/test_compose.sh does, as pytest tests: `docker compose up --build
--wait`, then every container's health as the engine reports it, one request
to each generated microservice and to the megaservice, requests through the
front door (nginx, 127.0.0.1:NGINX_PORT) to the pipeline and to its web UI
(when it has one),
the container's logs with any failure, and `docker compose down -v` at the end
whatever happened. Like tests/test_compose.sh it adds compose.ports.yaml (every
service on its own 127.0.0.1 port) unless COMPOSE_FILE, in the environment or in
.env, says otherwise; a service that is not published is called from inside its
own container. With API_KEYS set (environment or .env), requests carry the first key.

    python -m pytest -m docker tests/test_docker.py

`make test` leaves these out (pyproject.toml: -m "not docker"). They need a
reachable Docker engine (DOCKER_HOST or the default socket) and Docker Compose
v2 (`docker compose`, or COMPOSE="docker-compose"), and skip saying why
otherwise. The compose project is COMPOSE_PROJECT_NAME when set, else the one
compose.yaml names; WAIT_TIMEOUT and REQUEST_TIMEOUT are in seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from megaservice.pipeline import MEGASERVICE, build_orchestrator

PIPELINE = build_orchestrator()

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
WAIT_TIMEOUT = int(os.environ.get("WAIT_TIMEOUT", 300))
REQUEST_TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT", 60))
QUESTION = "What is OPEA?"

# Request bodies and a key each answer must carry: the contract of the generated
# stubs and of the OPEA components they mirror (the same as tests/test_compose.sh).
REQUESTS = {
    "embedding": ({"text": QUESTION}, "embedding"),
    "retriever": ({"text": QUESTION, "embedding": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}, "retrieved_docs"),
    "rerank": ({"initial_query": QUESTION, "retrieved_docs": [{"text": "OPEA is an open platform."}]},
               "documents"),
    "llm": ({"query": QUESTION, "stream": False}, "choices"),  # a text completion, as comps 1.5 answers
    "guardrail": ({"text": "hello"}, "blocked"),
}
# dataprep ingests files (multipart): its check lists what it stores instead
LISTING = {"dataprep": "/v1/dataprep/get"}
PASSTHROUGH = ({"text": "hello"}, "trace")
GENERATED = [service for service in PIPELINE.nodes if service.generated]


# ---------------------------------------------------------------- the engine and compose


def compose_command() -> list[str]:
    return shlex.split(os.environ.get("COMPOSE", "docker compose"))


@pytest.fixture(scope="module")
def engine():
    """A docker SDK client of a reachable engine, else a skip that says why."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        pytest.skip("the docker Python SDK is not installed: pip install -r requirements-dev.txt")
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except DockerException as error:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        pytest.skip(f"no Docker engine reachable at {where}: {error}")
    try:
        version = subprocess.run([*compose_command(), "version"], cwd=ROOT, capture_output=True, text=True,
                                 timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        client.close()
        pytest.skip(f"no Docker Compose v2 ({' '.join(compose_command())}): {error}")
    if version.returncode != 0:
        client.close()
        pytest.skip(f"no Docker Compose v2 ({' '.join(compose_command())}): {version.stderr.strip()}")
    yield client
    client.close()


def setting(name: str, default: str = "") -> str:
    """A compose variable as compose reads it: the environment first, then .env."""
    return os.environ.get(name) or dotenv().get(name) or default


def compose_files() -> str:
    return setting("COMPOSE_FILE", "compose.yaml:compose.ports.yaml")


def compose(project: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*compose_command(), "--project-name", project, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COMPOSE_FILE": compose_files()})


def project_name() -> str:
    if os.environ.get("COMPOSE_PROJECT_NAME"):
        return os.environ["COMPOSE_PROJECT_NAME"]
    return MEGASERVICE.name.replace("_", "-")


def containers(engine, project: str) -> dict[str, object]:
    """The project's containers by compose service name."""
    found = engine.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    return {container.labels["com.docker.compose.service"]: container for container in found}


def logs(container) -> str:
    return container.logs(tail=200).decode(errors="replace")


def all_logs(engine, project: str) -> str:
    return "\n".join(f"--- {name} ({container.status})\n{logs(container)}"
                     for name, container in sorted(containers(engine, project).items()))


@pytest.fixture(scope="module")
def stack(engine):
    """Every image built and every service healthy (`up --build --wait`); `down -v` afterwards."""
    project = project_name()
    if compose(project, "--no-such-option", timeout=60).returncode == 0:
        pytest.fail(f"{' '.join(compose_command())} exits 0 even for an unknown option: "
                    "set COMPOSE to a real Docker Compose v2 command", pytrace=False)
    try:
        up = compose(project, "up", "--detach", "--build", "--wait", "--wait-timeout", str(WAIT_TIMEOUT),
                     timeout=WAIT_TIMEOUT + 1800)
        if up.returncode != 0:
            pytest.fail(f"`docker compose up --build --wait` failed:\n{up.stdout}{up.stderr}\n"
                        f"{all_logs(engine, project)}", pytrace=False)
        yield project
    finally:
        compose(project, "down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=300)


def api_key() -> str:
    """The first of API_KEYS (empty: access is open)."""
    return next(iter(setting("API_KEYS").replace(",", " ").split()), "")


@pytest.fixture(scope="module")
def client():
    headers = {"Authorization": f"Bearer {api_key()}"} if api_key() else {}
    with httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False, headers=headers) as session:
        yield session


def front_door(path: str) -> str:
    return f"http://127.0.0.1:{setting('NGINX_PORT', '80')}{path}"


def published(container, port: int) -> bool:
    bound = container.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp")
    return bool(bound)


# Run inside a container: one request to its own 127.0.0.1, the answer's status and body as JSON on stdout.
INSIDE = """
import json, sys, urllib.error, urllib.request as r
url, body, key = sys.argv[1], sys.argv[2], sys.argv[3]
request = r.Request(url, data=body.encode() if body else None, headers={"Content-Type": "application/json"})
if key:
    request.add_header("Authorization", "Bearer " + key)
try:
    answer = r.build_opener(r.ProxyHandler({})).open(request, timeout=float(sys.argv[4]))
    status, text = answer.status, answer.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
print(json.dumps({"status": status, "text": text}))
"""


def call(client: httpx.Client, engine, project: str, service: str, port: int, path: str,
         payload: dict | None = None) -> tuple[int, str]:
    """One request to a service on its own port: from here where it is published, else inside its container."""
    container = containers(engine, project)[service]
    if published(container, port):
        url = f"http://127.0.0.1:{port}{path}"
        answer = client.post(url, json=payload) if payload is not None else client.get(url)
        return answer.status_code, answer.text
    result = container.exec_run(["python", "-c", INSIDE, f"http://127.0.0.1:{port}{path}",
                                 json.dumps(payload) if payload is not None else "", api_key(),
                                 str(REQUEST_TIMEOUT)])
    if result.exit_code != 0:
        pytest.fail(f"{service}: {path} did not answer inside its container: {result.output.decode()[-2000:]}\n"
                    f"{logs(container)}", pytrace=False)
    answer = json.loads(result.output.decode().strip().splitlines()[-1])
    return answer["status"], answer["text"]


def answered(engine, project: str, service: str, what: str, status: int, text: str) -> Any:
    """The JSON of a 200 answer; any other outcome fails with the container's logs."""
    if status != 200:
        container = containers(engine, project).get(service)
        pytest.fail(f"{service}: HTTP {status} from {what}: {text[:500]}\n{logs(container) if container else ''}",
                    pytrace=False)
    return json.loads(text)


def post(client: httpx.Client, engine, project: str, service: str, url: str, payload: dict) -> httpx.Response:
    """POST from here and return the 200 answer; any other outcome fails with the container's logs."""
    container = containers(engine, project).get(service)
    try:
        answer = client.post(url, json=payload)
    except httpx.HTTPError as error:
        pytest.fail(f"{service}: {url} did not answer: {error!r}\n{logs(container) if container else ''}",
                    pytrace=False)
    answered(engine, project, service, url, answer.status_code, answer.text)
    return answer


def dotenv() -> dict[str, str]:
    """The project's .env (compose reads it), if there is one."""
    path = ROOT / ".env"
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


# ---------------------------------------------------------------- the tests


def expected_services() -> set[str]:
    names = {service.dns_name for service in PIPELINE.nodes} | {"megaservice", "nginx"}
    return names | ({"ui"} if MEGASERVICE.ui_port is not None else set())


def test_every_service_runs_healthy(engine, stack):
    running = containers(engine, stack)
    assert set(running) == expected_services(), all_logs(engine, stack)
    for name, container in running.items():
        container.reload()
        state = container.attrs["State"]
        health = state.get("Health", {}).get("Status")
        assert (state["Status"], health) == ("running", "healthy"), f"{name}:\n{logs(container)}"


def test_ports_are_published_on_the_publish_address(engine, stack):
    """The front door always; every other service on its own port only with compose.ports.yaml."""
    address = setting("PUBLISH_ADDRESS", "127.0.0.1")
    ports = {service.dns_name: service.port for service in PIPELINE.nodes}
    ports.update(megaservice=MEGASERVICE.port, ui=MEGASERVICE.ui_port, nginx=int(setting("NGINX_PORT", "80")))
    with_ports = "compose.ports.yaml" in compose_files()
    for name, container in containers(engine, stack).items():
        published = container.attrs["NetworkSettings"]["Ports"]
        bindings = [binding for bound in published.values() if bound for binding in bound]
        if name != "nginx" and not with_ports:
            assert bindings == [], (name, published)
            continue
        # 0.0.0.0 (every interface) also binds IPv6's "::" on a dual-stack engine
        allowed = {address, "::"} if address == "0.0.0.0" else {address}
        assert address in {binding["HostIp"] for binding in bindings}, (name, published)
        assert {binding["HostIp"] for binding in bindings} <= allowed, (name, published)
        assert {binding["HostPort"] for binding in bindings} == {str(ports[name])}, (name, published)


def test_generated_containers_do_not_run_as_root(engine, stack):
    generated = {service.dns_name for service in GENERATED} | {"megaservice", "ui"}
    for name, container in containers(engine, stack).items():
        if name in generated:
            assert container.attrs["Config"]["User"] not in ("", "root", "0"), name


@pytest.mark.parametrize("service", GENERATED, ids=[service.name for service in GENERATED])
def test_each_generated_microservice_answers(engine, stack, client, service):
    if service.type in LISTING:
        path = LISTING[service.type]
        status, text = call(client, engine, stack, service.dns_name, service.port, path, {})
        assert isinstance(answered(engine, stack, service.dns_name, path, status, text), list), text
        return
    payload, key = REQUESTS.get(service.type, PASSTHROUGH)
    status, text = call(client, engine, stack, service.dns_name, service.port, service.endpoint, payload)
    assert key in answered(engine, stack, service.dns_name, service.endpoint, status, text), text


def ask(client, engine, stack, url: str) -> None:
    if MEGASERVICE.protocol == "chat":
        answer = post(client, engine, stack, "megaservice", url, {"messages": QUESTION, "stream": False})
        content = answer.json()["choices"][0]["message"]["content"]
        assert isinstance(content, str) and content, answer.text
    else:
        answer = post(client, engine, stack, "megaservice", url, {"text": "hello"})
        assert isinstance(answer.json(), dict), answer.text


def test_the_megaservice_answers_through_the_front_door(engine, stack, client):
    ask(client, engine, stack, front_door(MEGASERVICE.endpoint))


def test_the_megaservice_answers_on_its_own_port(engine, stack, client):
    payload = {"messages": QUESTION, "stream": False} if MEGASERVICE.protocol == "chat" else {"text": "hello"}
    status, text = call(client, engine, stack, "megaservice", MEGASERVICE.port, MEGASERVICE.endpoint, payload)
    assert isinstance(answered(engine, stack, "megaservice", MEGASERVICE.endpoint, status, text), dict), text


def test_the_megaservice_reports_its_health(engine, stack, client):
    for path in ("/v1/health_check", "/v1/health", "/health"):
        status, text = call(client, engine, stack, "megaservice", MEGASERVICE.port, path)
        assert status == 200, (path, text)


def test_the_front_door_serves_the_web_ui_or_the_megaservice(engine, stack, client):
    answer = client.get(front_door("/"))
    if MEGASERVICE.ui_port is None:  # no UI: / is the megaservice's, which has no page there
        assert answer.status_code == 404, answer.text
        return
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html"), answer.headers
    assert MEGASERVICE.name in answer.text, answer.text[:500]
