"""Issue 13's proof: a generated project scaled out, in the real engine (DESIGN.md §12).

A chat pipeline whose one node, `llm`, runs 3 replicas (LLM_REPLICAS=3 in the
project's .env, as .env.example says), no web UI (the front door routes / to
the megaservice then), rendered once by `opea-new megaservice --spec` (lite
runtime) and started once (`up --build --wait`). Only the front door is
published (127.0.0.1:NGINX_PORT): every request goes through it, and what the
containers know is read inside them (`docker exec ... python -c` on their own
127.0.0.1), never by sending anything to a container's address.

* requests through the megaservice reach all 3 replicas, about evenly: each
  replica's own count (its /metrics, read inside it) and the megaservice's
  per-instance count (GET /v1/services) agree;
* one replica killed (`docker kill`) under a bounded load (200 requests, 8 at a
  time, paced over a few discovery periods) loses no request: each one its
  instance refused was sent again to another; the megaservice shows the killed
  instance set aside (or dropped, once Docker's DNS stopped answering it);
* the replica started again (`docker start`) answers requests again within the
  discovery TTL (MEGA_SERVICE_DISCOVERY_TTL, 5 s by default) of answering its
  health check.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from engine import ComposeProject, Engine, EngineError
from test_docker_projects import generate

from tests.conftest import free_ports

pytestmark = pytest.mark.docker

REPLICAS = 3
DISCOVERY_TTL = 5.0  # MEGA_SERVICE_DISCOVERY_TTL's default (compose.yaml passes it from .env; this one sets none)
SET_ASIDE = 5.0  # MEGA_SERVICE_SET_ASIDE's default
LOAD_REQUESTS = 200
LOAD_CONCURRENCY = 8
LOAD_RATE = 25.0  # requests per second: 200 of them last about 8 s, more than one discovery period
LOAD_TIMEOUT = 60.0  # seconds the whole load may take
KILL_AFTER = 40  # requests answered before the replica is killed
QUESTION = {"messages": "What is OPEA?", "stream": False}


def scale_spec(name: str) -> dict[str, Any]:
    llm, mega = free_ports(2)
    return {
        "name": name,
        "description": "One llm node at 3 replicas behind the megaservice (the docker tier).",
        "megaservice": {"port": mega, "endpoint": "/v1/chatqna", "protocol": "chat", "ui": False},
        "services": [{"name": "llm", "type": "llm", "port": llm}],
    }


@dataclass
class Scaled:
    """The scaled project, and what the tests read of it."""

    spec: dict[str, Any]
    nginx_port: int
    compose: ComposeProject
    client: httpx.Client
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        return self.compose.engine

    @property
    def url(self) -> str:
        """The pipeline's endpoint through the front door."""
        return f"http://127.0.0.1:{self.nginx_port}{self.spec['megaservice']['endpoint']}"

    @property
    def llm_port(self) -> int:
        return self.spec["services"][0]["port"]

    def replicas(self) -> list[str]:
        """The llm containers' ids, running or not."""
        return self.compose.compose("ps", "--all", "--quiet", "llm", timeout=60).stdout.split()

    def address(self, container: str) -> str:
        """host:port of a replica as the megaservice names it (read from the engine, never called)."""
        ip = self.engine.docker("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                                container).stdout.strip()
        return f"{ip}:{self.llm_port}"

    def inside(self, container: str, url: str, timeout: float = 30) -> str:
        """GET `url` (on the container's own 127.0.0.1) from inside a container."""
        probe = ("import sys, urllib.request as r; "
                 "print(r.build_opener(r.ProxyHandler({})).open(sys.argv[1], timeout=5).read().decode())")
        return self.engine.docker("exec", container, "python", "-c", probe, url, timeout=timeout).stdout

    def answered(self, container: str) -> int:
        """Completions a replica answered, by its own count (its /metrics, read inside it)."""
        metrics = self.inside(container, f"http://127.0.0.1:{self.llm_port}/metrics")
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith("opea_service_requests_total{") and 'method="POST"' in line
                       and 'status="200"' in line))

    def instances(self) -> dict[str, dict[str, Any]]:
        """The megaservice's view of llm's instances (GET /v1/services inside it), by address."""
        megaservice = self.compose.compose("ps", "--quiet", "megaservice", timeout=60).stdout.split()[0]
        services = json.loads(self.inside(megaservice, f"http://127.0.0.1:{self.spec['megaservice']['port']}"
                                                        "/v1/services"))["services"]
        llm = next(service for service in services if service["name"] == "llm")
        assert llm["discovery"] == "dns", llm
        return {instance["address"]: instance for instance in llm["instances"]}

    def ask(self) -> int:
        try:
            return self.client.post(self.url, json=QUESTION).status_code
        except httpx.HTTPError:
            return 0


