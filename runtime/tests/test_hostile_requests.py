"""Hostile request bodies: every stub family's app and the megaservice answer 4xx naming what is wrong, and go on.

The classes of issue 9 (NaN / Infinity / 1e999, lone surrogates, deep nesting, huge integers, broken
JSON, wrong types), as a hand-made table sent to the six families' apps (families.py, TestClient) and
to a megaservice of each protocol (its nodes: the aiohttp server of test_flow.py), each followed by a
good request that must still succeed. Where hypothesis is installed (the repository's runtime tier
installs it for this suite), generated bodies of the same classes too (bounded: HYPOTHESIS_EXAMPLES per
target); without it, the table only. Readiness of the megaservice
(/v1/health/ready) is here as well.
"""

from __future__ import annotations

import json
import os
import time
from threading import Thread

import pytest
import uvicorn
from families import FAMILIES, Family, create_app
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_flow import Services, answering, build

from opea_new_runtime import jsonbody
from opea_new_runtime.megaservice import READY_ROUTE, Megaservice
from opea_new_runtime.megaservice import create_app as megaservice_app

try:
    import hypothesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # a venv without hypothesis: the table only
    hypothesis = None

DEEP = jsonbody.MAX_DEPTH + 1

# (what it is, the body's text, a word the answer's detail must have)
TABLE = [
    ("NaN", '{"text": NaN}', "NaN"),
    ("Infinity", '{"text": Infinity}', "Infinity"),
    ("-Infinity", '{"text": [-Infinity]}', "Infinity"),
    ("1e999", '{"text": 1e999}', "range"),
    ("-1e999 in a list", '{"embedding": [-1e999]}', "range"),
    ("a lone high surrogate", '{"text": "\\ud800"}', "surrogate"),
    ("a lone low surrogate in a key", '{"\\udc00": "x", "text": "x"}', "surrogate"),
    ("a surrogate pair cut in half", '{"text": "a\\ud83d b"}', "surrogate"),
    ("nested 5,000 deep", '{"a": ' * 5000 + "1" + "}" * 5000, "nested"),
    ("arrays 5,000 deep", "[" * 5000 + "]" * 5000, "nested"),
    ("objects 900 deep", '{"a": ' * 900 + "1" + "}" * 900, "nested"),
    (f"arrays {DEEP} deep", "[" * DEEP + "]" * DEEP, "nested"),
    ("an integer of 5,000 digits", '{"text": "x", "k": ' + "9" * 5000 + "}", "digits"),
    ("a negative integer of 101 digits", '{"text": "x", "k": -' + "9" * 101 + "}", "digits"),
    ("not JSON", "{text: x}", "JSON"),
    ("truncated", '{"text": "x"', "JSON"),
    ("not UTF-8", b'{"text": "\xff\xfe"}', "UTF-8"),
    ("a trailing comma", '{"text": "x",}', "JSON"),
]


def detail_of(answer) -> str:
    """The detail of a service's (FastAPI's) or the megaservice's error body, as one string."""
    body = answer.json()
    if "error" in body:
        return body["error"]["detail"]
    detail = body["detail"]
    return json.dumps(detail) if not isinstance(detail, str) else detail


def send(client: TestClient, endpoint: str, body: str | bytes):
    return client.post(endpoint, content=body, headers={"Content-Type": "application/json"})


# ---------------------------------------------------------------- the families


@pytest.fixture(scope="module")
def family_clients(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    clients = {}
    for family in FAMILIES:
        client = TestClient(create_app(family, root), raise_server_exceptions=False)
        client.__enter__()
        clients[family.name] = client
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)


