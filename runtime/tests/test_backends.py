"""opea_new_runtime.backends against fake servers (httpx.MockTransport): what is sent, what is read, failures."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from opea_new_runtime.backends.llm_types import Completion, Prompt
from opea_new_runtime.backends.openai import OpenAICompatibleLLM
from opea_new_runtime.backends.tei import TEIEmbedder, TEIReranker
from opea_new_runtime.service import BackendError
from opea_new_runtime.text import hashed_embedding, words


def unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def too_slow(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def failure(call) -> BackendError:
    with pytest.raises(BackendError) as caught:
        asyncio.run(call)
    return caught.value


# ---------------------------------------------------------------- TEI embeddings


def fake_tei_embed(status: int = 200, body: object = None) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/embed"
        sent = json.loads(request.content)
        assert (sent["normalize"], sent["truncate"]) == (True, True)
        inputs = sent["inputs"]
        return httpx.Response(status, json=body if body is not None else [[float(len(text)), 0.0] for text in inputs])

    return httpx.MockTransport(answer)


def test_tei_embedder_sends_inputs_and_reads_vectors():
    model = TEIEmbedder("http://tei.invalid/", transport=fake_tei_embed())
    assert (model.endpoint, model.name) == ("http://tei.invalid", "TEI at http://tei.invalid")
    assert asyncio.run(model.embed(["ab", "abc"])) == [[2.0, 0.0], [3.0, 0.0]]


@pytest.mark.parametrize(("transport", "status", "detail"), [
    (fake_tei_embed(503, {"error": "overloaded"}), 503, "answered 503: {\"error\":\"overloaded\"}"),
    (fake_tei_embed(200, {"not": "vectors"}), None, "something other than 1 vector(s)"),
    (fake_tei_embed(200, [[1.0], [2.0]]), None, "something other than 1 vector(s)"),
    (httpx.MockTransport(lambda request: httpx.Response(200, text="not json")), None, "other than JSON"),
    (httpx.MockTransport(unreachable), None, "cannot reach TEI at http://tei.invalid: connection refused"),
])
def test_tei_embedder_failures_are_502s(transport, status, detail):
    error = failure(TEIEmbedder("http://tei.invalid", transport=transport).embed(["x"]))
    assert (error.http_status, error.status) == (502, status)
    assert detail in error.detail


def test_a_slow_tei_is_a_504():
    error = failure(TEIEmbedder("http://tei.invalid", transport=httpx.MockTransport(too_slow)).embed(["x"]))
    assert error.timed_out and error.http_status == 504 and "did not answer in time" in error.detail


def test_tei_embedder_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEI_EMBEDDING_ENDPOINT", "http://tei-embedding:80")
    monkeypatch.setenv("BACKEND_TIMEOUT", "12")
    model = TEIEmbedder.from_environment()
    assert model.endpoint == "http://tei-embedding:80"
    assert (model._client.timeout.read, model._client.timeout.connect) == (12.0, 10.0)


# ---------------------------------------------------------------- TEI reranking


def test_tei_reranker_places_scores_by_index():
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/rerank"
        sent = json.loads(request.content)
        assert sent["query"] == "q"
        scores = [{"index": index, "score": float(len(text))} for index, text in enumerate(sent["texts"])]
        return httpx.Response(200, json=scores[::-1])

    model = TEIReranker("http://tei.invalid", transport=httpx.MockTransport(answer))
    assert asyncio.run(model.score("q", ["short", "the longest text"])) == [5.0, 16.0]


def test_tei_reranker_asks_nothing_for_no_documents():
    model = TEIReranker("http://tei.invalid", transport=httpx.MockTransport(unreachable))
    assert asyncio.run(model.score("q", [])) == []


@pytest.mark.parametrize(("response", "status"), [(httpx.Response(500, text="down"), 500),
                                                  (httpx.Response(200, json=[{"index": 5, "score": 1}]), None),
                                                  (httpx.Response(200, json={"scores": []}), None)])
def test_tei_reranker_failures(response, status):
    model = TEIReranker("http://tei.invalid", transport=httpx.MockTransport(lambda request: response))
    error = failure(model.score("q", ["a"]))
    assert (error.status, error.http_status) == (status, 502)


def test_tei_reranker_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEI_RERANKING_ENDPOINT", "http://tei-reranking:80/")
    monkeypatch.delenv("BACKEND_TIMEOUT", raising=False)
    model = TEIReranker.from_environment()
    assert model.endpoint == "http://tei-reranking:80" and model._client.timeout.read == 300.0


# ---------------------------------------------------------------- OpenAI-compatible


class FakeServer:
    """An OpenAI-compatible server in memory: records requests, answers as `mode` says."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        if self.mode == "error":
            return httpx.Response(500, json={"error": "model crashed"})
        if self.mode == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode == "slow":
            raise httpx.ReadTimeout("timed out", request=request)
        if self.mode == "garbage":
            return httpx.Response(200, json={"choices": []})
        if not body["stream"]:
            return httpx.Response(200, json={"choices": [{"message": {"content": "Hi there"}, "finish_reason": "stop"}],
                                             "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
        events = [{"choices": [{"delta": {"role": "assistant"}}]}, "not json", [1],
                  *({"choices": [{"delta": {"content": piece}}]} for piece in ("Hi", " there")),
                  {"choices": [{"text": "!"}]}]
        if self.mode == "cut":
            events.append({"error": "the model went away"})
        lines = ": keep-alive\n\n" + "".join(
            f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n" for event in events)
        lines += "data: [DONE]\n\ndata: {\"choices\": [{\"delta\": {\"content\": \"after done\"}}]}\n\n"
        return httpx.Response(200, text=lines, headers={"content-type": "text/event-stream"})

    def model(self, endpoint: str = "http://llm.invalid/v1", **options) -> OpenAICompatibleLLM:
        return OpenAICompatibleLLM(endpoint, transport=httpx.MockTransport(self), **options)


PROMPT = Prompt(query="q", documents=[], messages=[{"role": "user", "content": "hi"}])


async def collected(model: OpenAICompatibleLLM, prompt: Prompt = PROMPT) -> list[str]:
    return [piece async for piece in model.stream(prompt)]


@pytest.mark.parametrize("endpoint", ["http://llm.invalid", "http://llm.invalid/", "http://llm.invalid/v1"])
def test_the_url_is_the_chat_completions_route(endpoint):
    assert FakeServer().model(endpoint).url == "http://llm.invalid/v1/chat/completions"


def test_complete_sends_what_the_prompt_sets_and_reads_the_completion():
    server = FakeServer()
    model = server.model(model_id="m", api_key="secret")
    prompt = Prompt(query="q", documents=["d"], messages=[{"role": "user", "content": "hi"}], max_tokens=17,
                    temperature=0.5, stop=["\n"])
    assert asyncio.run(model.complete(prompt)) == Completion("Hi there", "stop", 5, 2)
    sent = server.requests[0]
    assert sent.headers["authorization"] == "Bearer secret"
    assert json.loads(sent.content) == {"messages": [{"role": "user", "content": "hi"}], "stream": False,
                                        "model": "m", "max_tokens": 17, "temperature": 0.5, "stop": ["\n"]}
    assert model.name == "OpenAI-compatible server at http://llm.invalid/v1 (m)"


def test_the_prompts_model_wins_and_no_key_sends_no_authorization():
    server = FakeServer()
    asyncio.run(server.model(model_id="m").complete(Prompt("q", [], [{"content": "x"}], model="other")))
    assert json.loads(server.requests[0].content)["model"] == "other"
    assert "authorization" not in server.requests[0].headers


def test_stream_yields_the_text_pieces_until_done():
    server = FakeServer()
    assert asyncio.run(collected(server.model())) == ["Hi", " there", "!"]
    assert json.loads(server.requests[0].content)["stream"] is True


@pytest.mark.parametrize(("mode", "detail", "timed_out"), [
    ("error", "answered 500", False), ("unreachable", "cannot reach", False), ("slow", "did not answer in time", True),
])
@pytest.mark.parametrize("stream", [False, True])
def test_failures_are_backend_errors(mode, detail, timed_out, stream):
    model = FakeServer(mode).model()
    error = failure(collected(model) if stream else model.complete(PROMPT))
    assert detail in error.detail and error.timed_out is timed_out
    assert error.status == (500 if mode == "error" else None)


def test_an_answer_that_is_not_a_completion_is_a_backend_error():
    assert "other than a chat completion" in failure(FakeServer("garbage").model().complete(PROMPT)).detail


def test_an_error_event_in_the_stream_is_a_backend_error_after_the_pieces_before_it():
    pieces: list[str] = []

    async def read() -> None:
        async for piece in FakeServer("cut").model().stream(PROMPT):
            pieces.append(piece)

    assert "the model went away" in failure(read()).detail
    assert pieces == ["Hi", " there", "!"]


def test_llm_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLM_ENDPOINT", "http://vllm:8000")
    monkeypatch.setenv("LLM_MODEL_ID", "some/model")
    monkeypatch.setenv("LLM_API_KEY", "k")
    monkeypatch.setenv("BACKEND_TIMEOUT", "7")
    model = OpenAICompatibleLLM.from_environment()
    assert (model.url, model.model_id) == ("http://vllm:8000/v1/chat/completions", "some/model")
    assert model._client.headers["authorization"] == "Bearer k" and model._client.timeout.read == 7.0


def test_one_client_per_model_closed_by_aclose():
    models = [FakeServer().model(), FakeServer().model()]
    assert models[0]._client is not models[1]._client
    asyncio.run(models[0].aclose())
    assert models[0]._client.is_closed and not models[1]._client.is_closed


# ---------------------------------------------------------------- the stubs' text functions


def test_words_drop_stop_words_and_fold_plurals():
    assert words("What are the services of OPEA? Its builds, class and bus.") == [
        "service", "opea", "build", "class", "bus"]


def test_hashed_embeddings_are_unit_vectors_that_reflect_shared_words():
    question = hashed_embedding("What is OPEA?", 64)
    assert question == hashed_embedding("what is opea", 64) and len(question) == 64
    assert abs(sum(value * value for value in question) - 1) < 1e-4

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(question, hashed_embedding("OPEA is an open platform.", 64)) > \
        cosine(question, hashed_embedding("Bananas are yellow.", 64))
    assert hashed_embedding("the of and", 8) == [0.0] * 8
