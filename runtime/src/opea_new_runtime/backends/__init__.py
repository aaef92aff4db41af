"""Clients of real model servers, one `httpx.AsyncClient` per model object.

    openai.OpenAICompatibleLLM   any OpenAI-compatible chat server (vLLM, TGI, Ollama, OpenAI, ...)
    tei.TEIEmbedder              a Text Embeddings Inference server running an embedding model
    tei.TEIReranker              a Text Embeddings Inference server running a reranker
    llm_types.Prompt/Completion  what an LLM service's routes exchange with its model

Each has the shape a service's routes expect of a model (`name`, its family's
async method, `aclose()`) and `from_environment()`. Failures raise
`opea_new_runtime.service.BackendError`: 502, or 504 when the server was too slow.
"""

from __future__ import annotations

import httpx

from ..service import BackendError, load_settings

CONNECT_TIMEOUT = 10.0


def http_client(timeout: float, *, headers: dict[str, str] | None = None,
                transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """A client that waits `timeout` seconds for each read (a model may think long) and 10 s to connect."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT), headers=headers,
                             transport=transport)


def backend_timeout() -> float:
    """BACKEND_TIMEOUT, in seconds (default 300)."""
    return load_settings().backend_timeout


def unreachable(name: str, error: httpx.HTTPError) -> BackendError:
    if isinstance(error, httpx.TimeoutException):
        return BackendError(f"{name} did not answer in time", timed_out=True)
    return BackendError(f"cannot reach {name}: {error}")


def failed(name: str, status: int, body: str) -> BackendError:
    return BackendError(f"{name} answered {status}: {body[:500]}", status=status)