def assert_refused_then_served(client: TestClient, endpoint: str, good: dict, body: str | bytes, word: str) -> None:
    answer = send(client, endpoint, body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert word.lower() in detail_of(answer).lower(), answer.text[:300]
    after = client.post(endpoint, json=good)
    assert after.status_code == 200, after.text[:300]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
@pytest.mark.parametrize(("case", "body", "word"), TABLE, ids=[row[0] for row in TABLE])
def test_a_family_refuses_a_hostile_body_and_goes_on(family_clients, family: Family, case, body, word):
    assert_refused_then_served(family_clients[family.name], family.endpoint, family.good, body, word)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
def test_a_family_refuses_a_body_over_the_size_bound(family_clients, family: Family):
    client = family_clients[family.name]
    answer = send(client, family.endpoint, '{"text": "' + "x" * jsonbody.MAX_BODY_BYTES + '"}')
    assert answer.status_code == 413 and "larger" in detail_of(answer)
    assert client.post(family.endpoint, json=family.good).status_code == 200


def test_the_bounds_themselves_are_accepted(family_clients):
    client = family_clients["passthrough"]
    deepest = {"a": 1}
    for _ in range(jsonbody.MAX_DEPTH - 1):
        deepest = {"a": deepest}
    answer = client.post("/v1/echo", json={"deep": [], **deepest, "big": int("9" * jsonbody.MAX_INTEGER_DIGITS)})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["big"] == int("9" * jsonbody.MAX_INTEGER_DIGITS)
    assert client.post("/v1/echo", json={"text": "emoji \U0001f600 and ümlauts"}).status_code == 200


@pytest.mark.parametrize(("family", "body"), [
    ("retriever", {"text": "x", "embedding": [[False]]}),
    ("retriever", {"text": "x", "embedding": [[]]}),
    ("retriever", {"text": "x", "embedding": ["0.5"]}),
    ("retriever", {"text": "x", "embedding": [0.5], "k": "4"}),
    ("llm", {"query": "x", "top_p": "0.5"}),
    ("llm", {"query": "x", "stream": 1}),
    ("llm", {"messages": []}),
    ("embedding", {"input": "x", "dimensions": True}),
    ("rerank", {"initial_query": "q", "retrieved_docs": [{"text": 1}]}),
    ("guardrail", {}),
    ("guardrail", {"text": None}),
    ("passthrough", {"trace": "not a list"}),
])
def test_wrong_types_are_refused_as_their_schema_says(family_clients, family, body):
    answer = family_clients[family].post(next(f.endpoint for f in FAMILIES if f.name == family), json=body)
    assert answer.status_code == 422, answer.text[:300]
    assert isinstance(answer.json()["detail"], list)  # FastAPI's HTTPValidationError, as the OpenAPI says


@pytest.mark.parametrize(("family", "body"), [
    ("retriever", {"text": "x", "embedding": [1, 0.5]}),  # integers are numbers
    ("retriever", {"text": "x", "embedding": [[0.5, 0.5]], "k": 2.0}),  # 2.0 is an integer to JSON Schema
    ("guardrail", {"query": "What is OPEA?"}),
    ("llm", {"messages": "What is OPEA?", "max_tokens": 8}),
])
def test_valid_requests_are_served(family_clients, family, body):
    answer = family_clients[family].post(next(f.endpoint for f in FAMILIES if f.name == family), json=body)
    assert answer.status_code == 200, answer.text[:300]


# ---------------------------------------------------------------- the megaservice


@pytest.fixture(scope="module")
def nodes():
    with Services().in_thread() as services:
        yield services


@pytest.fixture(scope="module", params=["chat", "raw"])
def megaservice(request, nodes):
    mega = Megaservice(name="hostile", port=8888, endpoint="/v1/hostile", protocol=request.param)
    good = {"messages": "What is OPEA?"} if request.param == "chat" else {"text": "What is OPEA?"}
    with TestClient(megaservice_app(mega, lambda: build(nodes.port, [("a", "b")])),
                    raise_server_exceptions=False) as client:
        yield client, mega.endpoint, good


@pytest.mark.parametrize(("case", "body", "word"), TABLE, ids=[row[0] for row in TABLE])
def test_the_megaservice_refuses_a_hostile_body_and_goes_on(megaservice, case, body, word):
    client, endpoint, good = megaservice
    answer = send(client, endpoint, body)
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    assert answer.json()["error"]["node"] is None
    assert word.lower() in detail_of(answer).lower(), answer.text[:300]
    assert client.post(endpoint, json=good).status_code == 200


def test_the_chat_megaservice_refuses_wrong_types(nodes):
    mega = Megaservice(name="hostile", port=8888, endpoint="/v1/hostile", protocol="chat")
    with TestClient(megaservice_app(mega, lambda: build(nodes.port, [("a", "b")]))) as client:
        check_wrong_types(client, mega.endpoint)


@pytest.mark.parametrize(("refusing", "status"), [("a", 422), ("b", 502)])
def test_a_refusal_is_the_clients_422_only_from_an_entry_node(refusing, status):
    """The entry node gets the request as it came, so its 422 is the client's; a later node's is the pipeline's 502."""
    mega = Megaservice(name="refusals", port=8888, endpoint="/v1/refusals", protocol="raw")
    with Services(**{refusing: answering(422, '{"detail": "not for me"}')}).in_thread() as services, \
            TestClient(megaservice_app(mega, lambda: build(services.port, [("a", "b")]))) as client:
        answer = client.post(mega.endpoint, json={"text": "hi"})
    assert answer.status_code == status, answer.text[:300]
    assert answer.json()["error"]["node"] == refusing and answer.json()["error"]["status"] == 422


def check_wrong_types(client: TestClient, endpoint: str) -> None:
    for body in ({"messages": "x", "top_p": "0.5"}, {"messages": "x", "stream": 1}, {"messages": "x", "top_k": True},
                 {"messages": [{"role": "user", "content": " \t"}]}):
        answer = client.post(endpoint, json=body)
        assert answer.status_code == 422 and answer.json()["error"]["detail"], answer.text[:300]
    assert client.post(endpoint, json={"messages": "x", "top_k": 2.0}).status_code == 200


def test_the_openapi_document_declares_the_body_the_answers_and_the_media_types(megaservice):
    client, endpoint, _ = megaservice
    document = client.get("/openapi.json").json()
    operation = document["paths"][endpoint]["post"]
    assert "application/json" in operation["requestBody"]["content"]
    assert {"200", "400", "413", "422", "502", "504"} <= set(operation["responses"])
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert {"200", "503"} <= set(document["paths"][READY_ROUTE]["get"]["responses"])


# ---------------------------------------------------------------- readiness


def test_readiness_is_200_when_every_node_answers():
    mega = Megaservice(name="ready", port=8888, endpoint="/v1/ready-test", protocol="raw")
    health = FastAPI()

    @health.get("/v1/health_check")
    async def check() -> dict:
        return {"status": "healthy"}

    config = uvicorn.Config(health, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # at most 10 s
            if server.started:
                break
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        with TestClient(megaservice_app(mega, lambda: build(port, [("a", "b")]))) as client:
            answer = client.get(READY_ROUTE)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"ready": True, "not_ready": []}
            assert client.get("/v1/health_check").status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)


