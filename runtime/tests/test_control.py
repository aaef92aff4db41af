"""opea_new_runtime.control: the instance control service's API over the fake engine, DockerEngine over a fake SDK.

The app runs over FakeEngine (opea_new_runtime.control.fake) through Starlette's test
client: keys, the launch / list / stop cycle, the ceiling, unknown services and ids,
bodies, engine failures. DockerEngine is driven with a stand-in for the Docker SDK's
client that records every call, to see exactly what a launch asks Docker for (and what it
never does); test_socket_proxy.py drives it through the socket proxy against a fake
Docker API. `python -m opea_new_runtime.control` runs in a subprocess: it refuses to start
without a key or with a bad setting, and serves (with Docker out of reach: 503) otherwise.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from opea_new_runtime import settings
from opea_new_runtime.control.app import MAX_BODY_BYTES, create_app
from opea_new_runtime.control.engine import (
    LAUNCH_OPTIONS,
    LAUNCHED_BY_LABEL,
    ONEOFF_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    CannotLaunch,
    DockerEngine,
    EngineFailed,
    EngineUnavailable,
    Instance,
    UnknownInstance,
)
from opea_new_runtime.control.fake import FakeEngine
from opea_new_runtime.control.settings import load_settings

KEY = "control-key-of-the-tests-0123456789"
PROJECT = "demo"
LLM_IMAGE = f"{PROJECT}/{PROJECT}-llm:latest"
SERVICES = f"llm={LLM_IMAGE},embedding={PROJECT}/{PROJECT}-embedding:latest"
AUTH = {"Authorization": f"Bearer {KEY}"}


def environ(**more: str) -> dict[str, str]:
    return {"CONTROL_PROJECT": PROJECT, "CONTROL_SERVICES": SERVICES, "CONTROL_MAX_INSTANCES": "3",
            "API_KEYS": KEY, **more}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(PROJECT, running={"llm": 1, "embedding": 1})


@contextlib.contextmanager
def control(engine: FakeEngine, **more: str) -> Iterator[TestClient]:
    with TestClient(create_app(environ(**more), engine), headers=AUTH) as client:
        yield client


# ---------------------------------------------------------------- settings


def test_services_are_a_comma_list_or_a_json_object_with_their_own_maximum():
    listed = load_settings(environ()).launchable()
    assert [(entry.service, entry.image, entry.max_instances) for entry in listed.values()] == [
        ("llm", LLM_IMAGE, 3), ("embedding", "demo/demo-embedding:latest", 3)]
    given = load_settings(environ(CONTROL_SERVICES='{"llm": {"image": "reg:5000/demo/demo-llm:1.0", '
                                                   '"max_instances": 8}, "tei": "demo/demo-tei@sha256:00ff"}',
                                  CONTROL_MAX_INSTANCES=""))
    assert {name: (entry.image, entry.max_instances) for name, entry in given.launchable().items()} == {
        "llm": ("reg:5000/demo/demo-llm:1.0", 8), "tei": ("demo/demo-tei@sha256:00ff", 5)}
    defaults = load_settings({"CONTROL_PROJECT": PROJECT, "CONTROL_SERVICES": "llm=x/y", "CONTROL_PORT": ""})
    assert (defaults.host, defaults.port, defaults.max_instances, defaults.docker_host) == (
        "127.0.0.1", 9900, 5, None)


@pytest.mark.parametrize(("more", "says"), [
    ({"CONTROL_PROJECT": ""}, "CONTROL_PROJECT: Value error, set it to the compose project name"),
    ({"CONTROL_PROJECT": "My Project"}, "CONTROL_PROJECT: Value error, the compose project name"),
    ({"CONTROL_SERVICES": ""}, "CONTROL_SERVICES: Value error, name at least one service"),
    ({"CONTROL_SERVICES": "llm"}, "'llm' is not service=image"),
    ({"CONTROL_SERVICES": "llm=a/b,llm=c/d"}, "llm is named twice"),
    ({"CONTROL_SERVICES": "llm=a b"}, "is not an image name"),
    ({"CONTROL_SERVICES": "-x=a/b"}, "'-x' is not a compose service name"),
    ({"CONTROL_SERVICES": '{"llm": '}, "not valid JSON"),
    ({"CONTROL_SERVICES": '{"llm": {"image": "a/b", "privileged": true}}'}, "unknown option(s) privileged"),
    ({"CONTROL_SERVICES": '{"llm": {"image": "a/b", "max_instances": 0}}'}, "max_instances must be an integer"),
    ({"CONTROL_MAX_INSTANCES": "0"}, "CONTROL_MAX_INSTANCES"),
    ({"CONTROL_PORT": "ninety"}, "CONTROL_PORT"),
    ({"CONTROL_STOP_TIMEOUT": "-1"}, "CONTROL_STOP_TIMEOUT"),
    ({"DOCKER_HOST": "docker-proxy:2375"}, "DOCKER_HOST: Value error, a Docker URL such as tcp://"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
])
def test_a_bad_setting_is_named(more, says):
    with pytest.raises(settings.SettingsError) as refused:
        load_settings(environ(**more))
    assert says in str(refused.value)
    without = {name: value for name, value in environ().items() if name != "CONTROL_SERVICES"}
    with pytest.raises(settings.SettingsError, match="CONTROL_SERVICES: Field required"):
        load_settings(without)


# ---------------------------------------------------------------- access


def test_every_v1_path_but_health_needs_the_key(engine):
    with TestClient(create_app(environ(), engine)) as client:
        assert client.get("/v1/health_check").json() == {"status": "ok"}
        assert client.get("/v1/health").status_code == 200
        llm = engine.instances("llm")[0]
        calls = [("GET", "/v1/models/available"), ("GET", "/v1/instances/llm"), ("POST", "/v1/instances/llm"),
                 ("DELETE", f"/v1/instances/{llm.id}"), ("GET", "/docs"), ("GET", "/openapi.json")]
        for method, path in calls:
            for headers, says in [({}, "needs an API key"), ({"Authorization": "Bearer wrong-key-0123456789abc"},
                                                              "not valid"), ({"Authorization": KEY}, "Bearer")]:
                refused = client.request(method, path, headers=headers)
                assert refused.status_code == 401, (method, path, headers)
                error = refused.json()["error"]
                assert error["status"] == 401 and says in error["detail"] and error["code"] == "invalid_api_key"
                assert refused.headers["www-authenticate"].startswith("Bearer") and KEY not in refused.text
        assert engine.launched == [] and engine.stopped == []  # nothing happened without the key
        assert client.get("/v1/models/available", headers=AUTH).status_code == 200


def test_without_a_key_the_app_answers_nothing_but_why(engine):
    no_key = {name: value for name, value in environ().items() if name != "API_KEYS"}
    with TestClient(create_app(no_key, engine)) as client:
        for path in ("/v1/health_check", "/v1/models/available", "/v1/instances/llm"):
            closed = client.get(path)
            assert closed.status_code == 503 and "holds no key" in closed.json()["error"]["detail"]
        assert client.post("/v1/instances/llm").status_code == 503
    assert engine.launched == []
    with TestClient(create_app(environ(API_KEYS="short"), engine)) as client:
        unusable = client.get("/v1/instances/llm")
    assert unusable.status_code == 503 and "at least 16" in unusable.json()["error"]["detail"]


# ---------------------------------------------------------------- launch, list, stop


def test_launch_list_and_stop_an_instance(engine):
    with control(engine) as client:
        before = client.get("/v1/instances/llm").json()
        assert [(entry["name"], entry["launched_by"]) for entry in before["instances"]] == [("demo-llm-1", "compose")]

        launched = client.post("/v1/instances/llm")
        assert launched.status_code == 201
        instance = launched.json()
        assert set(instance) == {"id", "name", "service", "image", "state", "health", "launched_by", "created"}
        assert len(instance["id"]) == 64 and int(instance["id"], 16) >= 0
        assert instance["service"] == "llm" and instance["image"] == LLM_IMAGE
        assert instance["launched_by"] == "control" and instance["name"].startswith("demo-llm-control-")
        assert engine.launched == [("llm", LLM_IMAGE)]

        listed = client.get("/v1/instances/llm").json()["instances"]
        assert [entry["id"] for entry in listed][1:] == [instance["id"]]
        available = {entry["name"]: entry for entry in client.get("/v1/models/available").json()["services"]}
        assert available["llm"] == {"name": "llm", "image": LLM_IMAGE, "max_instances": 3, "instances": 2,
                                    "launched": 1}
        assert available["embedding"]["instances"] == 1

        stopped = client.delete(f"/v1/instances/{instance['id']}")
        assert stopped.status_code == 200
        assert stopped.json()["id"] == instance["id"] and stopped.json()["state"] == "removed"
        assert [entry["id"] for entry in client.get("/v1/instances/llm").json()["instances"]] == [
            before["instances"][0]["id"]]
        again = client.delete(f"/v1/instances/{instance['id']}")
        assert again.status_code == 404 and "no container" in again.json()["error"]["detail"]


def test_a_short_or_upper_case_id_is_an_id(engine):
    with control(engine) as client:
        instance = client.post("/v1/instances/llm").json()
        stopped = client.delete(f"/v1/instances/{instance['id'][:12].upper()}")
    assert stopped.status_code == 200 and stopped.json()["id"] == instance["id"]


def test_the_maximum_counts_compose_instances_too(engine):
    with control(engine) as client:  # CONTROL_MAX_INSTANCES=3, compose runs one llm
        first, second = (client.post("/v1/instances/llm").json() for _ in range(2))
        refused = client.post("/v1/instances/llm")
        assert refused.status_code == 409
        detail = refused.json()["error"]["detail"]
        assert "llm already has 3 instance(s)" in detail and "CONTROL_MAX_INSTANCES=3" in detail
        assert len(engine.launched) == 2
        assert client.delete(f"/v1/instances/{first['id']}").status_code == 200
        assert client.post("/v1/instances/llm").status_code == 201  # a place came free
        assert second["id"] in [entry["id"] for entry in client.get("/v1/instances/llm").json()["instances"]]


def test_stopped_containers_do_not_count_and_a_service_may_have_its_own_maximum(engine):
    engine.add(Instance(id="ab" * 32, name="demo-llm-control-dead00", service="llm", image=LLM_IMAGE,
                        state="exited", health=None, launched_by="control", created="2026-01-01T00:00:00Z"))
    with control(engine, CONTROL_SERVICES=f'{{"llm": {{"image": "{LLM_IMAGE}", "max_instances": 2}}}}') as client:
        assert client.post("/v1/instances/llm").status_code == 201
        assert client.post("/v1/instances/llm").status_code == 409
        assert client.delete(f"/v1/instances/{'ab' * 32}").status_code == 200  # an exited one may be removed


class SlowEngine(FakeEngine):
    """Launches take a while: concurrent requests overlap in the engine unless the app takes them in turn."""

    def launch(self, service: str, image: str) -> Instance:
        time.sleep(0.05)
        return super().launch(service, image)


def test_concurrent_launches_never_pass_the_maximum():
    engine = SlowEngine(PROJECT, running={"llm": 1})
    with control(engine) as client, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/instances/llm").status_code, range(6)))
    assert sorted(answers) == [201, 201, 409, 409, 409, 409]
    assert len([instance for instance in engine.instances("llm") if instance.active]) == 3


def test_an_unknown_service_is_a_404_naming_the_known_ones(engine):
    with control(engine) as client:
        for answer in (client.get("/v1/instances/vllm"), client.post("/v1/instances/vllm")):
            assert answer.status_code == 404
            assert "does not launch a service named vllm" in answer.json()["error"]["detail"]
            assert "it launches: llm, embedding" in answer.json()["error"]["detail"]
        assert client.get("/v1/nowhere").status_code == 404
        assert client.put("/v1/instances/llm").status_code == 405
    assert engine.launched == []


def test_a_compose_instance_is_not_stopped_and_an_unknown_id_is_a_404(engine):
    compose = engine.instances("llm")[0]
    with control(engine) as client:
        refused = client.delete(f"/v1/instances/{compose.id}")
        assert refused.status_code == 409
        detail = refused.json()["error"]["detail"]
        assert "demo-llm-1 (llm) was started by compose" in detail and "only the instances it launched" in detail
        unknown = client.delete(f"/v1/instances/{'f' * 64}")
        assert unknown.status_code == 404 and f"no container {'f' * 64} in project demo" in unknown.text
    assert engine.stopped == [] and engine.instances("llm") == [compose]


def test_another_projects_container_is_unknown():
    engine = FakeEngine(PROJECT, running={"llm": 1})
    with control(engine) as client:
        foreign = FakeEngine("other", running={"llm": 1}).instances("llm")[0]
        assert client.delete(f"/v1/instances/{foreign.id}").status_code == 404


@pytest.mark.parametrize("bad", ["xyz", "0123456789a", "g" * 12, "0" * 65, "0123456789ab-", "%2e%2e"])
def test_an_id_that_is_not_12_to_64_hex_characters_is_a_422(engine, bad):
    with control(engine) as client:
        refused = client.delete(f"/v1/instances/{bad}")
    assert refused.status_code == 422 and "12 to 64 hexadecimal characters" in refused.json()["error"]["detail"]
    assert engine.stopped == []


@pytest.mark.parametrize(("content", "status", "says"), [
    (b'{"image": "alpine", "privileged": true}', 422, "takes no options"),
    (b"[]", 422, "takes no options"),
    (b"null", 422, "takes no options"),
    (b"not json", 400, "not JSON"),
    (b'{"a": NaN}', 400, "not JSON"),
    (b"{" + b" " * MAX_BODY_BYTES + b"}", 413, "larger than"),
])
def test_launch_takes_no_body_but_an_empty_object(engine, content, status, says):
    with control(engine) as client:
        refused = client.post("/v1/instances/llm", content=content, headers={"Content-Type": "application/json"})
        assert refused.status_code == status and says in refused.json()["error"]["detail"]
        assert engine.launched == []
        assert client.post("/v1/instances/llm", json={}).status_code == 201
        assert client.post("/v1/instances/llm", content=b"  \n").status_code == 201


def test_nothing_running_to_copy_is_a_409_that_says_to_start_the_project():
    with control(FakeEngine(PROJECT, running={})) as client:
        refused = client.post("/v1/instances/llm")
    assert refused.status_code == 409 and "docker compose up" in refused.json()["error"]["detail"]


@pytest.mark.parametrize(("failure", "status"), [
    (EngineUnavailable("cannot reach the Docker engine at tcp://docker-proxy:2375: is the socket proxy up?"), 503),
    (EngineFailed("the Docker engine at tcp://docker-proxy:2375 refused: socket proxy: a create with ..."), 502),
])
def test_an_engine_failure_is_a_502_or_503_with_its_message(engine, failure, status):
    engine.failure = failure
    with control(engine) as client:
        for method, path in [("GET", "/v1/models/available"), ("GET", "/v1/instances/llm"),
                             ("POST", "/v1/instances/llm"), ("DELETE", f"/v1/instances/{'a' * 64}")]:
            answer = client.request(method, path)
            assert answer.status_code == status, (method, path)
            assert answer.json() == {"error": {"node": None, "status": status, "detail": failure.message}}
        assert client.get("/v1/health_check").status_code == 200  # the process itself is fine


def test_a_bug_is_a_500_without_a_traceback(engine):
    class Broken(FakeEngine):
        def instances(self, service: str) -> list[Instance]:
            raise KeyError("Config")

    with TestClient(create_app(environ(), Broken(PROJECT)), headers=AUTH, raise_server_exceptions=False) as client:
        answer = client.get("/v1/instances/llm")
    assert answer.status_code == 500 and "KeyError" in answer.json()["error"]["detail"]
    assert "Traceback" not in answer.text


# ---------------------------------------------------------------- DockerEngine over a stand-in for the SDK


class Recorder:
    """A stand-in for docker.DockerClient: the calls DockerEngine makes, recorded; containers as Docker inspects."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.attrs: dict[str, dict[str, Any]] = {}
        self.images_present = {LLM_IMAGE}
        self.fail_start = False
        self.containers = Containers(self)
        self.images = Images(self)
        self.api = API(self)

    def add(self, name: str, labels: dict[str, str], *, state: str = "running", networks: tuple[str, ...] = (
            "demo_default",), host_config: dict[str, Any] | None = None, created: str = "2026-01-01T00:00:00Z"
            ) -> str:
        container_id = secrets.token_hex(32)
        self.attrs[container_id] = {
            "Id": container_id, "Name": f"/{name}", "Created": created,
            "State": {"Status": state, "Health": {"Status": "healthy"}},
            "Config": {"Image": LLM_IMAGE, "Labels": labels, "Env": ["LLM_PORT=9000", "PATH=/usr/bin"],
                       "Cmd": ["python", "-m", "llm"], "Entrypoint": None, "User": "1000", "WorkingDir": "/app",
                       "Healthcheck": {"Test": ["CMD", "python", "-c", "1"], "Interval": 1_000_000_000}},
            "HostConfig": host_config or {},
            "NetworkSettings": {"Networks": {network: {} for network in networks}}}
        return container_id


