"""Any OpenAI-compatible chat server (vLLM, TGI, Ollama, OpenAI, ...) as an LLM service's model.

    LLM_ENDPOINT      its base URL, e.g. http://vllm:8000 (…/v1 works too)
    LLM_MODEL_ID      the model to ask for, e.g. meta-llama/Llama-3.1-8B-Instruct
    LLM_API_KEY       sent as a bearer token, when set (a secret: keep it in .env, never in git)
    BACKEND_TIMEOUT   seconds it may stay silent (default 300)

It is called as `POST {base}/v1/chat/completions`, streamed (server-sent
events) or not.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..service import BackendError
from . import backend_timeout, failed, http_client, unreachable
from .llm_types import Completion, Prompt


class OpenAICompatibleLLM:
    def __init__(self, endpoint: str, *, model_id: str = "", api_key: str = "", timeout: float = 300.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        base = endpoint.rstrip("/")
        self.url = f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"
        self.model_id = model_id
        self.name = f"OpenAI-compatible server at {base}" + (f" ({model_id})" if model_id else "")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = http_client(timeout, headers=headers, transport=transport)

    @classmethod
    def from_environment(cls) -> OpenAICompatibleLLM:
        return cls(os.environ["LLM_ENDPOINT"], model_id=os.environ.get("LLM_MODEL_ID", ""),
                   api_key=os.environ.get("LLM_API_KEY", ""), timeout=backend_timeout())

    def request(self, prompt: Prompt, *, stream: bool) -> dict[str, Any]:
        """The body sent for `prompt`: only what it sets (the server's defaults stand for the rest)."""
        body: dict[str, Any] = {"messages": prompt.messages, "stream": stream}
        model = prompt.model or self.model_id
        if model:
            body["model"] = model
        for key in ("max_tokens", "temperature", "top_p"):
            if getattr(prompt, key) is not None:
                body[key] = getattr(prompt, key)
        if prompt.stop:
            body["stop"] = prompt.stop
        return body

    async def complete(self, prompt: Prompt) -> Completion:
        try:
            response = await self._client.post(self.url, json=self.request(prompt, stream=False))
        except httpx.HTTPError as error:
            raise unreachable(self.name, error) from None
        if response.is_error:
            raise failed(self.name, response.status_code, response.text)
        try:
            answer = response.json()
            choice = answer["choices"][0]
            usage = answer.get("usage") or {}
            return Completion(choice["message"]["content"] or "", choice.get("finish_reason") or "stop",
                              usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"{self.name} answered something other than a chat completion") from None

    async def stream(self, prompt: Prompt) -> AsyncIterator[str]:
        """The answer's text pieces as the server sends them; an error event in the stream is a BackendError."""
        try:
            async with self._client.stream("POST", self.url, json=self.request(prompt, stream=True)) as response:
                if response.is_error:
                    raise failed(self.name, response.status_code, (await response.aread()).decode(errors="replace"))
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    piece = _delta_text(data)
                    if piece:
                        yield piece
        except httpx.HTTPError as error:
            raise unreachable(self.name, error) from None

    async def aclose(self) -> None:
        await self._client.aclose()


def _delta_text(data: str) -> str:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        return ""
    if not isinstance(chunk, dict):
        return ""
    if chunk.get("error"):
        raise BackendError(f"the stream reported an error: {chunk['error']}")
    choices = chunk.get("choices") or [{}]
    first = choices[0] if isinstance(choices[0], dict) else {}
    delta = first.get("delta") or {}
    return delta.get("content") or first.get("text") or ""
