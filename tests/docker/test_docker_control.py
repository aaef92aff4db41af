"""Issue 13's instance management in the real engine: launch and stop instances through the API.

A chat pipeline with one `llm` node and `megaservice: {control: true}`, lite
runtime, no web UI, with API_KEYS, CONTROL_MAX_INSTANCES=2 and DOCKER_SOCKET (this
private engine's socket) in its `.env`. Only the front door is published
(127.0.0.1:NGINX_PORT); it routes /v1/instances/ and /v1/models/available to the
control service, and / to the megaservice (no UI), whose GET /v1/services shows
what it knows of llm's instances.

* without the key (or with a wrong one) every control endpoint is a 401;
* an instance launched through the API (POST /v1/instances/llm, 201) is found by
  the megaservice under llm's DNS name and receives requests within seconds;
  stopping it (DELETE /v1/instances/<id>) leaves no failed request, and the
  megaservice drops it;
* refusals are clear 4xx: past the maximum (409), compose's own container (409),
  an unknown service (404), an id that is not one (422);
* the socket is only in docker-proxy, on the internal network with control alone,
  and docker-proxy refuses what control never needs (an exec: 403).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from engine import ComposeProject, Engine
from test_docker_projects import generate

from tests.conftest import free_ports

pytestmark = pytest.mark.docker

KEY = secrets.token_urlsafe(32)
QUESTION = {"messages": "What is OPEA?", "stream": False}
SOON = 30.0  # seconds a launched instance may take to receive traffic, or a stopped one to leave


def control_spec(name: str) -> dict[str, Any]:
    llm, mega = free_ports(2)
    return {
        "name": name,
        "description": "One llm node, its instances managed through the control service (the docker tier).",
        "megaservice": {"port": mega, "endpoint": "/v1/chatqna", "protocol": "chat", "ui": False, "control": True},
        "services": [{"name": "llm", "type": "llm", "port": llm}],
    }


@dataclass
class Controlled:
    spec: dict[str, Any]
    compose: ComposeProject
    nginx_port: int

    @property
    def engine(self) -> Engine:
        return self.compose.engine

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.nginx_port}{path}"

    def call(self, method: str, path: str, key: str | None = KEY, **options: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(timeout=60, trust_env=False) as client:  # 127.0.0.1 only, never through a proxy
            return client.request(method, self.url(path), headers=headers, **options)

    def ask(self) -> int:
        try:
            return self.call("POST", self.spec["megaservice"]["endpoint"], json=QUESTION).status_code
        except httpx.HTTPError:
            return 0

    def llm_instances(self) -> list[dict[str, Any]]:
        """What the megaservice knows of llm's instances (GET /v1/services through the front door)."""
        answer = self.call("GET", "/v1/services")
        assert answer.status_code == 200, answer.text
        llm = next(service for service in answer.json()["services"] if service["name"] == "llm")
        return llm["instances"]

    def container(self, service: str) -> str:
        return self.compose.compose("ps", "--quiet", service, timeout=60).stdout.split()[0]

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(self.engine.docker("inspect", container).stdout)[0]


@pytest.fixture(scope="module")
def controlled(docker_engine: Engine, tmp_path_factory) -> Iterator[Controlled]:
    spec = control_spec("managed")  # "control" is the control service's own name: a project may not take it
    directory = generate(spec, tmp_path_factory.mktemp("managed"), "lite")
    example = (directory / ".env.example").read_text()
    assert "CONTROL_MAX_INSTANCES=5" in example and "DOCKER_SOCKET=" in example
    nginx_port = free_ports(1)[0]
    (directory / ".env").write_text(f"API_KEYS={KEY}\nNGINX_PORT={nginx_port}\nCONTROL_MAX_INSTANCES=2\n"
                                    f"DOCKER_SOCKET={docker_engine.socket}\n")
    project = Controlled(spec, ComposeProject(docker_engine, directory, "t-control"), nginx_port)
    try:
        project.compose.up(wait_timeout=300, build=True)
        yield project
    finally:
        project.compose.down()
        # what control launched is a one-off container of the project: down removes it; make sure
        left = docker_engine.docker("ps", "--all", "--quiet", "--filter", "label=com.docker.compose.project=t-control",
                                    check=False).stdout.split()
        if left:
            docker_engine.docker("rm", "--force", *left, check=False)
        assert not left, f"containers left after down: {left}"


def test_control_needs_the_key(controlled: Controlled):
    for method, path in (("GET", "/v1/models/available"), ("GET", "/v1/instances/llm"),
                         ("POST", "/v1/instances/llm")):
        for key in (None, secrets.token_urlsafe(32)):
            answer = controlled.call(method, path, key)
            assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
    assert len(controlled.llm_instances()) == 1  # nothing was launched by the refused POSTs


def test_the_models_available_are_this_projects_services(controlled: Controlled):
    answer = controlled.call("GET", "/v1/models/available")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["project"] == "t-control", body  # compose's project name, as the containers are labelled
    (llm,) = body["services"]
    assert (llm["name"], llm["image"], llm["max_instances"], llm["instances"]) == (
        "llm", "managed/managed-llm:latest", 2, 1), llm