class Container:
    def __init__(self, recorder: Recorder, container_id: str) -> None:
        self.recorder = recorder
        self.id = container_id

    @property
    def attrs(self) -> dict[str, Any]:
        return self.recorder.attrs[self.id]

    def start(self) -> None:
        import docker.errors

        self.recorder.calls.append(("start", self.id))
        if self.recorder.fail_start:
            raise docker.errors.APIError("500 Server Error", explanation="cannot start: port in use")
        self.attrs["State"]["Status"] = "running"

    def reload(self) -> None:
        self.recorder.calls.append(("reload", self.id))

    def stop(self, timeout: int) -> None:
        self.recorder.calls.append(("stop", self.id, timeout))
        self.attrs["State"]["Status"] = "exited"

    def remove(self, force: bool = False) -> None:
        self.recorder.calls.append(("remove", self.id, force))
        del self.recorder.attrs[self.id]


class Containers:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[Container]:
        self.recorder.calls.append(("list", all, filters))
        wanted = [label.split("=", 1) for label in (filters or {}).get("label", [])]
        status = (filters or {}).get("status")
        return [Container(self.recorder, container_id) for container_id, attrs in self.recorder.attrs.items()
                if builtins.all(attrs["Config"]["Labels"].get(key) == value for key, value in wanted)
                and (all or attrs["State"]["Status"] == "running") and (status is None or
                                                                         attrs["State"]["Status"] == status)]

    def get(self, container_id: str) -> Container:
        import docker.errors

        self.recorder.calls.append(("get", container_id))
        found = [key for key in self.recorder.attrs if key.startswith(container_id)]
        if len(found) != 1:
            raise docker.errors.NotFound(f"No such container: {container_id}")
        return Container(self.recorder, found[0])

    def create(self, image: str, **options: Any) -> Container:
        self.recorder.calls.append(("create", image, options))
        container_id = secrets.token_hex(32)
        self.recorder.attrs[container_id] = {
            "Id": container_id, "Name": f"/{options['name']}", "Created": "2026-01-02T00:00:00Z",
            "State": {"Status": "created"}, "Config": {"Image": image, "Labels": options["labels"]},
            "HostConfig": {}, "NetworkSettings": {"Networks": {}}}
        return Container(self.recorder, container_id)


