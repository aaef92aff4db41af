"""The running pipeline: health, requests through the whole flow, errors and statistics."""

from __future__ import annotations

import json

import pytest

from megaservice import settings

TYPED_STUBS = ("embedding", "retriever", "rerank", "llm", "guardrail")  # the others are pass-through stubs
QUESTION = "What is OPEA?"
HEALTH_ROUTES = ("/v1/health_check", "/v1/health", "/health")

chat_only = pytest.mark.skipif(settings.PROTOCOL != "chat", reason="the megaservice speaks the raw protocol")
raw_only = pytest.mark.skipif(settings.PROTOCOL != "raw", reason="the megaservice speaks the chat protocol")
conditional = any(condition != "success" for _, _, condition in settings.EDGES)


def request_body() -> dict:
    if settings.PROTOCOL == "chat":
        return {"messages": [{"role": "user", "content": QUESTION}], "stream": False}
    return {"text": QUESTION}


# ---------------------------------------------------------------- health


@pytest.mark.parametrize("route", HEALTH_ROUTES)
def test_health_routes(client, route):
    answer = client.get(route)
    assert answer.status_code == 200
    assert answer.json()["status"] == "healthy"


def test_every_generated_service_is_healthy(stack):
    import httpx

    for process in stack.processes:
        answer = httpx.get(process.health_url, timeout=10, trust_env=False)
        assert answer.status_code == 200, process.name


# ---------------------------------------------------------------- chat


@chat_only
def test_chat_answer(client, whole_flow):
    answer = client.post(settings.ENDPOINT, json=request_body())
    assert answer.status_code == 200, answer.text
    completion = answer.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["role"] == "assistant"
    assert completion["choices"][0]["message"]["content"].strip()


@chat_only
def test_chat_stream(client, whole_flow):
    body = {**request_body(), "stream": True}
    with client.stream("POST", settings.ENDPOINT, json=body) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = "".join(answer.iter_text())
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    streamed = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert streamed.strip()
    whole = client.post(settings.ENDPOINT, json=request_body()).json()["choices"][0]["message"]["content"]
    assert streamed.split() == whole.split()


@chat_only
@pytest.mark.parametrize("body", [{"messages": []}, {"messages": "hi", "stream": "sometimes"}, {"stream": True},
                                  {"messages": "hi", "temperature": -1}])
def test_bad_chat_request(client, body):
    answer = client.post(settings.ENDPOINT, json=body)
    assert 400 <= answer.status_code < 500
    error = answer.json()["error"]
    assert error["detail"] and error["node"] is None


# ---------------------------------------------------------------- raw


def expected_traces(initial_trace: list[str] | None = None) -> dict[str, list[str] | None]:
    """The `trace` each node answers: pass-through nodes append their name; typed stubs answer their
    own document (no trace); a node's input is its predecessors' outputs merged in flow order, last wins."""
    names = [service.name for service in settings.SERVICES]
    types = {service.name: service.type for service in settings.SERVICES}
    predecessors = {name: [source for source in names if (source, name) in {(s, t) for s, t, _ in settings.EDGES}]
                    for name in names}
    traces: dict[str, list[str] | None] = {}
    remaining = list(names)
    while remaining:
        node = next(name for name in remaining if all(p in traces for p in predecessors[name]))
        remaining.remove(node)
        trace = initial_trace if not predecessors[node] else None
        for predecessor in predecessors[node]:
            if traces[predecessor] is not None:
                trace = traces[predecessor]
        traces[node] = None if types[node] in TYPED_STUBS else [*(trace or []), node]
    return traces


def terminal_names() -> list[str]:
    sources = {source for source, _, _ in settings.EDGES}
    return [service.name for service in settings.SERVICES if service.name not in sources]


@raw_only
def test_raw_request_flows_through_every_node(client, whole_flow):
    answer = client.post(settings.ENDPOINT, json=request_body())
    assert answer.status_code == 200, answer.text
    output = answer.json()
    assert isinstance(output, dict)
    if conditional:
        return  # which nodes run depends on the nodes' answers
    terminals = terminal_names()
    outputs = {terminals[0]: output} if len(terminals) == 1 else output
    assert sorted(outputs) == sorted(terminals)
    traces = expected_traces()
    for node in terminals:
        if traces[node] is not None:
            assert outputs[node]["trace"] == traces[node], node


@raw_only
@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "not json"])
def test_bad_raw_request(client, body):
    answer = client.post(settings.ENDPOINT, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500
    assert answer.json()["error"]["detail"]


# ---------------------------------------------------------------- failures and statistics


def test_a_dead_node_is_a_502_naming_it(dead_node):
    victim, session = dead_node
    answer = session.post(settings.ENDPOINT, json=request_body())
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"]["node"] == victim
    assert session.get("/v1/health_check").status_code == 200  # still serving


def test_statistics_count_requests_per_node(client, whole_flow):
    before = client.get("/v1/statistics").json()
    assert client.post(settings.ENDPOINT, json=request_body()).status_code == 200
    after = client.get("/v1/statistics").json()
    assert set(after["nodes"]) == {service.name for service in settings.SERVICES}
    assert after["megaservice"]["requests"] == before["megaservice"]["requests"] + 1
    targets = {target for _, target, _ in settings.EDGES}
    for service in settings.SERVICES:
        if service.name not in targets:  # entry nodes run on every request
            assert after["nodes"][service.name]["requests"] == before["nodes"][service.name]["requests"] + 1
            assert after["nodes"][service.name]["latency_ms"]["max"] is not None
