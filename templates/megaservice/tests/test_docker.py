"""The whole project in Docker, checked through the docker Python SDK.

What tests/test_compose.sh does, as pytest tests: `docker compose up --build
--wait`, then every container's health as the engine reports it, one request
to each generated microservice and to the megaservice on 127.0.0.1 (where
compose publishes the ports), the container's logs with any failure, and
`docker compose down -v` at the end whatever happened.

    python -m pytest -m docker tests/test_docker.py

`make test` leaves these out (pyproject.toml: -m "not docker"). They need a
reachable Docker engine (DOCKER_HOST or the default socket) and Docker Compose
v2 (`docker compose`, or COMPOSE="docker-compose"), and skip saying why
otherwise. The compose project is COMPOSE_PROJECT_NAME when set, else the one
compose.yaml names; WAIT_TIMEOUT and REQUEST_TIMEOUT are in seconds.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

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


def compose(project: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*compose_command(), "--project-name", project, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


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


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=REQUEST_TIMEOUT, trust_env=False) as session:
        yield session


def post(client: httpx.Client, engine, project: str, service: str, url: str, payload: dict) -> httpx.Response:
    """POST and return the 200 answer; any other outcome fails with the container's logs."""
    container = containers(engine, project).get(service)
    try:
        answer = client.post(url, json=payload)
    except httpx.HTTPError as error:
        pytest.fail(f"{service}: {url} did not answer: {error!r}\n{logs(container) if container else ''}",
                    pytrace=False)
    if answer.status_code != 200:
        pytest.fail(f"{service}: HTTP {answer.status_code} from {url}: {answer.text[:500]}\n"
                    f"{logs(container) if container else ''}", pytrace=False)
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


def test_every_service_runs_healthy(engine, stack):
    expected = {service.dns_name for service in PIPELINE.nodes} | {"megaservice"}
    running = containers(engine, stack)
    assert set(running) == expected, all_logs(engine, stack)
    for name, container in running.items():
        container.reload()
        state = container.attrs["State"]
        health = state.get("Health", {}).get("Status")
        assert (state["Status"], health) == ("running", "healthy"), f"{name}:\n{logs(container)}"


def test_ports_are_published_on_the_publish_address(engine, stack):
    address = os.environ.get("PUBLISH_ADDRESS") or dotenv().get("PUBLISH_ADDRESS") or "127.0.0.1"
    ports = {service.dns_name: service.port for service in PIPELINE.nodes}
    ports["megaservice"] = MEGASERVICE.port
    for name, container in containers(engine, stack).items():
        published = container.attrs["NetworkSettings"]["Ports"]
        bindings = [binding for bound in published.values() if bound for binding in bound]
        # 0.0.0.0 (every interface) also binds IPv6's "::" on a dual-stack engine
        allowed = {address, "::"} if address == "0.0.0.0" else {address}
        assert address in {binding["HostIp"] for binding in bindings}, (name, published)
        assert {binding["HostIp"] for binding in bindings} <= allowed, (name, published)
        assert {binding["HostPort"] for binding in bindings} == {str(ports[name])}, (name, published)


def test_generated_containers_do_not_run_as_root(engine, stack):
    generated = {service.dns_name for service in GENERATED} | {"megaservice"}
    for name, container in containers(engine, stack).items():
        if name in generated:
            assert container.attrs["Config"]["User"] not in ("", "root", "0"), name


@pytest.mark.parametrize("service", GENERATED, ids=[service.name for service in GENERATED])
def test_each_generated_microservice_answers(engine, stack, client, service):
    payload, key = REQUESTS.get(service.type, PASSTHROUGH)
    answer = post(client, engine, stack, service.dns_name, f"http://127.0.0.1:{service.port}{service.endpoint}",
                  payload)
    assert key in answer.json(), answer.text


def test_the_megaservice_answers(engine, stack, client):
    url = f"http://127.0.0.1:{MEGASERVICE.port}{MEGASERVICE.endpoint}"
    if MEGASERVICE.protocol == "chat":
        answer = post(client, engine, stack, "megaservice", url, {"messages": QUESTION, "stream": False})
        content = answer.json()["choices"][0]["message"]["content"]
        assert isinstance(content, str) and content, answer.text
    else:
        answer = post(client, engine, stack, "megaservice", url, {"text": "hello"})
        assert isinstance(answer.json(), dict), answer.text


def test_the_megaservice_reports_its_health(engine, stack, client):
    for path in ("/v1/health_check", "/v1/health", "/health"):
        answer = client.get(f"http://127.0.0.1:{MEGASERVICE.port}{path}")
        assert answer.status_code == 200, (path, answer.text)

