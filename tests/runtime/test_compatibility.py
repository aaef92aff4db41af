"""The same pipelines and requests on both runtimes give the same answers.

For each pipeline, one set of services runs once, and a comps megaservice and a
lite megaservice both call it; every request goes to both and the answers are
compared after normalisation:

* `id` and `created` of chat answers differ by nature;
* intended difference: when a node could not be reached or timed out, the error
  `detail` after its category ("connection failed: ...", "no answer in time
  (...)") is the message of each runtime's HTTP client (aiohttp for comps,
  lite's own client) — the node, status, HTTP status and category are the same.

The statistics (requests and failures per node) must agree too.
"""

from __future__ import annotations

import ast
import json
from typing import Any

import httpx
import pytest

from tests.runtime.conftest import RUNTIMES, free_port

pytestmark = pytest.mark.slow


def services(*entries: tuple[str, str], first_port: int = 19100) -> list[dict[str, Any]]:
    return [{"name": name, "type": type_, "port": first_port + index} for index, (name, type_) in enumerate(entries)]


CHATQNA = {"name": "chatqna", "services": services(
    ("embedding", "embedding"), ("retriever", "retriever"), ("rerank", "rerank"), ("llm", "llm"))}
GUARDED_CHAT = {"name": "guarded-chat", "services": services(("guard", "guardrail"), ("llm", "llm"))}
CONDITIONAL = {
    "name": "conditional",
    "services": services(("guard", "guardrail"), ("data_processor", "undefined"), ("data_analyzer", "undefined"),
                         ("error_handler", "undefined"), ("refusal", "undefined")),
    "flow": [
        {"service": "guard", "next": [{"service": "data_processor", "condition": "!blocked"},
                                      {"service": "refusal", "condition": "blocked == true"}]},
        {"service": "data_processor", "next": [{"service": "data_analyzer", "condition": "success"},
                                               {"service": "error_handler", "condition": "error"}]},
    ],
}
# Expression edges, a fan-in node one of whose branches is skipped, skips that propagate, two terminals.
ROUTER = {
    "name": "router",
    "megaservice": {"protocol": "raw"},
    "services": services(("router", "undefined"), ("left", "undefined"), ("right", "undefined"),
                         ("join", "undefined"), ("final", "undefined"), ("audit", "undefined")),
    "flow": [
        {"service": "router", "next": [{"service": "left", "condition": 'route == "left"'},
                                       {"service": "right", "condition": 'route == "right"'},
                                       {"service": "audit", "condition": "!quiet"}]},
        {"service": "left", "next": ["join"]},
        {"service": "right", "next": ["join"]},
        {"service": "join", "next": ["final"]},
    ],
}
FAN = {
    "name": "fan",
    "services": services(("collector", "dataprep"), ("processor", "undefined"), ("validator", "undefined"),
                         ("merge", "ragas"), ("side", "text2sql")),
    "flow": [{"service": "collector", "next": ["processor", "validator"]},
             {"service": "processor", "next": ["merge", "side"]},
             {"service": "validator", "next": ["merge"]}],
}
# A raw pipeline whose entry node is sent what it cannot take: the client's request was wrong, so the
# service's 422 is the megaservice's 422, naming the node (a node further down refusing would be a 502).
STRICT = {"name": "strict", "megaservice": {"protocol": "raw"}, "services": services(("retriever", "retriever"))}

QUESTION = "What is OPEA?"
BLOCKED = "how to build a bomb"


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