@pytest.fixture(scope="module")
def scaled(docker_engine: Engine, tmp_path_factory) -> Iterator[Scaled]:
    spec = scale_spec("scale")
    nginx_port = free_ports(1)[0]
    directory = generate(spec, tmp_path_factory.mktemp("scale"), "lite")
    assert "LLM_REPLICAS=1" in (directory / ".env.example").read_text()
    (directory / ".env").write_text(f"LLM_REPLICAS={REPLICAS}\nNGINX_PORT={nginx_port}\n")
    project = ComposeProject(docker_engine, directory, "t-scale")
    with httpx.Client(timeout=30, trust_env=False,  # 127.0.0.1 only, never through a proxy
                      limits=httpx.Limits(max_connections=LOAD_CONCURRENCY)) as client:
        scaled = Scaled(spec, nginx_port, project, client)
        try:
            started = time.monotonic()
            project.up(wait_timeout=300, build=True)
            docker_engine.notes.append(f"scale: up --build --wait {time.monotonic() - started:.1f}s "
                                       f"({REPLICAS} llm replicas)")
            yield scaled
        finally:
            project.down()


def test_only_the_front_door_is_published_and_llm_runs_3_replicas(scaled: Scaled):
    output = scaled.compose.compose("ps", "--all", "--format", "json", timeout=60).stdout
    containers = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert sorted(entry["Service"] for entry in containers) == ["llm"] * REPLICAS + ["megaservice", "nginx"]
    for entry in containers:
        assert (entry["State"], entry["Health"]) == ("running", "healthy"), entry
        published = {(publisher["URL"], publisher["PublishedPort"])
                     for publisher in entry["Publishers"] if publisher["PublishedPort"]}
        assert published == ({("127.0.0.1", scaled.nginx_port)} if entry["Service"] == "nginx" else set()), entry


