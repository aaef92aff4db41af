"""opea_new_runtime.instances: every instance of a node, which one answers, and what happens when one fails.

Unit tests drive the balancer and the resolver with a fake clock and a fake resolver (no DNS server runs
here); `localhost` is resolved for real. The integration tests run a real megaservice process on the
runtime under test, whose llm node lists three real stub processes on free ports of 127.0.0.1 in
LLM_SERVICE_INSTANCES; every process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from runtime_under_test import RUNTIME

from opea_new_runtime import instances
from opea_new_runtime.nodes import Node
from opea_new_runtime.settings import MegaserviceSettings, SettingsError, load
from opea_new_runtime.testing import free_ports


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool_of(addresses: list[tuple[str, int]], clock: Clock | None = None, **options) -> instances.Instances:
    return instances.Instances("llm", 9000, static=addresses, clock=clock or Clock(), **options)


def choose(pool: instances.Instances, exclude=None, *, release: bool = False) -> instances.Instance | None:
    chosen = asyncio.run(pool.choose(exclude))
    if release and chosen is not None:
        pool.release(chosen)  # a call that is over at once
    return chosen


THREE = [("10.0.0.1", 9000), ("10.0.0.2", 9000), ("10.0.0.3", 9000)]

# ---------------------------------------------------------------- the variable


def test_the_instances_variable_is_parsed_and_checked():
    node = Node("tei-embedding", "embedding", 6000, "/embed")
    assert node.instances_variable == "TEI_EMBEDDING_SERVICE_INSTANCES"
    assert node.instances({}) is None and node.instances({node.instances_variable: " "}) is None
    listed = {node.instances_variable: "a:1, b:2,[::1]:3 a:1"}
    assert node.instances(listed) == (("a", 1), ("b", 2), ("::1", 3))
    for bad in ("a", "a:0", "a:70000", ":9000", "::1:9000", "http://a:1", "a:b"):
        with pytest.raises(SettingsError, match="TEI_EMBEDDING_SERVICE_INSTANCES: .* is not host:port"):
            node.instances({node.instances_variable: bad})


def test_the_settings_have_defaults_and_are_checked(monkeypatch):
    for name in ("MEGA_SERVICE_DISCOVERY_TTL", "MEGA_SERVICE_SET_ASIDE", "MEGA_SERVICE_SET_ASIDE_MAX"):
        monkeypatch.delenv(name, raising=False)
    config = load(MegaserviceSettings)
    assert (config.discovery_ttl, config.set_aside, config.set_aside_max) == (5.0, 5.0, 60.0)
    monkeypatch.setenv("MEGA_SERVICE_DISCOVERY_TTL", "0")
    with pytest.raises(SettingsError, match="MEGA_SERVICE_DISCOVERY_TTL"):
        load(MegaserviceSettings)


# ---------------------------------------------------------------- choosing


def test_idle_instances_take_turns():
    pool = pool_of(THREE)
    chosen = []
    for _ in range(6):
        instance = choose(pool)
        chosen.append(instance.host)
        pool.release(instance)
    assert chosen == ["10.0.0.1", "10.0.0.2", "10.0.0.3"] * 2


def test_the_instance_with_fewest_outstanding_calls_is_chosen():
    pool = pool_of(THREE)
    long_streams = [choose(pool), choose(pool)]  # 10.0.0.1 and .2 stay busy
    assert [choose(pool).host for _ in range(1)] == ["10.0.0.3"]
    third = pool.instances[2]
    pool.release(third)  # .3 finished: it has the fewest again
    assert choose(pool).host == "10.0.0.3"
    assert [instance.outstanding for instance in pool.instances] == [1, 1, 1]
    assert len(long_streams) == 2


def test_a_refusing_instance_is_set_aside_longer_each_time_then_tried_once():
    clock = Clock()
    pool = pool_of(THREE, clock, set_aside=5, set_aside_max=12)
    bad = pool.instances[0]
    pool.failed(bad)
    assert bad.state() == "set_aside" and bad.set_aside_until == clock.now + 5
    assert {choose(pool, release=True).host for _ in range(4)} == {"10.0.0.2", "10.0.0.3"}
    clock.now += 5
    probe = choose(pool, release=True)
    assert probe is bad and bad.probing
    assert choose(pool, release=True) is not bad  # one call tries it, not every call
    pool.failed(bad)
    assert bad.set_aside_until == clock.now + 10
    clock.now += 10
    assert bad in [choose(pool, release=True) for _ in range(3)]  # its turn comes
    pool.failed(bad)
    assert bad.set_aside_until == clock.now + 12  # capped
    clock.now += 12
    assert bad in [choose(pool, release=True) for _ in range(3)]
    pool.succeeded(bad)
    assert bad.state() == "healthy" and bad.failures == 3


def test_when_every_instance_is_set_aside_the_least_recently_failed_is_still_tried():
    clock = Clock()
    pool = pool_of(THREE, clock)
    for index in (1, 0, 2):
        pool.failed(pool.instances[index])
        clock.now += 1
    assert choose(pool).host == "10.0.0.2"
    assert choose(pool, exclude=pool.instances[1]).host == "10.0.0.1"


def test_one_instance_has_no_other_to_retry():
    pool = pool_of([("10.0.0.1", 9000)])
    only = choose(pool)
    assert choose(pool, exclude=only) is None


# ---------------------------------------------------------------- discovery


class Resolver:
    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked += 1
        answer = self.answers[min(self.asked, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_name_resolves_to_every_replica_again_after_the_ttl():
    clock = Clock()
    resolver = Resolver(["172.18.0.3", "172.18.0.4", "172.18.0.3"], ["172.18.0.4", "172.18.0.5"],
                        OSError("temporary failure in name resolution"))
    pool = instances.Instances("llm", 9000, ttl=5, clock=clock, resolver=resolver)

    async def scenario() -> None:
        assert [i.address for i in await pool.current()] == ["172.18.0.3:9000", "172.18.0.4:9000"]
        kept = pool.instances[1]
        kept.requests = 7
        clock.now += 4
        await pool.current()
        assert resolver.asked == 1  # within the TTL: not asked again
        clock.now += 1
        assert [i.address for i in await pool.current()] == ["172.18.0.4:9000", "172.18.0.5:9000"]
        assert pool.instances[0] is kept and kept.requests == 7  # what was known of it stays
        clock.now += 5
        assert len(await pool.current()) == 2  # the resolver failed: the instances known stay

    asyncio.run(scenario())
    assert pool.discovery == "dns"


def test_ipv4_answers_win_and_one_address_stays_the_name():
    dual = instances.Instances("llm", 9000, clock=Clock(),
                               resolver=Resolver(["fd00::3", "172.18.0.3", "fd00::4", "172.18.0.4"]))
    single = instances.Instances("llm", 9000, clock=Clock(), resolver=Resolver(["172.18.0.3"]))
    assert [i.address for i in asyncio.run(dual.current())] == ["172.18.0.3:9000", "172.18.0.4:9000"]
    assert [i.address for i in asyncio.run(single.current())] == ["llm:9000"]
    v6 = instances.Instances("llm", 9000, clock=Clock(), resolver=Resolver(["fd00::3", "fd00::4"]))
    assert [i.address for i in asyncio.run(v6.current())] == ["[fd00::3]:9000", "[fd00::4]:9000"]
    assert [i.base for i in v6.instances] == ["http://[fd00::3]:9000", "http://[fd00::4]:9000"]


def test_an_ip_literal_is_never_resolved():
    resolver = Resolver(["10.9.9.9", "10.9.9.8"])
    pool = instances.Instances("127.0.0.1", 9000, clock=Clock(), resolver=resolver)
    assert [i.address for i in asyncio.run(pool.current())] == ["127.0.0.1:9000"]
    assert resolver.asked == 0 and pool.discovery == "address"


def test_localhost_resolves_for_real():
    async def scenario() -> list[str]:
        assert "127.0.0.1" in await instances.resolve("localhost", 9000)
        pool = instances.Instances("localhost", 9000)
        return [instance.host for instance in await pool.current()]

    hosts = asyncio.run(scenario())
    assert hosts == ["localhost"] or "127.0.0.1" in hosts  # one address stays the name


# ---------------------------------------------------------------- a real megaservice, three real instances

STUB = textwrap.dedent("""
    import asyncio, json, sys
    from aiohttp import web

    calls = 0

    async def health(request):
        return web.json_response({"status": "healthy"})

    async def count(request):
        return web.json_response({"calls": calls})

    async def chat(request):
        global calls
        body = await request.json()
        calls += 1
        text = json.dumps(body)
        if not body.get("stream"):
            await asyncio.sleep(0.02)
            return web.json_response({"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "answer from " + sys.argv[1]}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "part "}}]}
        await response.write(("data: " + json.dumps(chunk) + "\\n\\n").encode())
        if "cut" in text:
            await asyncio.sleep(0.1)
            request.transport.abort()  # the stream breaks off mid-way
            return response
        await response.write(b"data: [DONE]\\n\\n")
        return response

    app = web.Application()
    app.add_routes([web.get("/v1/health_check", health), web.get("/count", count),
                    web.post("/v1/chat/completions", chat)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
""")

MEGA = textwrap.dedent("""
    from opea_new_runtime.{runtime} import ServiceOrchestrator, ServiceType, remote_service
    from opea_new_runtime.megaservice import Megaservice, serve

    def build():
        orchestrator = ServiceOrchestrator()
        orchestrator.add(remote_service("llm", ServiceType.LLM, port=1, endpoint="/v1/chat/completions"))
        return orchestrator

    serve(Megaservice(name="scaled", port={port}, endpoint="/v1/chatqna", protocol="chat"), build)
""")

KEY = "instances-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def wait_for(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, process.stdout.read() if process.stdout else "exited"
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


class Stubs:
    def __init__(self, folder: Path, ports: list[int]) -> None:
        self.script = folder / "stub.py"
        self.script.write_text(STUB)
        self.folder = folder
        self.ports = ports
        self.processes: dict[int, subprocess.Popen] = {}

    def start(self, port: int) -> None:
        log = open(self.folder / f"stub-{port}.log", "w")  # noqa: SIM115 - closed with the process
        self.processes[port] = subprocess.Popen([sys.executable, str(self.script), str(port)], stdout=log,
                                                stderr=subprocess.STDOUT)
        wait_for(f"http://127.0.0.1:{port}/v1/health_check", self.processes[port])

    def calls(self, port: int) -> int:
        return httpx.get(f"http://127.0.0.1:{port}/count", trust_env=False).json()["calls"]

    def stop(self, port: int) -> None:
        stop(self.processes.pop(port))


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("instances")
    *stub_ports, mega_port = free_ports(4)
    stubs = Stubs(folder, stub_ports)
    script = folder / "mega.py"
    script.write_text(MEGA.format(runtime=RUNTIME, port=mega_port))
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("LLM_", "MEGA_SERVICE_"))}
    environ.update({"LLM_SERVICE_INSTANCES": ",".join(f"127.0.0.1:{port}" for port in stub_ports),
                    "MEGA_SERVICE_SET_ASIDE": "1", "MEGA_SERVICE_SET_ASIDE_MAX": "2", "API_KEYS": KEY,
                    "LOG_LEVEL": "warning"})
    mega = subprocess.Popen([sys.executable, str(script)], env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for port in stub_ports:
            stubs.start(port)
        wait_for(f"http://127.0.0.1:{mega_port}/v1/health_check", mega)
        with httpx.Client(base_url=f"http://127.0.0.1:{mega_port}", headers=AUTH, timeout=30,
                          trust_env=False) as client:
            yield stubs, client
    finally:
        for port in list(stubs.processes):
            stubs.stop(port)
        stop(mega)


def ask(client: httpx.Client, text: str = "hello", stream: bool = False) -> httpx.Response:
    return client.post("/v1/chatqna", json={"messages": text, "stream": stream})


def services(client: httpx.Client) -> dict[str, dict]:
    listed = client.get("/v1/services").json()["services"]
    return {instance["address"]: instance for node in listed for instance in node["instances"]}


def test_requests_spread_over_every_instance(scaled):
    stubs, client = scaled
    before = {port: stubs.calls(port) for port in stubs.ports}
    answers = [ask(client) for _ in range(30)]
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers if a.status_code != 200]
    spread = {port: stubs.calls(port) - before[port] for port in stubs.ports}
    assert sum(spread.values()) == 30 and all(calls >= 5 for calls in spread.values()), spread
    listed = client.get("/v1/services").json()["services"]
    assert [(node["name"], node["type"], node["discovery"]) for node in listed] == [("llm", "llm", "static")]
    assert all(instance["state"] == "healthy" and instance["outstanding"] == 0 for instance in listed[0]["instances"])


def test_a_stopped_instance_fails_no_request_is_set_aside_and_comes_back(scaled):
    stubs, client = scaled
    victim = stubs.ports[1]
    address = f"127.0.0.1:{victim}"
    statistics_before = client.get("/v1/statistics").json()["nodes"]["llm"]["requests"]
    stubs.stop(victim)
    answers = [ask(client) for _ in range(12)]
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers if a.status_code != 200]
    shown = services(client)[address]
    assert shown["state"] == "set_aside" and shown["failures"] >= 1, shown
    # a retried request is one call of the node
    assert client.get("/v1/statistics").json()["nodes"]["llm"]["requests"] == statistics_before + 12
    ready = client.get("/v1/health/ready")  # two of three answer: ready, and the third stays set aside
    assert ready.status_code == 200 and ready.json()["ready"], ready.text
    assert services(client)[address]["state"] == "set_aside"
    stubs.start(victim)
    time.sleep(2.2)  # longer than its set-aside (1 s, doubled at most to 2 s)
    answers = [ask(client) for _ in range(12)]
    assert all(answer.status_code == 200 for answer in answers)
    assert stubs.calls(victim) >= 2, "the instance that came back gets no traffic"
    assert services(client)[address]["state"] == "healthy"


def test_a_stream_cut_mid_way_is_not_retried(scaled):
    stubs, client = scaled
    before = sum(stubs.calls(port) for port in stubs.ports)
    answer = ask(client, "please cut", stream=True)
    events = [line.removeprefix("data: ") for line in answer.text.splitlines() if line.startswith("data: ")]
    assert answer.status_code == 200 and "part" in events[0]
    assert any('"error"' in event for event in events), events  # the failure reaches the client
    assert sum(stubs.calls(port) for port in stubs.ports) == before + 1  # sent once, never again
    fine = ask(client, "hello", stream=True)
    assert fine.status_code == 200 and fine.text.rstrip().endswith("[DONE]")
    assert json.loads(fine.text.split("data: ")[1])["object"] == "chat.completion.chunk"


def test_the_services_route_needs_the_key_and_is_documented(scaled):
    _, client = scaled
    refused = httpx.get(f"{client.base_url}/v1/services", trust_env=False)
    assert refused.status_code == 401
    document = client.get("/openapi.json").json()
    assert "/v1/services" in document["paths"]
