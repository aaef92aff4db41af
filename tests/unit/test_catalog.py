"""The catalog: every comps ServiceType member, with unique defaults, and what each type accepts and answers."""

from __future__ import annotations

import json

import pytest

from opea_new import catalog

COMPS_SERVICE_TYPES = [  # comps.ServiceType members 0–19 in opea-comps 1.5
    "GATEWAY", "EMBEDDING", "RETRIEVER", "RERANK", "LLM", "ASR", "TTS", "GUARDRAIL", "VECTORSTORE", "DATAPREP",
    "UNDEFINED", "RAGAS", "LVM", "KNOWLEDGE_GRAPH", "WEB_RETRIEVER", "IMAGE2VIDEO", "TEXT2IMAGE", "ANIMATION",
    "IMAGE2IMAGE", "TEXT2SQL",
]


def test_the_catalog_is_comps_service_types_in_order():
    assert [info.enum_name for info in catalog.TYPES] == COMPS_SERVICE_TYPES
    assert catalog.names() == [name.lower() for name in COMPS_SERVICE_TYPES]


def test_defaults_are_unique_and_opea_conventional():
    ports = [info.default_port for info in catalog.TYPES]
    assert len(ports) == len(set(ports))
    assert 8888 not in ports  # the megaservice's
    conventional = {"embedding": 6000, "retriever": 7000, "rerank": 8000, "llm": 9000, "dataprep": 6007}
    assert {name: catalog.get(name).default_port for name in conventional} == conventional
    assert all(info.default_endpoint.startswith("/v1/") for info in catalog.TYPES)


def test_the_five_main_types_have_their_own_stub_and_the_rest_pass_through():
    stubs = {info.name: info.stub for info in catalog.TYPES}
    assert {name for name, stub in stubs.items() if stub != "passthrough"} == {
        "embedding", "retriever", "rerank", "llm", "guardrail"}
    assert set(stubs.values()) <= set(catalog.STUB_FAMILIES)


def test_lookup_is_case_insensitive_and_suggests():
    assert catalog.find("LLM") is catalog.get("llm")
    assert catalog.find("nope") is None
    assert "did you mean 'retriever'" in catalog.unknown_type_message("retreiver")


def test_next_free_port_skips_used_ports():
    assert catalog.next_free_port(9100, {9100, 9101, 9103}) == 9102


# The comps/cores/proto classes the payload table may name, each with its required fields (no default), read with
# `ast` from opea-comps 1.5's wheel (comps/cores/proto/docarray.py and api_protocol.py, base classes included).
COMPS_PROTO_REQUIRED = {
    "TextDoc": set(), "EmbedDoc": {"text", "embedding"}, "SearchedDoc": {"retrieved_docs", "initial_query"},
    "SearchedMultimodalDoc": {"retrieved_docs", "initial_query", "metadata"},
    "LLMParamsDoc": {"query"}, "GeneratedDoc": {"text", "prompt"},
    "EmbeddingRequest": {"input"}, "EmbeddingResponse": {"data"},
    "RetrievalRequest": set(), "RetrievalRequestArangoDB": set(), "RetrievalResponse": {"retrieved_docs"},
    "RerankingRequest": {"input", "retrieved_docs"}, "RerankingResponse": {"reranked_docs"},
    "ChatCompletionRequest": {"messages"}, "ChatCompletionResponse": {"choices", "model", "usage"},
    "CompletionResponse": {"choices", "model", "usage"},
}
# What each generated service needs beyond comps' required fields (its schemas.py.jinja, strict on these).
SERVICE_REQUIRED = {
    ("embedding", "TextDoc"): {"text"},
    ("retriever", "RetrievalRequest"): {"embedding"},  # this row's; the ArangoDB row has the question alone
    ("retriever", "RetrievalRequestArangoDB"): {"input"},
    ("retriever", "ChatCompletionRequest"): {"embedding"},
    ("guardrail", "TextDoc"): {"text"},
}
ROWS = [(info.name, row) for info in catalog.TYPES for row in info.payloads]


def test_exactly_the_stubbed_types_have_a_payload_table():
    assert {info.name for info in catalog.TYPES if info.payloads} == {
        info.name for info in catalog.TYPES if info.stub != "passthrough"}


@pytest.mark.parametrize(("type_name", "row"), ROWS, ids=[f"{name}-{row.request}" for name, row in ROWS])
def test_every_row_names_comps_classes_and_its_example_is_a_minimal_valid_request(type_name, row):
    assert row.request in COMPS_PROTO_REQUIRED and row.answer in COMPS_PROTO_REQUIRED
    needed = COMPS_PROTO_REQUIRED[row.request] | SERVICE_REQUIRED.get((type_name, row.request), set())
    assert needed <= set(row.example), f"{row.request} needs {sorted(needed - set(row.example))}"
    assert json.loads(json.dumps(row.example)) == row.example  # a JSON body as sent


def test_rows_of_one_type_are_told_apart_by_their_examples():
    for info in catalog.TYPES:
        shapes = [(frozenset(row.example), type(row.example.get("messages"))) for row in info.payloads]
        assert len(shapes) == len(set(shapes)), info.name


def test_the_llm_answers_a_list_of_messages_with_a_chat_and_any_prompt_with_a_text_completion():
    answers = {type(row.example["messages"]): row.answer
               for row in catalog.get("llm").payloads if row.request == "ChatCompletionRequest"}
    assert answers == {list: "ChatCompletionResponse", str: "CompletionResponse"}
    prompts = [row.answer for row in catalog.get("llm").payloads if row.request in ("SearchedDoc", "LLMParamsDoc")]
    assert prompts == ["CompletionResponse", "CompletionResponse"]  # comps 1.5: client.completions.create


def test_a_pipeline_request_travels_on_with_what_the_service_added():
    chats = {name: row.note for name, row in ROWS if row.request == row.answer == "ChatCompletionRequest"}
    assert chats == {"retriever": "+ retrieved_docs, documents", "rerank": "+ reranked_docs, documents"}
    assert all(row.request == row.answer and "blocked" in row.note for row in catalog.get("guardrail").payloads)


def test_the_schema_strings_are_derived_from_the_rows():
    assert catalog.get("embedding").request_schema == "TextDoc | EmbeddingRequest"
    assert catalog.get("embedding").response_schema == "EmbedDoc | EmbeddingResponse"
    assert catalog.get("retriever").request_schema == (
        "EmbedDoc | RetrievalRequest | RetrievalRequestArangoDB | ChatCompletionRequest")
    assert catalog.get("asr").request_schema == "any JSON object"
    assert "trace" in catalog.get("asr").response_schema