def test_readiness_is_503_naming_the_nodes_that_do_not_answer():
    from opea_new_runtime.testing import free_ports

    (port,) = free_ports(1)  # nothing listens there
    mega = Megaservice(name="ready", port=8888, endpoint="/v1/ready-test", protocol="raw")
    with TestClient(megaservice_app(mega, lambda: build(port, [("a", "b")]))) as client:
        assert client.get("/v1/health_check").status_code == 200  # liveness stays as it was
        answer = client.get(READY_ROUTE)
        assert answer.status_code == 503
        body = answer.json()
        assert body["ready"] is False
        assert [node["node"] for node in body["not_ready"]] == ["a", "b"]
        assert all(node["address"] == f"127.0.0.1:{port}" and node["detail"] for node in body["not_ready"])


# ---------------------------------------------------------------- generated bodies (hypothesis)

if hypothesis is not None:
    EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "60"))
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
    documents = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
    poison = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", '"\\ud800"', '"x\\udfff"',
                              "9" * 150, "[" * 70 + "]" * 70, '{"a":' * 70 + "0" + "}" * 70, "tru", "01", "'x'"])

    @st.composite
    def hostile_bodies(draw) -> str:
        """A JSON object with one poisoned value somewhere in it (or the poison alone)."""
        document = draw(st.dictionaries(st.sampled_from(["text", "query", "embedding", "k", "messages", "input",
                                                         "trace", "x"]), documents, max_size=4))
        marker = "__POISON__"
        path = draw(st.sampled_from(["top", "list", "nested"]))
        if path == "top":
            document["text"] = marker
        elif path == "list":
            document["embedding"] = [0.5, marker]
        else:
            document["x"] = {"y": [marker]}
        text = json.dumps(document)
        return text.replace(json.dumps(marker), draw(poison), 1)

    @pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
    def test_generated_hostile_bodies_are_refused_by_every_family(family_clients, family: Family):
        client = family_clients[family.name]

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(body=hostile_bodies())
        def check(body: str) -> None:
            answer = send(client, family.endpoint, body)
            assert answer.status_code == 422, (body[:200], answer.status_code, answer.text[:300])
            assert detail_of(answer)

        check()
        assert client.post(family.endpoint, json=family.good).status_code == 200

    @pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
    def test_generated_json_never_makes_a_family_fail(family_clients, family: Family):
        """Any JSON document: an answer below 500, and the service still serves."""
        client = family_clients[family.name]

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(body=st.one_of(documents, st.fixed_dictionaries({}, optional={
            "text": documents, "query": documents, "embedding": documents, "messages": documents,
            "retrieved_docs": documents, "initial_query": documents, "input": documents, "k": documents})))
        def check(body) -> None:
            answer = client.post(family.endpoint, json=body)
            assert answer.status_code < 500, (body, answer.status_code, answer.text[:300])

        check()
        assert client.post(family.endpoint, json=family.good).status_code == 200

    def test_generated_hostile_bodies_are_refused_by_the_megaservice(megaservice):
        client, endpoint, good = megaservice

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(body=hostile_bodies())
        def check(body: str) -> None:
            answer = send(client, endpoint, body)
            assert answer.status_code == 400, (body[:200], answer.status_code, answer.text[:300])
            assert answer.json()["error"]["detail"]

        check()
        assert client.post(endpoint, json=good).status_code == 200
