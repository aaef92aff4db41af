"""opea_new_runtime.control.socket_proxy: what it forwards to the Docker socket, what it refuses, end to end.

`decide` (the allowlist) is tested on its own, case by case. End to end, the proxy runs on
127.0.0.1 (an ephemeral port) in front of FakeDocker, a small Docker Engine API served by
aiohttp on a unix socket in a temporary folder, which records every request it gets: a
refused request must never reach it. DockerEngine (the real Docker SDK) then launches,
lists and stops instances through the proxy, as the control service does in a deployment.
`python -m opea_new_runtime.control.socket_proxy` runs in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp import web

from opea_new_runtime.control import socket_proxy
from opea_new_runtime.control.engine import (
    LAUNCHED_BY_LABEL,
    ONEOFF_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    DockerEngine,
    launched_labels,
)
from opea_new_runtime.control.socket_proxy import decide

PROJECT = "proxied"
IMAGE = f"{PROJECT}/{PROJECT}-llm:latest"
ID = "0123456789ab" * 5 + "cdef"
OURS = {"Image": IMAGE, "Labels": launched_labels(PROJECT, "llm"), "HostConfig": {"NetworkMode": "proxied_default"}}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


# ---------------------------------------------------------------- the allowlist


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/v1.45/version"),
    ("GET", "/v1.45/containers/json?all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"),
    ("GET", "/containers/json"), ("GET", f"/v1.24/containers/{ID}/json"), ("GET", "/containers/proxied-llm-1/json"),
    ("GET", "/v1.45/images/proxied/proxied-llm:latest/json"), ("GET", "/images/registry:5000/a/b@sha256:00ff/json"),
    ("POST", f"/v1.45/containers/{ID}/start"), ("POST", f"/v1.45/containers/{ID}/stop?t=10"),
    ("DELETE", f"/v1.45/containers/{ID}?v=False&link=False&force=False"),
])
def test_the_calls_control_makes_are_forwarded(method, path):
    assert decide(method, path) is None


def test_a_create_of_an_unprivileged_labelled_container_and_a_connect_are_forwarded():
    assert decide("POST", "/v1.45/containers/create?name=proxied-llm-control-0a1b2c", body(OURS)) is None
    cli_style = {**OURS, "Volumes": None, "HostConfig": {  # what docker's CLI sends: every option, unset
        "NetworkMode": "proxied_default", "Privileged": False, "Binds": None, "CapAdd": [], "Devices": [],
        "LogConfig": {"Type": "", "Config": {}}, "PidMode": "", "ConsoleSize": [0, 0], "Memory": 536870912,
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}}
    assert decide("POST", "/containers/create", body(cli_style)) is None
    connect = {"Container": ID, "EndpointConfig": {"Aliases": ["llm"]}}
    assert decide("POST", "/v1.45/networks/proxied_back/connect", body(connect)) is None
    assert socket_proxy.resolve("POST", "/networks/n/connect", body(connect)).owner == ID


@pytest.mark.parametrize(("method", "path", "says"), [
    ("POST", f"/v1.45/containers/{ID}/exec", "is not among the Docker API calls"),
    ("POST", "/exec/abc/start", "is not among"),
    ("POST", "/v1.45/build", "is not among"),
    ("POST", "/images/create?fromImage=alpine", "is not among"),  # a pull
    ("POST", "/images/proxied/push", "is not among"),
    ("DELETE", "/images/proxied", "is not among"),
    ("POST", f"/containers/{ID}/attach?stream=1", "is not among"),
    ("GET", f"/containers/{ID}/logs", "is not among"),
    ("GET", f"/containers/{ID}/archive?path=/", "is not among"),
    ("PUT", f"/containers/{ID}/archive?path=/", "is not among"),
    ("POST", f"/containers/{ID}/update", "is not among"),
    ("POST", f"/containers/{ID}/kill", "is not among"),
    ("POST", "/volumes/create", "is not among"),
    ("POST", "/networks/create", "is not among"),
    ("POST", "/networks/n/disconnect", "is not among"),
    ("POST", "/swarm/init", "is not among"),
    ("GET", "/info", "is not among"),
    ("GET", "/events", "is not among"),
    ("POST", "/plugins/pull", "is not among"),
    ("GET", "/containers/create", "is not among"),  # the method counts too
    ("DELETE", "/images/a/json", "is not among"),
    ("GET", "/v2.0/version", "is not among"),
    ("GET", "/", "is not a plain Docker API path"),
    ("POST", f"/containers/{ID}/../../exec", "is not a plain Docker API path"),
    ("POST", "/containers/%2e%2e/exec", "is not a plain Docker API path"),
    ("GET", "//containers/json", "is not a plain Docker API path"),
    ("GET", "/v1.45/./version", "is not a plain Docker API path"),
])
def test_anything_else_is_refused_with_a_reason(method, path, says):
    assert says in decide(method, path)


@pytest.mark.parametrize(("change", "says"), [
    ({"HostConfig": {"Privileged": True}}, "HostConfig.Privileged"),
    ({"HostConfig": {"Binds": ["/:/host"]}}, "HostConfig.Binds"),
    ({"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}}, "HostConfig.Mounts"),
    ({"HostConfig": {"NetworkMode": "host"}}, "NetworkMode=host"),
    ({"HostConfig": {"NetworkMode": "container:proxied-llm-1"}}, "NetworkMode=container:"),
    ({"HostConfig": {"NetworkMode": "proxied_default", "CapAdd": ["SYS_ADMIN"]}}, "HostConfig.CapAdd"),
    ({"HostConfig": {"Devices": [{"PathOnHost": "/dev/sda"}]}}, "HostConfig.Devices"),
    ({"HostConfig": {"DeviceRequests": [{"Count": -1}]}}, "HostConfig.DeviceRequests"),
    ({"HostConfig": {"PidMode": "host"}}, "HostConfig.PidMode"),
    ({"HostConfig": {"IpcMode": "host"}}, "HostConfig.IpcMode"),
    ({"HostConfig": {"UsernsMode": "host"}}, "HostConfig.UsernsMode"),
    ({"HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}}, "HostConfig.SecurityOpt"),
    ({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "80"}]}}}, "HostConfig.PortBindings"),
    ({"HostConfig": {"VolumesFrom": ["proxied-db-1"]}}, "HostConfig.VolumesFrom"),
    ({"HostConfig": {"Sysctls": {"kernel.x": "1"}}}, "HostConfig.Sysctls"),
    ({"HostConfig": {"OomScoreAdj": -1000}}, "HostConfig.OomScoreAdj"),
    ({"HostConfig": "privileged"}, "HostConfig must be an object"),
    ({"Volumes": {"/data": {}}}, "a create with Volumes"),
    ({"NetworkingConfig": {"EndpointsConfig": {"host": {}}}}, "host network"),
    ({"Labels": {}}, f"{LAUNCHED_BY_LABEL}=control"),
    ({"Labels": {LAUNCHED_BY_LABEL: "someone"}}, f"{LAUNCHED_BY_LABEL}=control"),
])
def test_a_create_that_reaches_the_host_or_is_not_controls_is_refused(change, says):
    refusal = decide("POST", "/v1.45/containers/create", body({**OURS, **change}))
    assert refusal is not None and says in refusal


@pytest.mark.parametrize(("method", "path", "data", "says"), [
    ("POST", "/containers/create", b"not json", "is not JSON"),
    ("POST", "/containers/create", b"[1]", "not a JSON object"),
    ("POST", "/containers/create", b"", "not a JSON object"),
    ("POST", f"/containers/{ID}/start", body({"HostConfig": {"Privileged": True}}), "a start with a body"),
    ("POST", "/networks/n/connect", body({"EndpointConfig": {}}), "must name its Container"),
    ("POST", "/networks/n/connect", body({"Container": "x/../../images/create?fromImage=a"}), "id or name"),
])
def test_bodies_that_could_smuggle_options_are_refused(method, path, data, says):
    assert says in decide(method, path, data)


def test_with_a_project_only_its_containers_may_be_created_or_touched():
    assert decide("POST", "/containers/create", body(OURS), project=PROJECT) is None
    other = {**OURS, "Labels": launched_labels("other", "llm")}
    assert f"{PROJECT_LABEL}={PROJECT}" in decide("POST", "/containers/create", body(other), project=PROJECT)
    attrs = {"Name": "/other-llm-control-abc", "Config": {"Labels": launched_labels("other", "llm")}}
    assert socket_proxy.owner_refusal(attrs, None) is None
    assert "not a container of project proxied" in socket_proxy.owner_refusal(attrs, PROJECT)
    compose = {"Name": "/proxied-llm-1", "Config": {"Labels": {PROJECT_LABEL: PROJECT, SERVICE_LABEL: "llm"}}}
    assert "proxied-llm-1 was not launched by control" in socket_proxy.owner_refusal(compose, PROJECT)


# ---------------------------------------------------------------- a fake Docker Engine API on a unix socket


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeDocker:
    """Enough of the Docker Engine API for DockerEngine, in memory; `requests` records every call it receives."""

    def __init__(self, images: tuple[str, ...] = (IMAGE,)) -> None:
        self.images = set(images)
        self.containers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.connected: list[tuple[str, dict[str, Any]]] = []

    def add(self, name: str, labels: dict[str, str], *, networks: tuple[str, ...] = (f"{PROJECT}_default",),
            state: str = "running", env: tuple[str, ...] = (), cmd: list[str] | None = None,
            host_config: dict[str, Any] | None = None, image: str = IMAGE) -> str:
        container_id = secrets.token_hex(32)
        self.containers[container_id] = {
            "Id": container_id, "Name": f"/{name}", "Created": now(), "State": {"Status": state},
            "Config": {"Image": image, "Env": list(env), "Cmd": cmd, "Labels": labels, "Entrypoint": None,
                       "User": "", "WorkingDir": "", "Healthcheck": None},
            "HostConfig": host_config or {"NetworkMode": networks[0]},
            "NetworkSettings": {"Networks": {network: {"Aliases": [labels.get(SERVICE_LABEL)]}
                                             for network in networks}}}
        return container_id

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def find(self, key: str) -> dict[str, Any] | None:
        return next((attrs for container_id, attrs in self.containers.items()
                     if container_id.startswith(key) or attrs["Name"] == f"/{key}"), None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        path = re.sub(r"^/v1\.\d+", "", request.path)
        data = await request.read()
        document = json.loads(data) if data else None
        if path == "/_ping":
            return web.Response(text="OK")
        if path == "/version":
            return web.json_response({"ApiVersion": "1.45", "MinAPIVersion": "1.24", "Version": "27.0-fake"})
        if path == "/containers/json":
            filters = json.loads(request.query.get("filters", "{}"))
            every = request.query.get("all") in ("1", "true", "True")
            listed = [{"Id": attrs["Id"], "Names": [attrs["Name"]], "Labels": attrs["Config"]["Labels"],
                       "State": attrs["State"]["Status"]} for attrs in self.containers.values()
                      if (every or attrs["State"]["Status"] == "running") and self.matches(attrs, filters)]
            return web.json_response(listed)
        if path == "/containers/create":
            self.created.append(document)
            name = request.query.get("name") or secrets.token_hex(4)
            container_id = secrets.token_hex(32)
            endpoints = (document.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
            self.containers[container_id] = {
                "Id": container_id, "Name": f"/{name}", "Created": now(), "State": {"Status": "created"},
                "Config": {key: document.get(key) for key in ("Image", "Env", "Cmd", "Labels", "Entrypoint",
                                                              "User", "WorkingDir", "Healthcheck")},
                "HostConfig": document.get("HostConfig") or {},
                "NetworkSettings": {"Networks": {network: {"Aliases": (config or {}).get("Aliases")}
                                                 for network, config in endpoints.items()}}}
            return web.json_response({"Id": container_id, "Warnings": []}, status=201)
        if matched := re.fullmatch(r"/images/(.+)/json", path):
            if matched[1] in self.images:
                return web.json_response({"Id": "sha256:" + "0" * 64, "RepoTags": [matched[1]]})
            return web.json_response({"message": f"No such image: {matched[1]}"}, status=404)
        if matched := re.fullmatch(r"/networks/([^/]+)/connect", path):
            attrs = self.find(document["Container"])
            attrs["NetworkSettings"]["Networks"][matched[1]] = {
                "Aliases": (document.get("EndpointConfig") or {}).get("Aliases")}
            self.connected.append((matched[1], document))
            return web.Response(status=200)
        if matched := re.fullmatch(r"/containers/([^/]+)(/json|/start|/stop)?", path):
            attrs = self.find(matched[1])
            if attrs is None:
                return web.json_response({"message": f"No such container: {matched[1]}"}, status=404)
            action = matched[2]
            if action == "/json":
                return web.json_response(attrs)
            if action in ("/start", "/stop"):
                attrs["State"]["Status"] = "running" if action == "/start" else "exited"
                return web.Response(status=204)
            if request.method == "DELETE":
                if attrs["State"]["Status"] == "running" and request.query.get("force") not in ("1", "True", "true"):
                    return web.json_response({"message": "cannot remove a running container"}, status=409)
                del self.containers[attrs["Id"]]
                return web.Response(status=204)
        return web.json_response({"message": f"the fake does not do {request.method} {path}"}, status=200)

    @staticmethod
    def matches(attrs: dict[str, Any], filters: dict[str, Any]) -> bool:
        labels = attrs["Config"]["Labels"] or {}
        wanted = filters.get("label", [])
        wanted = list(wanted) if isinstance(wanted, list) else [key for key, on in wanted.items() if on]
        statuses = filters.get("status", [])
        return (all(labels.get(label.partition("=")[0]) == label.partition("=")[2] for label in wanted)
                and (not statuses or attrs["State"]["Status"] in statuses))


@contextlib.contextmanager
def served(fake: FakeDocker, *, project: str | None = None, socket_path: str | None = None) -> Iterator[str]:
    """FakeDocker on a unix socket and the proxy on 127.0.0.1 in front of it; yields the proxy's base URL."""
    folder = tempfile.mkdtemp(prefix="dock", dir="/tmp")  # short: a unix socket path has at most 107 bytes
    path = os.path.join(folder, "docker.sock")
    loop = asyncio.new_event_loop()
    runners: list[web.AppRunner] = []
    ready: dict[str, Any] = {}

    async def start() -> None:
        docker_runner = web.AppRunner(fake.app())
        await docker_runner.setup()
        await web.UnixSite(docker_runner, path).start()
        proxy_runner = web.AppRunner(socket_proxy.create_app(socket_path or path, project))
        await proxy_runner.setup()
        site = web.TCPSite(proxy_runner, "127.0.0.1", 0)
        await site.start()
        runners.extend([proxy_runner, docker_runner])
        ready["port"] = site._server.sockets[0].getsockname()[1]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        yield f"http://127.0.0.1:{ready['port']}"
    finally:
        async def stop() -> None:
            for runner in runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        shutil.rmtree(folder, ignore_errors=True)


