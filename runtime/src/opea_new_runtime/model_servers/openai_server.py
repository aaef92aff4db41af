"""An OpenAI-compatible server as vLLM and TGI serve it, with the extractive fake model (extractive.py).

    POST /v1/chat/completions  {"model", "messages", "stream"?, "max_tokens"?, "stop"?, "stream_options"?, ...}
                               → a chat.completion, or SSE chat.completion.chunk events then `data: [DONE]`
                               (a last usage chunk with `stream_options.include_usage`)
    POST /v1/completions       {"model", "prompt": str, "max_tokens"?, "stream"?} → a text_completion
    GET  /v1/models            the one model it serves
    GET  /health               200 when serving

As vLLM does, a request for another model than the one served is a 404, and a
bad request a 400 with OpenAI's error body. `finish_reason` is "length" when
`max_tokens` cut the answer short.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .errors import openai_error
from .extractive import generate, last_user_prompt, tokens


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


def app(model_id: str = "meta-llama/Meta-Llama-3-8B-Instruct") -> FastAPI:
    server = FastAPI(title=f"OpenAI-compatible stand-in ({model_id})", docs_url=None, redoc_url=None)

    @server.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return openai_error(error.status, str(error), error.param)

    @server.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @server.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": 0,
                                            "owned_by": "opea-new-runtime stand-in"}]}

    @server.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request_body(request, model_id)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("`messages` must be a non-empty list of message objects", param="messages")
        prompt = last_user_prompt(messages)
        pieces, finish_reason = generate(prompt, max_tokens(body), stops(body))
        usage = usage_of(prompt, pieces)
        if stream(body):
            return StreamingResponse(chat_events(model_id, pieces, finish_reason, usage, include_usage(body)),
                                     media_type="text/event-stream")
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model_id, "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                             "finish_reason": finish_reason, "logprobs": None}]}

    @server.post("/v1/completions")
    async def completion(request: Request) -> Any:
        body = await request_body(request, model_id)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("`prompt` must be a string", param="prompt")
        pieces, finish_reason = generate(prompt, max_tokens(body), stops(body))
        answer = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                  "model": model_id, "usage": usage_of(prompt, pieces),
                  "choices": [{"index": 0, "text": "".join(pieces), "finish_reason": finish_reason,
                               "logprobs": None}]}
        if stream(body):
            return StreamingResponse(iter([f"data: {json.dumps(answer)}\n\n", "data: [DONE]\n\n"]),
                                     media_type="text/event-stream")
        return answer

    return server


async def request_body(request: Request, model_id: str) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the request body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise BadRequest("`model` is required: the model this server serves", param="model")
    if model != model_id:
        raise BadRequest(f"The model `{model}` does not exist.", status=404, param="model")
    return body


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("`max_tokens` must be a positive whole number", param="max_tokens")
    return value


def stops(body: dict[str, Any]) -> list[str]:
    value = body.get("stop")
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
        raise BadRequest("`stop` must be a string or a list of strings", param="stop")
    return values


def stream(body: dict[str, Any]) -> bool:
    value = body.get("stream", False)
    if not isinstance(value, bool):
        raise BadRequest("`stream` must be true or false", param="stream")
    return value


def include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def usage_of(prompt: str, pieces: list[str]) -> dict[str, int]:
    prompt_tokens = len(tokens(prompt))
    return {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces)}


def chat_events(model_id: str, pieces: list[str], finish_reason: str, usage: dict[str, int],
                with_usage: bool) -> Iterator[str]:
    """vLLM's stream: a role chunk, a chunk per token, a finish chunk, [a usage chunk,] [DONE]."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model_id}

    def event(delta: dict[str, Any], finish: str | None = None) -> str:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    for piece in pieces:
        yield event({"content": piece})
    yield event({}, finish_reason)
    if with_usage:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"
