"""The model servers' stand-ins (opea_new_runtime.model_servers): TEI's and the OpenAI API, with working fake models.

In process (FastAPI's TestClient), and with the official `openai` SDK on the chat server; the stand-ins
started as processes are proven by the generated projects' tests and `make run` (tests/e2e).
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from opea_new_runtime.model_servers import openai_server, tei
from opea_new_runtime.model_servers.__main__ import main
from opea_new_runtime.prompts import rag_prompt
from opea_new_runtime.text import hashed_embedding

MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
DOCUMENTS = ["Bananas are yellow. OPEA is the Open Platform for Enterprise AI.", "Paris is in France."]


@pytest.fixture(scope="module")
def embedding():
    with TestClient(tei.embedding_app("BAAI/bge-base-en-v1.5", dimension=64)) as client:
        yield client


@pytest.fixture(scope="module")
def rerank():
    with TestClient(tei.rerank_app()) as client:
        yield client


@pytest.fixture(scope="module")
def chat():
    with TestClient(openai_server.app(MODEL)) as client:
        yield client


# ---------------------------------------------------------------- TEI


def test_embed_answers_a_vector_per_input_like_the_embedding_stub(embedding):
    one = embedding.post("/embed", json={"inputs": "what is opea"})
    assert one.status_code == 200 and one.json() == [hashed_embedding("what is opea", 64)]
    many = embedding.post("/embed", json={"inputs": ["a b", "c d"], "truncate": True})
    assert [len(vector) for vector in many.json()] == [64, 64]
    openai = embedding.post("/v1/embeddings", json={"input": ["x y"], "model": "m"}).json()
    assert openai["data"][0]["embedding"] == hashed_embedding("x y", 64) and openai["object"] == "list"
    assert embedding.get("/health").status_code == 200
    assert embedding.get("/info").json()["model_id"] == "BAAI/bge-base-en-v1.5"


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"inputs": []}, 422, "cannot be empty"),
    ({"inputs": 3}, 422, "must be a string or a list"),
    ({"text": "x"}, 422, "`inputs`"),
    ({"inputs": ["x"] * 33}, 413, "batch size 33"),
    ({"inputs": "x", "normalize": "yes"}, 422, "`normalize`"),
])
def test_bad_embed_requests_get_teis_error_body(embedding, body, status, says):
    answer = embedding.post("/embed", json=body)
    assert answer.status_code == status and says in answer.json()["error"]
    assert answer.json()["error_type"] == "Validation"


def test_a_body_that_is_not_json_is_a_422(embedding):
    answer = embedding.post("/embed", content=b"{nope", headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and "JSON" in answer.json()["error"]


def test_rerank_ranks_the_texts_best_first(rerank):
    texts = ["Paris is in France.", "OPEA is an open platform.", "Bananas."]
    ranked = rerank.post("/rerank", json={"query": "what is the opea platform", "texts": texts}).json()
    assert [item["index"] for item in ranked][0] == 1
    assert all(0 <= item["score"] <= 1 for item in ranked) and "text" not in ranked[0]
    assert [item["score"] for item in ranked] == sorted((item["score"] for item in ranked), reverse=True)
    with_text = rerank.post("/rerank", json={"query": "opea", "texts": texts, "return_text": True,
                                             "raw_scores": True}).json()
    assert with_text[0]["text"] == texts[1] and with_text[0]["score"] > 1 - 1e-9 or with_text[0]["score"] > 0
    assert rerank.post("/rerank", json={"query": "q", "texts": []}).status_code == 422
    assert rerank.post("/rerank", json={"texts": ["a"]}).status_code == 422


# ---------------------------------------------------------------- OpenAI-compatible (vLLM, TGI)


def rag(question: str) -> list[dict]:
    return [{"role": "user", "content": rag_prompt(question, DOCUMENTS)}]


def test_a_chat_answers_from_the_rag_prompts_documents(chat):
    answer = chat.post("/v1/chat/completions", json={"model": MODEL, "messages": rag("What is OPEA?")}).json()
    assert answer["object"] == "chat.completion" and answer["model"] == MODEL
    assert answer["choices"][0]["message"]["content"] == "OPEA is the Open Platform for Enterprise AI."
    assert answer["choices"][0]["finish_reason"] == "stop"
    usage = answer["usage"]
    assert usage["completion_tokens"] == 8 and usage["total_tokens"] == usage["prompt_tokens"] + 8


def test_a_chat_without_documents_says_it_has_none(chat):
    answer = chat.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    assert "no documents" in answer.json()["choices"][0]["message"]["content"]


def test_the_stream_is_vllms_chunks_with_usage_last(chat):
    body = {"model": MODEL, "messages": rag("What is OPEA?"), "stream": True, "max_tokens": 3,
            "stream_options": {"include_usage": True}}
    with chat.stream("POST", "/v1/chat/completions", json=body) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in answer.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "OPEA is the"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "other/model", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ({"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
    ({"model": MODEL, "messages": []}, 400, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, 400, "stream"),
])
def test_bad_chat_requests_get_openais_error_body(chat, body, status, param):
    answer = chat.post("/v1/chat/completions", json=body)
    assert answer.status_code == status
    assert answer.json()["error"]["param"] == param and answer.json()["error"]["message"]


def test_completions_and_models(chat):
    prompt = rag_prompt("Where is Paris?", DOCUMENTS)
    answer = chat.post("/v1/completions", json={"model": MODEL, "prompt": prompt}).json()
    assert answer["object"] == "text_completion" and answer["choices"][0]["text"] == "Paris is in France."
    assert chat.get("/v1/models").json()["data"][0]["id"] == MODEL
    assert chat.get("/health").status_code == 200


def test_the_official_sdk_parses_every_answer(chat):
    openai = pytest.importorskip("openai")  # a project's requirements-dev.txt pins it; the runtime tier installs it
    client = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=chat)
    completion = client.chat.completions.create(model=MODEL, messages=rag("What is OPEA?"), max_tokens=2)
    assert completion.choices[0].message.content == "OPEA is" and completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2
    stream = client.chat.completions.create(model=MODEL, messages=rag("What is OPEA?"), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "OPEA is the Open Platform for Enterprise AI.")
    assert chunks[-1].usage.completion_tokens == 8
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no/such-model", messages=rag("x"))


def test_the_command_refuses_bad_flags(capsys):
    for argv in (["tei-embedding"], ["nope", "--port", "1"], ["openai", "--port", "99999"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    assert "is not a port" in capsys.readouterr().err