class Images:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def get(self, name: str) -> object:
        import docker.errors

        self.recorder.calls.append(("image", name))
        if name not in self.recorder.images_present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return object()


class API:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def create_endpoint_config(self, aliases: list[str]) -> dict[str, Any]:
        return {"Aliases": aliases}

    def connect_container_to_network(self, container: str, network: str, aliases: list[str]) -> None:
        self.recorder.calls.append(("connect", container, network, aliases))


def compose(service: str = "llm", project: str = PROJECT) -> dict[str, str]:
    return {PROJECT_LABEL: project, SERVICE_LABEL: service, ONEOFF_LABEL: "False"}


@pytest.fixture
def recorder() -> Recorder:
    import docker  # noqa: F401  the control extra's SDK: these tests need it installed, they never skip
    return Recorder()


def docker_engine(recorder: Recorder) -> DockerEngine:
    return DockerEngine(PROJECT, connect=lambda: recorder, stop_timeout=4)


def test_a_launch_passes_only_the_allowlisted_options(recorder):
    template = recorder.add("demo-llm-1", compose(), networks=("demo_default", "demo_back"), host_config={
        "Privileged": True, "Binds": ["/models:/models"], "CapAdd": ["SYS_ADMIN"], "NetworkMode": "demo_default",
        "PortBindings": {"9000/tcp": [{"HostPort": "9000"}]}, "Devices": [{"PathOnHost": "/dev/dri"}]})
    launched = docker_engine(recorder).launch("llm", LLM_IMAGE)

    creates = [call for call in recorder.calls if call[0] == "create"]
    assert len(creates) == 1
    _, image, options = creates[0]
    assert image == LLM_IMAGE and set(options) <= LAUNCH_OPTIONS
    assert options["labels"] == {PROJECT_LABEL: PROJECT, SERVICE_LABEL: "llm", ONEOFF_LABEL: "True",
                                 LAUNCHED_BY_LABEL: "control"}
    assert options["environment"] == ["LLM_PORT=9000", "PATH=/usr/bin"]
    assert options["command"] == ["python", "-m", "llm"] and options["user"] == "1000"
    assert options["working_dir"] == "/app" and options["healthcheck"]["Test"][0] == "CMD"
    assert options["network"] == "demo_default"
    assert options["networking_config"] == {"demo_default": {"Aliases": ["llm"]}}
    for never in ("privileged", "volumes", "binds", "mounts", "cap_add", "devices", "ports", "network_mode",
                  "pid_mode", "ipc_mode", "security_opt", "publish_all_ports", "detach", "remove"):
        assert never not in options
    connects = [call for call in recorder.calls if call[0] == "connect"]
    assert connects == [("connect", launched.id, "demo_back", ["llm"])]
    order = [call[0] for call in recorder.calls]
    assert order.index("image") < order.index("create") < order.index("connect") < order.index("start")
    assert launched.launched_by == "control" and launched.state == "running" and launched.id != template


