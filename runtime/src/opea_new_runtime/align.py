"""What flows between nodes: each node gets the input its type expects.

Generated services mirror the GenAIComps component of their type, so a published
OPEA image can replace one; they stay strict, and the megaservice adapts shapes
between them, keyed by the type of the node that receives (docs: "Data between
services"):

    embedding  EmbeddingRequest {"input"}                          from text | query | initial_query
    retriever  EmbedDoc      {"text", "embedding", k?, ...}        embedding also from an OpenAI EmbeddingResponse
    rerank     SearchedDoc   {"initial_query", "retrieved_docs": [{"text"}], top_n?}
    llm        LLMParamsDoc  {"query", "documents": [str], "stream", "max_tokens", ...}
                             query from query | text | initial_query, documents from
                             documents | reranked_docs | retrieved_docs
    guardrail  TextDoc       {"text"}                              from text | query | initial_query
    any other  the whole object, as it is

A node that is a model server (`server:` in the spec) is sent what that server
speaks, and its answer is read back into the documents above, as ChatQnA's
megaservice does:

    tei   embedding  POST /embed  {"inputs": text}             → [[float]]        → {"text", "embedding"}
    tei   rerank     POST /rerank {"query", "texts": [str]}    → [{index, score}] → {"query", "documents"} (top_n, 1)
    vllm  llm        OpenAI chat completions: {"model", "messages": [the RAG prompt], "stream", "max_tokens", ...}
    tgi   llm        the same (TGI's Messages API)

Fields a node's own inputs lack are taken from what its upstream nodes answered
(`carried`: the request, then every ancestor that ran, in flow order), so data
flows through nodes that do not own it: an llm behind a guardrail still gets the
retriever's documents.

When the fields a type needs are missing, the input goes as it is and the
service's own validation error (a 4xx, reported as 502 naming the node) says
what is wrong. `downstream_black_list` (flow control between the megaservice and
the orchestrator) is never sent to a service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .prompts import rag_prompt

BLACK_LIST = "downstream_black_list"

EMBEDDING_TEXT = ("text", "query", "initial_query", "input", "prompt", "inputs")
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
# What an OpenAI-compatible server (vLLM, TGI) takes besides model, messages and stream.
OPENAI_OPTIONS = ("max_tokens", "temperature", "top_p", "frequency_penalty", "presence_penalty", "stop", "seed")
DEFAULT_TOP_N = 1  # ChatQnA's (and the generated rerank's) when the request names none


def node_inputs(service_type: str, inputs: Any, *, stream: bool | None = None, server: str | None = None,
                model: str | None = None, carried: Callable[[], dict] | None = None) -> Any:
    """The input a node of `service_type` (lower-case ServiceType name) receives, built from `inputs`.

    `server`: the node is that model server; `model` the model it serves; `carried()`: what the upstream nodes
    answered, asked for only when `inputs` lack what the node needs.
    """
    if not isinstance(inputs, dict):
        return inputs
    inputs = {key: value for key, value in inputs.items() if key != BLACK_LIST}
    adapt = _SERVER_ADAPTERS.get((server, service_type)) if server else _ADAPTERS.get(service_type)
    if adapt is None:
        return inputs
    adapted = adapt(inputs)
    if carried is not None and _lacks(service_type, adapted, inputs):
        upstream = {key: value for key, value in carried().items() if key != BLACK_LIST}
        adapted = adapt({**upstream, **inputs}) or adapted
    if adapted is None:
        return inputs
    if stream is not None and service_type in ("llm", "lvm"):
        adapted["stream"] = stream
        if server and stream:
            adapted["stream_options"] = {"include_usage": True}  # usage arrives in the stream's last chunk
    if server and service_type == "llm" and model:
        adapted["model"] = model
    return adapted


def node_outputs(service_type: str, data: Any, inputs: Any, *, server: str | None = None,
                 carried: Callable[[], dict] | None = None) -> Any:
    """A node's answer in the shape the next nodes read (OpenAI-style answers get their OPEA fields)."""
    if service_type == "embedding":
        embedding = _embedding(data)
        if embedding is not None and not (isinstance(data, dict) and "embedding" in data):
            text = _first_text(inputs, EMBEDDING_TEXT) if isinstance(inputs, dict) else None
            return {"text": text or "", "embedding": embedding}
    if service_type == "rerank" and server == "tei" and isinstance(data, list) and isinstance(inputs, dict):
        top_n = (carried() if carried is not None else {}).get("top_n")
        return _reranked(data, inputs, top_n if isinstance(top_n, int) and top_n > 0 else DEFAULT_TOP_N)
    if service_type in ("llm", "lvm") and isinstance(data, dict) and "text" not in data and "choices" in data:
        from .protocol import text_of

        return {**data, "text": text_of(data)}
    return data


def _lacks(service_type: str, adapted: dict | None, inputs: dict) -> bool:
    """Whether a node's adapted input misses what upstream nodes may have (an llm: its documents)."""
    return adapted is None or (service_type == "llm" and _documents(inputs) is None)


# ---------------------------------------------------------------- per type


def _embedding_input(inputs: dict) -> dict | None:
    text = _first_text(inputs, EMBEDDING_TEXT)
    return None if text is None else {"input": text}


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


# ---------------------------------------------------------------- per model server


def _tei_embed_input(inputs: dict) -> dict | None:
    text = _first_text(inputs, EMBEDDING_TEXT)
    return None if text is None else {"inputs": text}


def _tei_rerank_input(inputs: dict) -> dict | None:
    query = _first_text(inputs, RERANK_QUERY)
    documents = _documents(inputs)
    if query is None or documents is None:
        return None
    return {"query": query, "texts": documents}


def _openai_chat_input(inputs: dict) -> dict | None:
    query = _first_text(inputs, LLM_QUERY)
    if query is None:
        return None
    options = _options(inputs, OPENAI_OPTIONS)
    if "max_tokens" not in options and isinstance(inputs.get("max_new_tokens"), int):
        options["max_tokens"] = inputs["max_new_tokens"]
    prompt = rag_prompt(query, _documents(inputs) or [], inputs.get("chat_template") or None)
    return {"messages": [{"role": "user", "content": prompt}], **options}


def _reranked(scores: list, inputs: dict, top_n: int) -> dict:
    """TEI's [{index, score}] as the LLMParamsDoc the generated rerank answers: the best top_n documents."""
    texts = inputs.get("texts") if isinstance(inputs.get("texts"), list) else []
    ranked = sorted((item for item in scores if isinstance(item, dict) and isinstance(item.get("index"), int)
                     and 0 <= item["index"] < len(texts)), key=lambda item: -float(item.get("score") or 0))
    return {"query": inputs.get("query", ""), "documents": [texts[item["index"]] for item in ranked[:top_n]]}


_SERVER_ADAPTERS = {
    ("tei", "embedding"): _tei_embed_input,
    ("tei", "rerank"): _tei_rerank_input,
    ("vllm", "llm"): _openai_chat_input,
    ("tgi", "llm"): _openai_chat_input,
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
