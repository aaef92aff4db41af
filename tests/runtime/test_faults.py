"""Failures on both runtimes: a node killed under load, silent nodes, SIGTERM with requests in flight.

Every load is bounded in count and in time; every process is stopped by PID.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.runtime.conftest import RUNTIMES

pytestmark = pytest.mark.slow

CHAIN = {"name": "chain", "megaservice": {"protocol": "raw"}, "services": [
    {"name": "first", "type": "undefined", "port": 19201}, {"name": "second", "type": "undefined", "port": 19202}]}
CHAT = {"name": "chat", "services": [{"name": "llm", "type": "llm", "port": 19209}]}
QUESTION = {"messages": "What is OPEA?"}


class Load:
    """Requests sent one after another from a thread (at most `count`, for at most `seconds`), with their answers."""

    def __init__(self, url: str, body: dict[str, Any], count: int, seconds: float) -> None:
        self.url, self.body, self.count, self.seconds = url, body, count, seconds
        self.answers: list[tuple[float, int, Any]] = []  # (seconds it took, status, JSON body)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with httpx.Client(timeout=30, trust_env=False) as client:
            while len(self.answers) < self.count and time.monotonic() < deadline and not self.stop.is_set():
                started = time.monotonic()
                response = client.post(self.url, json=self.body)
                self.answers.append((time.monotonic() - started, response.status_code, response.json()))

    def wait_for(self, predicate, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.answers):
            assert self.thread.is_alive() and time.monotonic() < deadline, "the load stopped first"
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_node_killed_under_load_is_named_then_recovers(runtime, projects, processes):
    project = projects(CHAIN, runtime)
    first = processes.service(projects(CHAIN, "lite"), "first")
    second = processes.service(projects(CHAIN, "lite"), "second")
    megaservice = processes.megaservice(project, {"first": first.port, "second": second.port})
    url = f"{megaservice.url}/v1/chain"

    with Load(url, {"text": "hi"}, count=3000, seconds=120) as load:
        load.wait_for(lambda answers: len(answers) >= 50)
        second.stop(signal.SIGKILL)
        load.wait_for(lambda answers: sum(status == 502 for _, status, _ in answers) >= 20)
        processes.service(projects(CHAIN, "lite"), "second", port=second.port)  # back, on the same port
        recovered_from = len(load.answers)
        load.wait_for(lambda answers: len(answers) >= recovered_from + 50)

    statuses = {status for _, status, _ in load.answers}
    assert statuses == {200, 502}, statuses
    failures = [(seconds, body) for seconds, status, body in load.answers if status == 502]
    assert all(body["error"]["node"] == "second" and body["error"]["status"] is None for _, body in failures)
    assert max(seconds for seconds, _ in failures) < 5  # refused at once, not after a timeout
    last = load.answers[-20:]
    assert all(status == 200 and body["trace"] == ["first", "second"] for _, status, body in last)
    assert megaservice.alive()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_silent_nodes_are_504_naming_them(runtime, projects, processes):
    """The LLM stub waits 3 s before its first token; the megaservice allows a node 0.5 s of silence."""
    llm = processes.service(projects(CHAT, "lite"), "llm", LLM_STUB_FIRST_TOKEN_DELAY="3")
    megaservice = processes.megaservice(projects(CHAT, runtime), {"llm": llm.port}, MEGA_SERVICE_TIMEOUT="0.5")
    url = f"{megaservice.url}/v1/chat"
    for stream in (False, True):
        started = time.monotonic()
        answer = httpx.post(url, json={**QUESTION, "stream": stream}, timeout=30, trust_env=False)
        assert answer.status_code == 504, answer.text  # for a stream too: nothing was sent yet
        assert answer.json()["error"]["node"] == "llm"
        assert time.monotonic() - started < 3  # the node's timeout, not the stub's delay
    statistics = httpx.get(f"{megaservice.url}/v1/statistics", trust_env=False).json()
    assert statistics["nodes"]["llm"]["failures"] == 2


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_lets_requests_in_flight_finish(runtime, projects, processes):
    """A streamed and a whole answer are under way (the LLM stub takes 1.5 s) when SIGTERM arrives."""
    llm = processes.service(projects(CHAT, "lite"), "llm", LLM_STUB_FIRST_TOKEN_DELAY="1.5",
                            LLM_STUB_TOKEN_DELAY="0.01")
    megaservice = processes.megaservice(projects(CHAT, runtime), {"llm": llm.port})
    url = f"{megaservice.url}/v1/chat"
    results: dict[bool, httpx.Response] = {}

    def ask(stream: bool) -> None:
        results[stream] = httpx.post(url, json={**QUESTION, "stream": stream}, timeout=30, trust_env=False)

    threads = [threading.Thread(target=ask, args=(stream,)) for stream in (False, True)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while established(llm.port) < 2:  # both requests are at the LLM: in flight in the megaservice
        assert time.monotonic() < deadline, "the requests never reached the LLM"
        time.sleep(0.05)
    assert megaservice.stop(signal.SIGTERM, timeout=20) == 0
    for thread in threads:
        thread.join(30)
    assert results[False].status_code == 200 and "OPEA" in results[False].json()["choices"][0]["message"]["content"]
    assert results[True].status_code == 200 and results[True].text.rstrip().endswith("data: [DONE]")
    with pytest.raises(httpx.ConnectError):  # and it is gone
        httpx.get(f"{megaservice.url}/v1/health_check", trust_env=False)


def established(port: int) -> int:
    """Established TCP connections whose local port is `port` (the server's side of them)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            count += 1
    return count