def test_a_launched_instance_gets_traffic_and_stopping_it_loses_nothing(controlled: Controlled):
    launched = controlled.call("POST", "/v1/instances/llm")
    assert launched.status_code == 201, launched.text
    instance = launched.json()
    assert instance["service"] == "llm" and instance["launched_by"] == "control", instance
    listed = controlled.call("GET", "/v1/instances/llm").json()["instances"]
    assert {entry["id"] for entry in listed} >= {instance["id"]} and len(listed) == 2, listed

    # the megaservice finds it under llm's name (Docker's DNS, re-resolved every few seconds) and sends it requests
    started, used = time.monotonic(), None
    while time.monotonic() - started < SOON:
        assert controlled.ask() == 200
        instances = controlled.llm_instances()
        if len(instances) == 2 and all(entry["requests"] > 0 for entry in instances):
            used = time.monotonic() - started
            break
        time.sleep(0.2)
    assert used is not None, f"the launched instance got no request within {SOON}s: {controlled.llm_instances()}"

    # stopped under a light, bounded load: no request fails, and the megaservice drops it
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set() and len(statuses) < 400:
            statuses.append(controlled.ask())
            time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    time.sleep(1)
    stopped = controlled.call("DELETE", f"/v1/instances/{instance['id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "removed"
    gone = None
    started = time.monotonic()
    while time.monotonic() - started < SOON:
        if len(controlled.llm_instances()) == 1:
            gone = time.monotonic() - started
            break
        time.sleep(0.3)
    time.sleep(1)
    stop.set()
    loader.join(timeout=60)
    assert gone is not None, controlled.llm_instances()
    assert statuses and set(statuses) == {200}, f"{len([s for s in statuses if s != 200])} of {len(statuses)} failed"
    assert [entry["id"] for entry in controlled.call("GET", "/v1/instances/llm").json()["instances"]] != [
        instance["id"]]
    controlled.engine.notes.append(f"control: a launched llm instance got traffic {used:.1f}s after the POST; "
                                   f"stopped, {len(statuses)} requests meanwhile all 200, dropped after {gone:.1f}s")


def test_refusals_are_clear_4xx(controlled: Controlled):
    launched = controlled.call("POST", "/v1/instances/llm")  # 2 of CONTROL_MAX_INSTANCES=2
    assert launched.status_code == 201, launched.text
    try:
        beyond = controlled.call("POST", "/v1/instances/llm")
        assert beyond.status_code == 409, beyond.text
        assert "2" in beyond.text, beyond.text  # it says the maximum
        composes = controlled.inspect(controlled.container("llm"))["Id"]
        refused = controlled.call("DELETE", f"/v1/instances/{composes}")
        assert refused.status_code == 409, refused.text
        assert controlled.call("POST", "/v1/instances/nope").status_code == 404
        assert controlled.call("DELETE", "/v1/instances/not-an-id").status_code == 422
        assert controlled.call("DELETE", f"/v1/instances/{'0' * 64}").status_code == 404
        assert controlled.call("POST", "/v1/instances/llm", json={"privileged": True}).status_code == 422
    finally:
        assert controlled.call("DELETE", f"/v1/instances/{launched.json()['id']}").status_code == 200


def test_only_docker_proxy_holds_the_socket_and_refuses_what_control_never_needs(controlled: Controlled):
    project_networks = {"t-control_default", "t-control_docker-api"}
    proxy = controlled.inspect(controlled.container("docker-proxy"))
    control = controlled.inspect(controlled.container("control"))
    assert [mount["Destination"] for mount in proxy["Mounts"]] == ["/var/run/docker.sock"]
    assert not [mount for mount in control["Mounts"] if "docker.sock" in mount.get("Source", "")]
    assert set(proxy["NetworkSettings"]["Networks"]) == {"t-control_docker-api"}
    assert set(control["NetworkSettings"]["Networks"]) == project_networks
    assert not any(proxy["NetworkSettings"]["Ports"].values())  # nothing published
    network = json.loads(controlled.engine.docker("network", "inspect", "t-control_docker-api").stdout)[0]
    assert network["Internal"] is True
    # from inside control (the one container that reaches it): an exec, which control never makes, is refused
    probe = ("import sys, urllib.request as r, urllib.error as e\n"
             "request = r.Request(sys.argv[1], data=b'{\"Cmd\": [\"id\"]}', headers={'Content-Type': "
             "'application/json'})\n"
             "try:\n    r.build_opener(r.ProxyHandler({})).open(request, timeout=10)\n    print(200)\n"
             "except e.HTTPError as error:\n    print(error.code)")
    target = controlled.container("llm")
    status = controlled.engine.docker("exec", controlled.container("control"), "python", "-c", probe,
                                      f"http://docker-proxy:2375/containers/{target}/exec").stdout.strip()
    assert status == "403", status