def compose_labels(service: str = "llm", project: str = PROJECT) -> dict[str, str]:
    return {PROJECT_LABEL: project, SERVICE_LABEL: service, ONEOFF_LABEL: "False"}


@pytest.fixture
def fake() -> FakeDocker:
    return FakeDocker()


@pytest.fixture
def proxy(fake) -> Iterator[httpx.Client]:
    with served(fake) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        yield client


# ---------------------------------------------------------------- end to end


def test_allowed_calls_reach_docker_and_come_back_as_docker_answered(fake, proxy):
    compose_id = fake.add("proxied-llm-1", compose_labels())
    assert proxy.get("/_ping").text == "OK"
    assert proxy.get("/version").json()["ApiVersion"] == "1.45"
    filters = json.dumps({"label": [f"{PROJECT_LABEL}={PROJECT}"]})
    listed = proxy.get("/v1.45/containers/json", params={"all": "1", "filters": filters})
    assert [entry["Id"] for entry in listed.json()] == [compose_id]
    assert proxy.get(f"/v1.45/containers/{compose_id}/json").json()["Name"] == "/proxied-llm-1"
    missing = proxy.get("/v1.45/containers/ffffffffffff/json")
    assert missing.status_code == 404 and "No such container" in missing.json()["message"]  # Docker's own answer
    assert ("GET", "/v1.45/containers/json") in fake.requests


