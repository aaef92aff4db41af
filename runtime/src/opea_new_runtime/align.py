"""What flows between nodes: each node gets the input its type expects.

Generated services mirror the GenAIComps component of their type, so a published
OPEA image can replace one; they stay strict, and the megaservice adapts shapes
between them, keyed by the type of the node that receives (docs: "Data between
services"):

    embedding  TextDoc       {"text"}                              from text | query | initial_query
    retriever  EmbedDoc      {"text", "embedding", k?, ...}        embedding also from an OpenAI EmbeddingResponse
    rerank     SearchedDoc   {"initial_query", "retrieved_docs": [{"text"}], top_n?}
    llm        LLMParamsDoc  {"query", "documents": [str], "stream", "max_tokens", ...}
                             query from query | text | initial_query, documents from
                             documents | reranked_docs | retrieved_docs
    guardrail  TextDoc       {"text"}                              from text | query | initial_query
    any other  the whole object, as it is

When the fields a type needs are missing, the input goes as it is and the
service's own validation error (a 4xx, reported as 502 naming the node) says
what is wrong. `downstream_black_list` (flow control between the megaservice and
the orchestrator) is never sent to a service.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BLACK_LIST = "downstream_black_list"

EMBEDDING_TEXT = ("text", "query", "initial_query", "input", "prompt")
QUERY_TEXT = ("text", "query", "initial_query")
LLM_QUERY = ("query", "text", "initial_query", "prompt")
RERANK_QUERY = ("initial_query", "query", "text")
DOCUMENTS = ("documents", "reranked_docs", "retrieved_docs")

RETRIEVER_OPTIONS = (
    "search_type", "k", "distance_threshold", "fetch_k", "lambda_mult", "score_threshold", "constraints",
    "index_name",
)
RERANK_OPTIONS = ("top_n",)
# LLMParamsDoc's fields besides query/documents (LLMParams' `id` and `index_name` are not among them).
LLM_OPTIONS = (
    "model", "max_tokens", "max_new_tokens", "top_k", "top_p", "typical_p", "temperature", "frequency_penalty",
    "presence_penalty", "repetition_penalty", "stream", "language", "chat_template", "input_guardrail_params",
    "output_guardrail_params",
)


def node_inputs(service_type: str, inputs: Any, *, stream: bool | None = None) -> Any:
    """The input a node of `service_type` (lower-case ServiceType name) receives, built from `inputs`."""
    if not isinstance(inputs, dict):
        return inputs
    inputs = {key: value for key, value in inputs.items() if key != BLACK_LIST}
    adapt = _ADAPTERS.get(service_type)
    adapted = adapt(inputs) if adapt else None
    if adapted is None:
        return inputs
    if stream is not None and service_type in ("llm", "lvm"):
        adapted["stream"] = stream
    return adapted


def node_outputs(service_type: str, data: Any, inputs: Any) -> Any:
    """A node's answer in the shape the next nodes read (OpenAI-style answers get their OPEA fields)."""
    if service_type == "embedding":
        embedding = _embedding(data)
        if embedding is not None and not (isinstance(data, dict) and "embedding" in data):
            text = _first_text(inputs, EMBEDDING_TEXT) if isinstance(inputs, dict) else None
            return {"text": text or "", "embedding": embedding}
    if service_type in ("llm", "lvm") and isinstance(data, dict) and "text" not in data and "choices" in data:
        from .protocol import text_of

        return {**data, "text": text_of(data)}
    return data


# ---------------------------------------------------------------- per type


def _embedding_input(inputs: dict) -> dict | None:
    text = _first_text(inputs, EMBEDDING_TEXT)
    return None if text is None else {"text": text}


def _retriever_input(inputs: dict) -> dict | None:
    text = _first_text(inputs, QUERY_TEXT)
    embedding = _embedding(inputs)
    if text is None or embedding is None:
        return None
    return {"text": text, "embedding": embedding, **_options(inputs, RETRIEVER_OPTIONS)}


def _rerank_input(inputs: dict) -> dict | None:
    query = _first_text(inputs, RERANK_QUERY)
    documents = _documents(inputs)
    if query is None or documents is None:
        return None
    retrieved = [{"text": document} for document in documents]
    return {"initial_query": query, "retrieved_docs": retrieved, **_options(inputs, RERANK_OPTIONS)}


def _llm_input(inputs: dict) -> dict | None:
    query = _first_text(inputs, LLM_QUERY)
    if query is None:
        return None
    adapted: dict[str, Any] = {"query": query}
    documents = _documents(inputs)
    if documents is not None:
        adapted["documents"] = documents
    adapted.update(_options(inputs, LLM_OPTIONS))
    return adapted


def _guardrail_input(inputs: dict) -> dict | None:
    text = _first_text(inputs, QUERY_TEXT)
    return None if text is None else {"text": text}


_ADAPTERS = {
    "embedding": _embedding_input,
    "retriever": _retriever_input,
    "rerank": _rerank_input,
    "llm": _llm_input,
    "guardrail": _guardrail_input,
}


# ---------------------------------------------------------------- fields


def _first_text(inputs: dict, keys: Iterable[str]) -> str | None:
    for key in keys:
        value = inputs.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            return " ".join(value)
    return None


def _documents(inputs: dict) -> list[str] | None:
    for key in DOCUMENTS:
        value = inputs.get(key)
        if isinstance(value, list):
            return [_document_text(item) for item in value]
    return None


def _document_text(document: Any) -> str:
    if isinstance(document, dict):
        return str(document.get("text", document.get("content", "")))
    return str(document)


def _embedding(data: Any) -> list | None:
    """An embedding vector from an EmbedDoc, an OpenAI EmbeddingResponse or a bare (TEI) list."""
    if isinstance(data, dict):
        if isinstance(data.get("embedding"), list):
            return data["embedding"]
        items = data.get("data")
        if isinstance(items, list) and items and isinstance(items[0], dict):
            vector = items[0].get("embedding")
            return vector if isinstance(vector, list) else None
        return None
    if isinstance(data, list) and data:
        return data[0] if isinstance(data[0], list) else data if _numbers(data) else None
    return None


def _numbers(values: list) -> bool:
    return all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)


def _options(inputs: dict, keys: Iterable[str]) -> dict[str, Any]:
    return {key: inputs[key] for key in keys if inputs.get(key) is not None}
