"""The catalog of service types: the 20 members of comps.ServiceType and what opea-new gives each.

This is the only place that knows per-type defaults. Templates receive
resolved values (port, endpoint, stub family), never look them up.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

# dataprep: a dataprep service beside the flow (OPEA's dataprep API over a vector store); on an edge it is a step.
STUB_FAMILIES = ("embedding", "retriever", "rerank", "llm", "guardrail", "dataprep", "passthrough")

_ANY = "any JSON object"
_TRACED = "the same object + its name appended to `trace`"


@dataclass(frozen=True)
class Payload:
    """One request document a generated service accepts and what it answers, as opea-comps 1.5 does.

    `request` and `answer` are classes of comps/cores/proto (opea-comps 1.5); `note` says
    how the answer differs from a plain `answer` (fields added, a stream).
    """

    request: str
    answer: str
    example: dict[str, Any] = field(hash=False)  # a minimal valid request body of this row
    note: str = ""

    @property
    def answered(self) -> str:
        return f"{self.answer} {self.note}" if self.note else self.answer


_VECTOR = [0.1, 0.2, 0.3]
_RETRIEVED = [{"text": "OPEA is a framework for GenAI pipelines."}]
_CHAT = [{"role": "user", "content": "What is OPEA?"}]
_PAYLOADS: dict[str, tuple[Payload, ...]] = {
    "embedding": (
        Payload("TextDoc", "EmbedDoc", {"text": "What is OPEA?"}),
        Payload("EmbeddingRequest", "EmbeddingResponse", {"input": "What is OPEA?"}),
    ),
    "retriever": (
        Payload("EmbedDoc", "SearchedDoc", {"text": "What is OPEA?", "embedding": _VECTOR}),
        Payload("RetrievalRequest", "RetrievalResponse", {"embedding": _VECTOR, "input": "What is OPEA?"}),
        Payload("RetrievalRequestArangoDB", "RetrievalResponse", {"input": "What is OPEA?", "graph_name": "GRAPH"},
                "(no vector: the question is embedded by the retriever)"),
        Payload("ChatCompletionRequest", "ChatCompletionRequest", {"messages": _CHAT, "embedding": _VECTOR},
                "+ retrieved_docs, documents"),
    ),
    "rerank": (
        Payload("SearchedDoc", "LLMParamsDoc", {"initial_query": "What is OPEA?", "retrieved_docs": _RETRIEVED}),
        Payload("SearchedMultimodalDoc", "LLMParamsDoc",
                {"initial_query": "What is OPEA?", "retrieved_docs": _RETRIEVED, "metadata": [{"source": "opea.md"}]},
                "(comps' TEI reranking reads it as a SearchedDoc: metadata is not passed on)"),
        Payload("RerankingRequest", "RerankingResponse", {"input": "What is OPEA?", "retrieved_docs": _RETRIEVED}),
        Payload("ChatCompletionRequest", "ChatCompletionRequest", {"messages": _CHAT, "retrieved_docs": _RETRIEVED},
                "+ reranked_docs, documents"),
    ),
    "llm": (
        Payload("LLMParamsDoc", "CompletionResponse", {"query": "What is OPEA?", "stream": False},
                "(choices[].text; with `stream`, its default: SSE text_completion events, then [DONE])"),
        Payload("ChatCompletionRequest", "ChatCompletionResponse", {"messages": _CHAT},
                "(with `stream`: SSE chat.completion.chunk events, then [DONE])"),
        Payload("ChatCompletionRequest", "CompletionResponse", {"messages": "What is OPEA?"},
                "(a string prompt: choices[].text; with `stream`: SSE text_completion events, then [DONE])"),
        Payload("SearchedDoc", "CompletionResponse", {"initial_query": "What is OPEA?", "retrieved_docs": _RETRIEVED},
                "(choices[].text, never streamed)"),
    ),
    "guardrail": (  # allowed: the input as it came; blocked: a refusal TextDoc with downstream_black_list [".*"]
        Payload("TextDoc", "TextDoc", {"text": "What is OPEA?"}, "+ blocked"),
        Payload("GeneratedDoc", "GeneratedDoc", {"text": "OPEA is a framework.", "prompt": "What is OPEA?"},
                "+ blocked"),
        Payload("LLMParamsDoc", "LLMParamsDoc", {"query": "What is OPEA?"}, "+ blocked"),
    ),
}


@dataclass(frozen=True)
class ServiceTypeInfo:
    name: str  # lower-case, as written in specs
    enum_name: str  # the comps.ServiceType member
    default_port: int
    default_endpoint: str
    stub: str  # which working fake model the generated service carries
    summary: str
    payloads: tuple[Payload, ...] = ()  # what it accepts and answers; none: any JSON object, passed through

    @property
    def request_schema(self) -> str:
        """The GenAIComps classes the generated service accepts, in the order it tries them."""
        return " | ".join(dict.fromkeys(p.request for p in self.payloads)) or _ANY

    @property
    def response_schema(self) -> str:
        return " | ".join(dict.fromkeys(p.answered for p in self.payloads)) or _TRACED


def _passthrough(name: str, port: int, endpoint: str, summary: str) -> ServiceTypeInfo:
    return ServiceTypeInfo(name, name.upper(), port, endpoint, "passthrough", summary)


def _stubbed(name: str, port: int, endpoint: str, summary: str) -> ServiceTypeInfo:
    return ServiceTypeInfo(name, name.upper(), port, endpoint, name, summary, _PAYLOADS[name])


TYPES: tuple[ServiceTypeInfo, ...] = (
    _passthrough("gateway", 8090, "/v1/gateway", "an entry service in front of other services"),
    _stubbed("embedding", 6000, "/v1/embeddings", "text → vector (stub: hashed bag of words; real: a TEI server)"),
    _stubbed("retriever", 7000, "/v1/retrieval", "vector → the closest documents (stub: an in-memory corpus)"),
    _stubbed("rerank", 8000, "/v1/reranking", "documents → the best ones for the query (stub: lexical overlap)"),
    _stubbed("llm", 9000, "/v1/chat/completions",
             "query + documents → answer (stub: extractive, streamed; real: any OpenAI-compatible server)"),
    _passthrough("asr", 9099, "/v1/audio/transcriptions", "speech → text"),
    _passthrough("tts", 9088, "/v1/audio/speech", "text → speech"),
    _stubbed("guardrail", 9090, "/v1/guardrails", "blocks unsafe input or output (stub: a blocklist)"),
    _passthrough("vectorstore", 6010, "/v1/vectorstore", "stores and searches vectors"),
    _passthrough("dataprep", 6007, "/v1/dataprep/ingest",
                 "beside the flow: OPEA's dataprep API, documents into the store the retriever searches"),
    _passthrough("undefined", 9100, "/v1/process", "any custom step"),
    _passthrough("ragas", 9200, "/v1/ragas", "evaluates answers (RAGAS scores)"),
    _passthrough("lvm", 9399, "/v1/lvm", "a large vision-language model"),
    _passthrough("knowledge_graph", 8060, "/v1/graphs", "queries a knowledge graph"),
    _passthrough("web_retriever", 7077, "/v1/web_retrieval", "retrieves documents from the web"),
    _passthrough("image2video", 9369, "/v1/image2video", "image → video"),
    _passthrough("text2image", 9379, "/v1/text2image", "text → image"),
    _passthrough("animation", 9066, "/v1/animation", "animates an avatar"),
    _passthrough("image2image", 9389, "/v1/image2image", "image → image"),
    _passthrough("text2sql", 9097, "/v1/text2sql", "natural language → SQL"),
)

_BY_NAME = {info.name: info for info in TYPES}


def names() -> list[str]:
    return [info.name for info in TYPES]


def find(name: str) -> ServiceTypeInfo | None:
    """The type called `name`, case-insensitively; None when there is none."""
    return _BY_NAME.get(name.strip().lower()) if isinstance(name, str) else None


def get(name: str) -> ServiceTypeInfo:
    info = find(name)
    if info is None:
        raise KeyError(unknown_type_message(name))
    return info


def unknown_type_message(name: str) -> str:
    close = difflib.get_close_matches(str(name).lower(), names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known types: {', '.join(names())}"
    return f"unknown service type {name!r}{hint}"


def next_free_port(start: int, used: set[int]) -> int:
    """`start`, or the first port above it that is not in `used`."""
    port = start
    while port in used:
        port += 1
    if port > 65535:
        raise ValueError(f"no free port at or above {start}")
    return port


# ---------------------------------------------------------------- model servers

@dataclass(frozen=True)
class ModelServerInfo:
    """A model server a node can be directly (`server:` in a spec): no generated code, its published image."""

    name: str  # as written in specs
    image: str  # its published CPU image, the default of the node's `image`
    endpoints: tuple[tuple[str, str], ...]  # (service type it serves, the route the megaservice calls)
    summary: str

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(service_type for service_type, _ in self.endpoints)

    def endpoint(self, service_type: str) -> str:
        return dict(self.endpoints)[service_type]


# ChatQnA on Xeon's servers (GenAIExamples ChatQnA/docker_compose/intel/cpu/xeon/compose.yaml).
SERVERS: tuple[ModelServerInfo, ...] = (
    ModelServerInfo("tei", "ghcr.io/huggingface/text-embeddings-inference:cpu-1.7",
                    (("embedding", "/embed"), ("rerank", "/rerank")),
                    "Text Embeddings Inference: {inputs} → vectors on /embed, {query, texts} → scores on /rerank"),
    ModelServerInfo("vllm", "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1",
                    (("llm", "/v1/chat/completions"),),
                    "vLLM's OpenAI-compatible server"),
    ModelServerInfo("tgi", "ghcr.io/huggingface/text-generation-inference:2.4.0-intel-cpu",
                    (("llm", "/v1/chat/completions"),),
                    "Text Generation Inference's OpenAI-compatible Messages API"),
)
# The model a server node loads unless the spec names one (ChatQnA's defaults).
DEFAULT_MODELS = {
    "embedding": "BAAI/bge-base-en-v1.5",
    "rerank": "BAAI/bge-reranker-base",
    "llm": "meta-llama/Meta-Llama-3-8B-Instruct",
}

_SERVERS_BY_NAME = {server.name: server for server in SERVERS}


def server_names() -> list[str]:
    return [server.name for server in SERVERS]


def find_server(name: str) -> ModelServerInfo | None:
    return _SERVERS_BY_NAME.get(name) if isinstance(name, str) else None


def server_problem(server: str, service_type: str) -> str | None:
    """Why a node of `service_type` cannot be a `server` node; None when it can."""
    info = find_server(server)
    if info is None:
        return f"unknown model server {server!r}; known servers: {', '.join(server_names())}"
    if service_type not in info.types:
        servers = [s.name for s in SERVERS if service_type in s.types]
        can = f"; {service_type} nodes can be {' or '.join(servers)}" if servers else (
            f"; no model server serves {service_type} nodes")
        return f"{info.name} serves {' and '.join(info.types)} nodes, not {service_type}{can}"
    return None