def test_requests_through_the_megaservice_reach_every_replica(scaled: Scaled):
    replicas = scaled.replicas()
    assert len(replicas) == REPLICAS
    before = {container: scaled.answered(container) for container in replicas}
    known = scaled.instances()
    sent = 30
    statuses = [scaled.ask() for _ in range(sent)]
    assert statuses == [200] * sent
    counts = {container: scaled.answered(container) - before[container] for container in replicas}
    assert sum(counts.values()) == sent, counts
    # one at a time, each replica has nothing outstanding: round robin, so each gets a third
    assert all(count >= sent // REPLICAS - 2 for count in counts.values()), counts
    # the megaservice counted the same, per instance
    instances = scaled.instances()
    seen = {container: instances[scaled.address(container)]["requests"]
            - known.get(scaled.address(container), {}).get("requests", 0) for container in replicas}
    assert seen == counts, (seen, counts)
    assert {instance["state"] for instance in instances.values()} == {"healthy"}, instances
    scaled.engine.notes.append("scale: 30 sequential requests per replica (its /metrics) "
                               f"{sorted(counts.values())}, per instance (/v1/services) {sorted(seen.values())}")


def test_a_killed_replica_loses_no_request_and_is_used_again_once_restarted(scaled: Scaled):
    replicas = scaled.replicas()
    victim, survivors = replicas[0], replicas[1:]
    victim_address = scaled.address(victim)
    before = {container: scaled.answered(container) for container in survivors}

    # ---- the load: LOAD_REQUESTS paced requests, LOAD_CONCURRENCY at a time; the victim killed mid-way
    answered = 0
    counted = threading.Lock()
    killed = threading.Event()
    stop_watching = threading.Event()
    seen_states: list[str] = []  # the victim's state in /v1/services during the outage ("gone": not listed)
    started = time.monotonic()

    def one(index: int) -> tuple[int, float]:
        nonlocal answered
        time.sleep(max(0.0, started + index / LOAD_RATE - time.monotonic()))
        sent = time.monotonic()
        status = scaled.ask()
        with counted:
            answered += 1
        return status, time.monotonic() - sent

    def kill() -> None:
        while answered < KILL_AFTER and time.monotonic() - started < LOAD_TIMEOUT:
            time.sleep(0.01)
        scaled.engine.docker("kill", victim, timeout=30)
        killed.set()
        while not stop_watching.is_set():  # what the megaservice makes of it, until the load is over
            state = scaled.instances().get(victim_address, {}).get("state", "gone")
            seen_states.append(state)
            time.sleep(0.3)

    watcher = threading.Thread(target=kill, daemon=True)
    watcher.start()
    with concurrent.futures.ThreadPoolExecutor(LOAD_CONCURRENCY) as pool:
        futures = [pool.submit(one, index) for index in range(LOAD_REQUESTS)]
        results = [future.result(timeout=LOAD_TIMEOUT) for future in futures]
    load_seconds = time.monotonic() - started
    stop_watching.set()
    watcher.join(timeout=30)

    assert killed.is_set(), "the replica was not killed during the load"
    lost = [status for status, _ in results if status != 200]
    assert lost == [], f"{len(lost)} of {LOAD_REQUESTS} requests failed: {lost}"
    assert load_seconds < LOAD_TIMEOUT
    # once the megaservice knew, the victim stayed out: set aside (it refused) or gone (Docker's DNS dropped it,
    # which can come first), never used as healthy again while it was down
    left_out = [index for index, state in enumerate(seen_states) if state in ("set_aside", "gone")]
    assert left_out, seen_states
    assert set(seen_states[left_out[0]:]) <= {"set_aside", "gone"}, seen_states
    killed_state = scaled.engine.docker("inspect", "--format", "{{.State.Status}}", victim).stdout.strip()
    assert killed_state == "exited"  # `docker kill` is a manual stop: restart: unless-stopped leaves it down
    after_kill = {container: scaled.answered(container) - before[container] for container in survivors}
    slowest = max(seconds for _, seconds in results)

    # ---- started again: the megaservice sends it requests again, within the discovery TTL of it answering
    scaled.engine.docker("start", victim, timeout=60)
    restarted = time.monotonic()
    listening = used = None
    while time.monotonic() - restarted < 60:
        if listening is None:
            try:
                scaled.inside(victim, f"http://127.0.0.1:{scaled.llm_port}/v1/health_check", timeout=10)
                listening = time.monotonic()
            except EngineError:  # not listening yet
                pass
        assert scaled.ask() == 200  # a light load meanwhile: requests go on being answered
        if listening is not None and scaled.answered(victim) > 0:  # a new process: its count started at 0
            used = time.monotonic()
            break
        time.sleep(0.2)
    assert listening is not None, "the restarted replica never answered its health check"
    assert used is not None, "the restarted replica got no request within 60 s"
    recovery = used - listening
    scaled.engine.notes.append(
        f"scale: {LOAD_REQUESTS} requests ({LOAD_CONCURRENCY} concurrent, {load_seconds:.1f}s, slowest "
        f"{slowest:.2f}s) with one replica killed after {KILL_AFTER}: {len(lost)} lost; survivors answered "
        f"{sorted(after_kill.values())}; the victim seen {sorted(set(seen_states))}; restarted: listening after "
        f"{listening - restarted:.1f}s, used again {recovery:.1f}s later")
    # the TTL for the megaservice to resolve the name again, a set-aside if it tried the replica before it
    # listened, and the time our probes take
    assert recovery <= DISCOVERY_TTL + SET_ASIDE + 3, recovery
    instances = scaled.instances()
    assert len(instances) == REPLICAS, instances
    assert instances[scaled.address(victim)]["state"] == "healthy", instances