def test_a_launch_copies_compose_instance_and_skips_one_offs(recorder):
    recorder.add("demo-llm-run-abc", {**compose(), ONEOFF_LABEL: "True"}, networks=("elsewhere",),
                 created="2025-01-01T00:00:00Z")  # `docker compose run llm ...`: a task, not an instance
    recorder.add("demo-llm-1", compose())
    docker_engine(recorder).launch("llm", LLM_IMAGE)
    options = next(call[2] for call in recorder.calls if call[0] == "create")
    assert options["network"] == "demo_default"
    assert [instance.name for instance in docker_engine(recorder).instances("llm")] == [
        "demo-llm-1", options["name"]]


@pytest.mark.parametrize(("prepare", "says"), [
    (lambda recorder: None, "no instance of llm is running in project demo"),
    (lambda recorder: recorder.add("demo-llm-1", compose(), state="exited"), "no instance of llm is running"),
    (lambda recorder: recorder.add("demo-llm-1", compose(project="other")), "no instance of llm is running"),
    (lambda recorder: recorder.add("demo-llm-1", compose(), networks=("host",)), "on no network of the project"),
    (lambda recorder: recorder.attrs[recorder.add("demo-llm-1", compose())].update(
        Mounts=[{"Type": "volume", "Name": "demo_documents", "Destination": "/data"}]),
     "keeps data in /data, which a launched instance would not have"),
    (lambda recorder: recorder.images_present.clear() or recorder.add("demo-llm-1", compose()),
     "is not on the Docker engine: build it first"),
])
def test_a_launch_that_cannot_be_made_is_refused_before_any_create(recorder, prepare, says):
    prepare(recorder)
    with pytest.raises(CannotLaunch) as refused:
        docker_engine(recorder).launch("llm", LLM_IMAGE)
    assert says in refused.value.message
    assert not [call for call in recorder.calls if call[0] == "create"]