def test_refused_calls_are_403_in_dockers_error_shape_and_never_reach_docker(fake, proxy):
    compose_id = fake.add("proxied-llm-1", compose_labels())
    refused = [
        proxy.post(f"/v1.45/containers/{compose_id}/exec", json={"Cmd": ["sh"]}),
        proxy.post("/v1.45/containers/create", json={**OURS, "HostConfig": {"Privileged": True}}),
        proxy.post("/v1.45/containers/create", json={**OURS, "HostConfig": {"Binds": ["/:/host"]}}),
        proxy.post("/v1.45/images/create", params={"fromImage": "alpine"}),
        proxy.get("/v1.45/info"),
    ]
    for answer in refused:
        assert answer.status_code == 403 and answer.json()["message"].startswith("socket proxy: ")
    assert fake.requests == [] and fake.created == []


def test_compose_containers_cannot_be_started_stopped_removed_or_connected(fake, proxy):
    compose_id = fake.add("proxied-llm-1", compose_labels())
    for answer in [proxy.post(f"/v1.45/containers/{compose_id}/stop"),
                   proxy.post(f"/v1.45/containers/{compose_id}/start"),
                   proxy.delete(f"/v1.45/containers/{compose_id}", params={"force": "True"}),
                   proxy.post("/v1.45/networks/elsewhere/connect", json={"Container": compose_id})]:
        assert answer.status_code == 403 and "was not launched by control" in answer.json()["message"]
    assert fake.containers[compose_id]["State"]["Status"] == "running"
    assert [method for method, _ in fake.requests] == ["GET"] * 4  # the inspections, nothing else


