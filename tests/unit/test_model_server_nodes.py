"""Model-server nodes (`server:` tei | vllm | tgi): the spec, its defaults, its refusals, and what renders."""

from __future__ import annotations

import pytest

from opea_new import catalog
from opea_new.spec import SpecError, load_pipeline
from opea_new.spec.schema import spec_json_schema

CHATQNA_XEON = """
name: chatqna-xeon
services:
  - {name: tei-embedding, type: embedding, server: tei, port: 6006}
  - {name: retriever, type: retriever}
  - {name: tei-reranking, type: rerank, server: tei, port: 8808}
  - {name: vllm, type: llm, server: vllm, port: 9009, model: Intel/neural-chat-7b-v3-3}
"""


def test_server_nodes_get_the_servers_route_image_and_default_model():
    pipeline = load_pipeline(CHATQNA_XEON)
    embedding, retriever, rerank, llm = pipeline.services
    assert (embedding.server, embedding.endpoint, embedding.model) == ("tei", "/embed", "BAAI/bge-base-en-v1.5")
    assert embedding.image == rerank.image == catalog.find_server("tei").image
    assert (rerank.endpoint, rerank.model) == ("/rerank", "BAAI/bge-reranker-base")
    assert (llm.server, llm.endpoint, llm.model, llm.image) == (
        "vllm", "/v1/chat/completions", "Intel/neural-chat-7b-v3-3", catalog.find_server("vllm").image)
    assert retriever.server is None and retriever.model is None and retriever.generated
    assert not any(service.generated for service in (embedding, rerank, llm))  # no code for a server node
    assert pipeline.megaservice.protocol == "chat"


def test_answers_carry_server_and_model_and_read_back_the_same():
    pipeline = load_pipeline(CHATQNA_XEON)
    answers = pipeline.answers()
    assert answers["services"][0]["server"] == "tei" and answers["services"][0]["model"] == "BAAI/bge-base-en-v1.5"
    # a node that is not a server keeps the answers' shape of earlier releases
    assert set(answers["services"][1]) == {"name", "type", "port", "endpoint", "image"}
    assert type(pipeline).from_answers(answers) == pipeline


def test_an_image_replaces_the_servers_image():
    pipeline = load_pipeline("name: p\nservices:\n  - {name: llm, type: llm, server: tgi, image: my/tgi:2}\n")
    assert pipeline.services[0].image == "my/tgi:2" and pipeline.services[0].server == "tgi"


@pytest.mark.parametrize(("service", "where", "message"), [
    ("{name: r, type: retriever, server: tei}", "services[0].server",
     "tei serves embedding and rerank nodes, not retriever; no model server serves retriever nodes"),
    ("{name: e, type: embedding, server: vllm}", "services[0].server",
     "vllm serves llm nodes, not embedding; embedding nodes can be tei"),
    ("{name: l, type: llm, server: ollama}", "services[0].server", "unknown model server 'ollama'"),
    ("{name: l, type: llm, model: some/model}", "services[0].model", "set `server`"),
    ("{name: l, type: llm, server: tgi, model: 'not a model!'}", "services[0].model", "is not a model id"),
    ("{name: l, type: llm, server: 3}", "services[0].server", "must be a string"),
])
def test_bad_server_nodes_are_located_refusals(service, where, message):
    with pytest.raises(SpecError) as caught:
        load_pipeline(f"name: p\nservices:\n  - {service}\n")
    lines = [str(problem) for problem in caught.value.problems]
    assert any(f"{where}: " in line and message in line for line in lines), lines


def test_the_json_schema_offers_server_and_model():
    service = spec_json_schema()["$defs"]["ServiceSpec"]["properties"]
    assert {"server", "model"} <= set(service)
    assert "tei" in service["server"]["description"] and "vllm" in service["server"]["description"]


def test_every_server_serves_a_known_type_with_a_default_model():
    for server in catalog.SERVERS:
        for service_type in server.types:
            assert catalog.find(service_type) is not None and service_type in catalog.DEFAULT_MODELS
            assert server.endpoint(service_type).startswith("/")