def test_a_failed_start_leaves_nothing_behind_and_is_a_502(recorder):
    recorder.add("demo-llm-1", compose())
    recorder.fail_start = True
    with pytest.raises(EngineFailed) as failed:
        docker_engine(recorder).launch("llm", LLM_IMAGE)
    assert "refused: cannot start: port in use" in failed.value.message
    assert [call for call in recorder.calls if call[0] == "remove"][0][2] is True
    assert [attrs["Name"] for attrs in recorder.attrs.values()] == ["/demo-llm-1"]


def test_stop_checks_the_project_then_stops_with_the_timeout_and_removes(recorder):
    ours = recorder.add("demo-llm-control-aaaaaa", {**compose(), ONEOFF_LABEL: "True", LAUNCHED_BY_LABEL: "control"})
    theirs = recorder.add("other-llm-1", compose(project="other"))
    engine = docker_engine(recorder)
    for unknown in (theirs, "f" * 64):
        with pytest.raises(UnknownInstance, match="there is no container .* in project demo"):
            engine.stop(unknown)
    assert engine.get(ours[:12]).launched_by == "control"
    stopped = engine.stop(ours[:12])
    assert stopped.id == ours and stopped.state == "removed"
    assert [call for call in recorder.calls if call[0] in ("stop", "remove")] == [
        ("stop", ours, 4), ("remove", ours, False)]
    assert theirs in recorder.attrs