def test_with_a_project_other_projects_containers_are_not_there(fake):
    ours = fake.add("proxied-llm-1", compose_labels())
    theirs = fake.add("other-db-1", compose_labels("db", project="other"), env=("POSTGRES_PASSWORD=secret",))
    with served(fake, project=PROJECT) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        listed = client.get("/v1.45/containers/json", params={"all": "1"})
        assert [entry["Id"] for entry in listed.json()] == [ours]
        hidden = client.get(f"/v1.45/containers/{theirs}/json")
        assert hidden.status_code == 404 and "secret" not in hidden.text and "other" not in hidden.text
        assert client.get(f"/v1.45/containers/{ours}/json").json()["Id"] == ours
        assert client.get("/v1.45/containers/ffffffffffff/json").status_code == 404
    with served(fake) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        assert len(client.get("/containers/json", params={"all": "1"}).json()) == 2  # no project: no narrowing
    assert socket_proxy.visible("containers", {"not": "a list"}, PROJECT) == []


def test_a_body_past_the_limit_is_413_and_docker_out_of_reach_is_502(fake):
    with served(fake) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        large = client.post("/containers/create", content=b"{" + b" " * socket_proxy.MAX_BODY_BYTES + b"}")
        assert large.status_code == 413 and "larger than" in large.json()["message"]
    with served(fake, socket_path="/tmp/no-such-docker.sock") as url, \
            httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        down = client.get("/_ping")
    assert down.status_code == 502 and "cannot reach the Docker engine at /tmp/no-such-docker.sock" in down.text