CASES = {
    "chatqna": (CHATQNA, [chat(QUESTION), chat(QUESTION, stream=True), chat(QUESTION, max_tokens=3),
                          {"messages": []}, {"messages": QUESTION, "stream": "sometimes"}]),
    "guarded-chat": (GUARDED_CHAT, [chat(QUESTION), chat(QUESTION, stream=True), chat(BLOCKED),
                                    chat(BLOCKED, stream=True)]),
    "conditional": (CONDITIONAL, [{"text": "hello"}, {"text": BLOCKED}]),
    "router": (ROUTER, [{"route": "left"}, {"route": "right", "quiet": True}, {"route": "none"},
                        {"route": "none", "quiet": True}]),
    "fan": (FAN, [{"text": "x", "trace": ["client"]}]),
    "strict": (STRICT, [{"text": "no embedding"}, [1, 2]]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_runtimes_give_the_same_answers(case, projects, processes):
    spec, bodies = CASES[case]
    lite_project = projects(spec, "lite")
    names = [service["name"] for service in spec["services"]]
    running = [processes.service(lite_project, name, wait=False) for name in names]
    processes.wait_healthy(*running)
    nodes = {name: server.port for name, server in zip(names, running, strict=True)}
    megaservices = {runtime: processes.megaservice(projects(spec, runtime), nodes, wait=False) for runtime in RUNTIMES}
    processes.wait_healthy(*megaservices.values())
    endpoint = f"/v1/{spec['name']}"

    answers = {runtime: [ask(server.url + endpoint, body) for body in bodies]
               for runtime, server in megaservices.items()}
    for body, comps, lite in zip(bodies, answers["comps"], answers["lite"], strict=True):
        assert comps == lite, f"{case}: {json.dumps(body)}"
    expectations(case, answers["lite"])

    statistics = {runtime: counts(server.url) for runtime, server in megaservices.items()}
    assert statistics["comps"] == statistics["lite"]


def test_a_dead_node_is_the_same_502_on_both_runtimes(projects, processes):
    """CONDITIONAL with data_processor dead: its `error` edge is taken. CHATQNA with embedding dead: a 502."""
    dead = free_port()
    for spec, body, victim in ((CONDITIONAL, {"text": "hello"}, "data_processor"),
                               (CHATQNA, chat(QUESTION), "embedding")):
        lite_project = projects(spec, "lite")
        names = [service["name"] for service in spec["services"] if service["name"] != victim]
        running = [processes.service(lite_project, name, wait=False) for name in names]
        processes.wait_healthy(*running)
        nodes = {**{name: server.port for name, server in zip(names, running, strict=True)}, victim: dead}
        megaservices = [processes.megaservice(projects(spec, runtime), nodes, wait=False) for runtime in RUNTIMES]
        processes.wait_healthy(*megaservices)
        comps, lite = (ask(f"{server.url}/v1/{spec['name']}", body) for server in megaservices)
        assert comps == lite
        status, answer = lite
        if spec is CONDITIONAL:
            assert status == 200 and answer["trace"] == ["error_handler"]
            assert answer["error"] == {"node": victim, "status": None, "detail": "connection failed"}
        else:
            assert status == 502 and answer == {"error": {"node": victim, "status": None,
                                                          "detail": "connection failed"}}
        for server in megaservices:
            assert httpx.get(f"{server.url}/v1/health_check", trust_env=False).status_code == 200


# ---------------------------------------------------------------- what the answers must be


def expectations(case: str, answers: list[tuple[int, Any]]) -> None:
    """The lite answers (equal to comps') are also the right ones, not just the same ones."""
    if case == "chatqna":
        (status, whole), (_, streamed), (_, short), (bad_status, _), (bad_stream, _) = answers
        assert status == 200 and "OPEA" in whole["choices"][0]["message"]["content"]
        assert streamed[-1] == "[DONE]" and text_of_events(streamed).split() == (
            whole["choices"][0]["message"]["content"].split())
        assert len(short["choices"][0]["message"]["content"].split()) <= 3
        assert bad_status == 422 and bad_stream == 422
    elif case == "guarded-chat":
        (_, allowed), (_, allowed_stream), (_, refused), (_, refused_stream) = answers
        assert "OPEA" in allowed["choices"][0]["message"]["content"]
        assert text_of_events(allowed_stream).split() == allowed["choices"][0]["message"]["content"].split()
        refusal = refused["choices"][0]["message"]["content"]
        assert refusal and "OPEA" not in refusal
        assert text_of_events(refused_stream) == refusal
    elif case == "conditional":
        (_, allowed), (_, refused) = answers
        assert allowed["trace"] == ["data_processor", "data_analyzer"] and allowed["blocked"] is False
        assert refused["trace"] == ["refusal"] and refused["blocked"] is True
    elif case == "router":
        left, right, neither, quiet = (answer for _, answer in answers)
        assert left == {"final": {"route": "left", "trace": ["router", "left", "join", "final"]},
                        "audit": {"route": "left", "trace": ["router", "audit"]}}
        assert right == {"route": "right", "quiet": True, "trace": ["router", "right", "join", "final"]}
        assert neither == {"route": "none", "trace": ["router", "audit"]}  # join and final skipped
        assert quiet == {"route": "none", "quiet": True, "trace": ["router"]}  # only the entry node ran
    elif case == "fan":
        ((status, answer),) = answers
        assert status == 200 and set(answer) == {"merge", "side"}
        assert answer["merge"]["trace"] == ["client", "collector", "validator", "merge"]  # validator merged last
        assert answer["side"]["trace"] == ["client", "collector", "processor", "side"]
    elif case == "strict":
        (status, answer), (bad_status, _) = answers
        assert status == 422 and answer["error"]["node"] == "retriever" and answer["error"]["status"] == 422
        assert "embedding" in answer["error"]["detail"]
        assert bad_status == 422


# ---------------------------------------------------------------- asking and comparing


def ask(url: str, body: Any) -> tuple[int, Any]:
    """(status, the answer normalised for comparison)."""
    response = httpx.post(url, json=body, timeout=60, trust_env=False)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = []
        for line in response.text.splitlines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                events.append(data if data == "[DONE]" else normalised(json.loads(data)))
        return response.status_code, events
    return response.status_code, normalised(response.json())


def normalised(document: Any) -> Any:
    if not isinstance(document, dict):
        return document
    document = {key: value for key, value in document.items() if key not in ("id", "created")}
    error = document.get("error")
    if isinstance(error, dict) and error.get("status") is None and isinstance(error.get("detail"), str):
        # the category is the same on both runtimes; the rest is each HTTP client's own wording
        document["error"] = {**error, "detail": error["detail"].split(":")[0].split(" (")[0]}
    return document


def text_of_events(events: list[Any]) -> str:
    return "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event != "[DONE]")


def counts(url: str) -> dict[str, Any]:
    snapshot = httpx.get(f"{url}/v1/statistics", trust_env=False).json()
    metrics = httpx.get(f"{url}/metrics", trust_env=False)
    assert metrics.headers["content-type"].startswith("text/plain")
    samples = [line for line in metrics.text.splitlines()
               if line.startswith("opea_megaservice_") and "_total{" in line]
    return {
        "megaservice": {key: snapshot["megaservice"][key] for key in ("requests", "failures", "rejected")},
        "nodes": {name: (node["requests"], node["failures"]) for name, node in snapshot["nodes"].items()},
        "metrics": samples,
    }


def test_opea_stream_format_on_both_runtimes(projects, processes):
    """MEGA_SERVICE_STREAM_FORMAT=opea: the `data: b'token'` events OPEA's UIs read, with the same text."""
    llm = processes.service(projects(GUARDED_CHAT, "lite"), "llm")
    guard = processes.service(projects(GUARDED_CHAT, "lite"), "guard")
    nodes = {"llm": llm.port, "guard": guard.port}
    megaservices = [processes.megaservice(projects(GUARDED_CHAT, runtime), nodes, MEGA_SERVICE_STREAM_FORMAT="opea")
                    for runtime in RUNTIMES]
    url = "/v1/guarded-chat"
    streams = [httpx.post(server.url + url, json=chat(QUESTION, stream=True), timeout=60, trust_env=False).text
               for server in megaservices]
    assert streams[0] == streams[1]
    events = [line[len("data: "):] for line in streams[0].splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and all(event.startswith(("b'", 'b"')) for event in events[:-1])
    whole = httpx.post(megaservices[1].url + url, json=chat(QUESTION), timeout=60, trust_env=False).json()
    text = "".join(ast.literal_eval(event).decode() for event in events[:-1])
    assert text.split() == whole["choices"][0]["message"]["content"].split()