def test_dockers_failures_become_messages_with_their_status(recorder):
    import docker.errors
    import requests.exceptions

    engine = docker_engine(recorder)
    cases = [
        (requests.exceptions.ConnectionError("refused"), EngineUnavailable, "cannot reach the Docker engine"),
        (requests.exceptions.ReadTimeout("slow"), EngineUnavailable, "did not answer in time"),
        (docker.errors.APIError("403", explanation="socket proxy: a create with HostConfig.Binds is not forwarded"),
         EngineFailed, "refused: socket proxy: a create with HostConfig.Binds"),
        (docker.errors.DockerException("Error while fetching server API version"), EngineUnavailable,
         "Error while fetching server API version"),
        (docker.errors.NotFound("No such container: x"), UnknownInstance, "No such container"),
    ]
    for error, kind, says in cases:
        translated = engine.translate(error)
        assert type(translated) is kind and says in translated.message
    assert (EngineUnavailable.status, EngineFailed.status, UnknownInstance.status) == (503, 502, 404)


def test_the_client_is_made_on_first_use_and_again_after_a_failure(recorder):
    import requests.exceptions

    attempts: list[int] = []

    def connect() -> Recorder:
        attempts.append(1)
        if len(attempts) == 1:
            raise requests.exceptions.ConnectionError("the proxy is not up yet")
        return recorder

    engine = DockerEngine(PROJECT, connect=connect, environ={"DOCKER_HOST": "tcp://docker-proxy:2375"})
    assert attempts == []
    with pytest.raises(EngineUnavailable, match="tcp://docker-proxy:2375"):
        engine.instances("llm")
    assert engine.instances("llm") == [] and engine.instances("llm") == [] and len(attempts) == 2


