"""The megaservice's OpenAI-compatible front door, driven by the official `openai` SDK on either runtime.

The llm node is a route of an aiohttp server in this process (test_flow.Services)
that answers like an OpenAI-compatible model server: a chat completion with its
own usage and `finish_reason: "length"`, or a stream whose last chunk says
`length` and reports no usage. The SDK talks to the megaservice app through
Starlette's TestClient, which is an httpx client, so its own request building,
response types and error classes are what is tested.
"""

from __future__ import annotations

import json

import openai
import pytest
from aiohttp import web
from runtime_under_test import ServiceType
from starlette.testclient import TestClient
from test_flow import Services, answering, build

from opea_new_runtime.megaservice import Megaservice, create_app

WORDS = ["Hello", " world"]
NODE_USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
QUESTION = "What is OPEA?"


async def model_server(node: str, body: dict, request: web.Request) -> web.StreamResponse:
    if not body.get("stream"):
        return web.json_response({
            "id": "chatcmpl-node", "object": "chat.completion", "created": 1, "model": "node-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)},
                         "finish_reason": "length"}],
            "usage": NODE_USAGE,
        })
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for index, word in enumerate(WORDS):
        last = index == len(WORDS) - 1
        chunk = {"id": "chatcmpl-node", "object": "chat.completion.chunk", "created": 1, "model": "node-model",
                 "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": "length" if last else None}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    return response


MEGASERVICE = Megaservice(name="front-door", port=8888, endpoint="/v1/chatqna", protocol="chat")


@pytest.fixture
def sdk():
    """An OpenAI client on the megaservice (no retries: a failure must show at once)."""
    with Services(llm=model_server).in_thread() as services, \
            TestClient(create_app(MEGASERVICE, lambda: build(services.port, [], nodes=["llm"],
                                                             types={"llm": ServiceType.LLM}))) as client:
        yield openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


def test_create_answers_with_the_nodes_usage_and_finish_reason(sdk):
    completion = sdk.chat.completions.create(model="front-door", messages=[{"role": "user", "content": QUESTION}],
                                             max_tokens=2)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello world"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.model_dump() == {**NODE_USAGE, "completion_tokens_details": None,
                                             "prompt_tokens_details": None}


def test_a_stream_ends_with_the_finish_reason_then_the_usage_it_asked_for(sdk):
    chunks = list(sdk.chat.completions.create(model="front-door", messages=[{"role": "user", "content": QUESTION}],
                                              stream=True, stream_options={"include_usage": True}))
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in with_choices) == "Hello world"
    assert [chunk.choices[0].finish_reason for chunk in with_choices][-1] == "length"
    assert all(chunk.usage is None for chunk in with_choices)
    last = chunks[-1]
    # The node's stream reported no usage: counted here, as words (3 in the question, 2 in the answer).
    assert last.choices == [] and (last.usage.prompt_tokens, last.usage.completion_tokens,
                                   last.usage.total_tokens) == (3, 2, 5)


def test_a_stream_without_include_usage_has_no_usage_chunk(sdk):
    chunks = list(sdk.chat.completions.create(model="front-door", messages=[{"role": "user", "content": QUESTION}],
                                              stream=True))
    assert chunks and all(chunk.choices and chunk.usage is None for chunk in chunks)


def test_models_lists_the_pipeline(sdk):
    assert [model.id for model in sdk.models.list()] == ["front-door"]


def test_a_bad_request_is_the_sdks_422_with_the_reason():
    with Services(llm=model_server).in_thread() as services, \
            TestClient(create_app(MEGASERVICE, lambda: build(services.port, [], nodes=["llm"],
                                                             types={"llm": ServiceType.LLM}))) as client:
        sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            sdk.chat.completions.create(model="front-door", messages=[{"role": "system", "content": "only this"}])
        assert "no user message" in caught.value.body["message"]  # the SDK's .message quotes the whole body
        assert caught.value.body["type"] == "invalid_request_error" and caught.value.body["node"] is None
        # The pipeline's own endpoint keeps its own error document.
        own = client.post(MEGASERVICE.endpoint, json={"messages": [{"role": "system", "content": "only this"}]})
        assert own.status_code == 422 and set(own.json()["error"]) == {"node", "status", "detail"}


def test_a_failing_node_is_an_sdk_error_naming_it():
    with Services(llm=answering(500, '{"detail": "model crashed"}')).in_thread() as services, \
            TestClient(create_app(MEGASERVICE, lambda: build(services.port, [], nodes=["llm"],
                                                             types={"llm": ServiceType.LLM}))) as client:
        sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.chat.completions.create(model="front-door", messages=[{"role": "user", "content": QUESTION}])
    assert caught.value.status_code == 502
    assert caught.value.body["node"] == "llm" and caught.value.body["status"] == 500
    assert caught.value.body["message"].startswith("llm: ") and "model crashed" in caught.value.body["message"]
    assert caught.value.body["type"] == "upstream_error"