def test_docker_engine_launches_lists_and_stops_through_the_proxy(fake, monkeypatch):
    pytest.importorskip("docker")
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    compose_id = fake.add("proxied-llm-1", compose_labels(), networks=(f"{PROJECT}_default", f"{PROJECT}_back"),
                          env=("LLM_PORT=9000", "HF_TOKEN=secret"), cmd=["python", "-m", "llm"],
                          host_config={"NetworkMode": f"{PROJECT}_default", "Privileged": True,
                                       "Binds": ["/models:/models"], "PortBindings": {"9000/tcp": [{}]}})
    fake.add("other-llm-1", compose_labels(project="other"))
    with served(fake, project=PROJECT) as url:
        engine = DockerEngine(PROJECT, environ={"DOCKER_HOST": url.replace("http://", "tcp://")}, stop_timeout=1)
        launched = engine.launch("llm", IMAGE)
        assert launched.state == "running" and launched.launched_by == "control"
        assert launched.name.startswith("proxied-llm-control-") and launched.image == IMAGE

        created = fake.created[0]
        assert created["Image"] == IMAGE and created["Cmd"] == ["python", "-m", "llm"]
        assert {"LLM_PORT=9000", "HF_TOKEN=secret"} <= set(created["Env"])
        assert created["Labels"] == launched_labels(PROJECT, "llm")
        assert created["NetworkingConfig"]["EndpointsConfig"] == {f"{PROJECT}_default": {"Aliases": ["llm"]}}
        assert fake.connected == [(f"{PROJECT}_back", {"Container": launched.id,
                                                      "EndpointConfig": {"Aliases": ["llm"]}})]
        host_config = {key: value for key, value in created["HostConfig"].items() if value}
        assert host_config == {"NetworkMode": f"{PROJECT}_default"}  # nothing of the template's host config

        listed = engine.instances("llm")
        assert [(instance.id, instance.launched_by) for instance in listed] == [
            (compose_id, "compose"), (launched.id, "control")]
        assert engine.instances("embedding") == []

        stopped = engine.stop(launched.id[:12])
        assert stopped.id == launched.id and stopped.state == "removed"
        assert launched.id not in fake.containers and [instance.id for instance in engine.instances("llm")] == [
            compose_id]
    assert not any(path.endswith(("/exec", "/images/create")) for _, path in fake.requests)


