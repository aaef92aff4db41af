"""The catalog: every comps ServiceType member, with unique defaults."""

from __future__ import annotations

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