def test_the_app_over_docker_engine_answers_as_over_the_fake(recorder):
    recorder.add("demo-llm-1", compose())
    with TestClient(create_app(environ(), docker_engine(recorder)), headers=AUTH) as client:
        instance = client.post("/v1/instances/llm").json()
        assert [entry["health"] for entry in client.get("/v1/instances/llm").json()["instances"]][0] == "healthy"
        compose_id = client.get("/v1/instances/llm").json()["instances"][0]["id"]
        assert client.delete(f"/v1/instances/{compose_id}").status_code == 409
        assert client.delete(f"/v1/instances/{instance['id']}").status_code == 200


# ---------------------------------------------------------------- python -m opea_new_runtime.control


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_environ(**more: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT", "VIRTUAL_ENV")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, "PYTHONUNBUFFERED": "1",
            **environ(), **more}


@pytest.mark.parametrize(("more", "says"), [
    ({"API_KEYS": ""}, "control: API_KEYS (or API_KEYS_FILE) holds no key"),
    ({"API_KEYS": "short"}, "control: API_KEYS: a key must be at least 16"),
    ({"CONTROL_SERVICES": "llm"}, "control: CONTROL_SERVICES: Value error, 'llm' is not service=image"),
])
def test_it_refuses_to_start_without_a_key_or_with_a_bad_setting(more, says):
    started = subprocess.run([sys.executable, "-m", "opea_new_runtime.control"], capture_output=True, text=True,
                             timeout=60, env=process_environ(CONTROL_PORT=str(free_port()), **more))
    assert started.returncode == 2, started.stderr
    assert says in started.stderr and "Traceback" not in started.stderr
    assert len(started.stderr.strip().splitlines()) == 1 and "short" not in started.stderr


def test_it_serves_says_when_docker_is_out_of_reach_and_stops_on_sigterm():
    port, nobody = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "opea_new_runtime.control"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=process_environ(
                                   CONTROL_PORT=str(port), DOCKER_HOST=f"tcp://127.0.0.1:{nobody}"))
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
            while True:
                assert process.poll() is None, process.stdout.read().decode()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v1/health_check").status_code == 200:
                        break
                assert time.monotonic() < deadline, "the control service did not start"
                time.sleep(0.05)
            assert client.get("/v1/instances/llm").status_code == 401
            down = client.get("/v1/models/available", headers=AUTH)
            assert down.status_code == 503
            assert f"cannot reach the Docker engine at tcp://127.0.0.1:{nobody}" in down.json()["error"]["detail"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    log = process.stdout.read().decode()
    assert KEY not in log and "Traceback" not in log