def test_a_privileged_launch_is_refused_by_the_proxy_even_if_control_asked_for_one(fake, monkeypatch):
    pytest.importorskip("docker")
    from opea_new_runtime.control import engine as engine_module
    from opea_new_runtime.control.engine import EngineFailed

    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    allowlisted = engine_module.launch_options

    def compromised(*args: Any, **kwargs: Any) -> dict[str, Any]:  # as if control's own checks were gone
        return {**allowlisted(*args, **kwargs), "privileged": True, "cap_add": ["SYS_ADMIN"]}

    monkeypatch.setattr(engine_module, "launch_options", compromised)
    fake.add("proxied-llm-1", compose_labels())
    with served(fake, project=PROJECT) as url:
        engine = DockerEngine(PROJECT, environ={"DOCKER_HOST": url.replace("http://", "tcp://")})
        with pytest.raises(EngineFailed) as failed:
            engine.launch("llm", IMAGE)
    assert "refused: socket proxy: a create with HostConfig.Privileged is not forwarded" in str(failed.value)
    assert fake.created == [] and len(fake.containers) == 1


# ---------------------------------------------------------------- python -m opea_new_runtime.control.socket_proxy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proxy_environ(**more: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT", "VIRTUAL_ENV")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, "PYTHONUNBUFFERED": "1", **more}


@pytest.mark.parametrize(("more", "says"), [
    ({"PROXY_PORT": "docker"}, "PROXY_PORT"),
    ({"DOCKER_SOCKET": "/no/such/docker.sock"}, "DOCKER_SOCKET: /no/such/docker.sock does not exist"),
])
def test_bad_settings_stop_the_proxy_with_one_line(more, says):
    started = subprocess.run([sys.executable, "-m", "opea_new_runtime.control.socket_proxy"], capture_output=True,
                             text=True, timeout=60, env=proxy_environ(**more))
    assert started.returncode == 2 and started.stderr.startswith("socket proxy: ") and says in started.stderr
    assert "Traceback" not in started.stderr and len(started.stderr.strip().splitlines()) == 1


def test_the_proxy_process_forwards_and_stops_on_sigterm(fake):
    folder = tempfile.mkdtemp(prefix="dock", dir="/tmp")
    path = os.path.join(folder, "docker.sock")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(fake.app())

    async def start() -> None:
        await runner.setup()
        await web.UnixSite(runner, path).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "opea_new_runtime.control.socket_proxy"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=proxy_environ(PROXY_HOST="127.0.0.1", PROXY_PORT=str(port), DOCKER_SOCKET=path))
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False) as client:
            while True:
                assert process.poll() is None, process.stdout.read().decode()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/_ping").text == "OK":
                        break
                assert time.monotonic() < deadline, "the proxy did not start"
                time.sleep(0.05)
            assert client.post("/v1.45/containers/x/exec").status_code == 403
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        shutil.rmtree(folder, ignore_errors=True)
    log = process.stdout.read().decode()
    assert "refused POST /v1.45/containers/x/exec" in log
