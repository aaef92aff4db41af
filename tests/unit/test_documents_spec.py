"""Dataprep services beside the flow: which ones, what they are rendered with, and growing and shrinking them."""

from __future__ import annotations

import pytest

from opea_new import render
from opea_new.spec import SpecError, load_pipeline

CHATQNA = """\
name: docs
services:
  - {name: embedding, type: embedding}
  - {name: retriever, type: retriever}
  - {name: llm, type: llm}
  - {name: dataprep, type: dataprep}
"""


def names(services) -> list[str]:
    return [service.name for service in services]


def test_the_default_chain_leaves_a_dataprep_service_beside_the_flow():
    pipeline = load_pipeline(CHATQNA)
    assert pipeline.graph.nodes == ("embedding", "retriever", "llm")
    assert names(pipeline.documents) == ["dataprep"]
    assert [(e.source, e.target) for e in pipeline.graph.edges] == [("embedding", "retriever"), ("retriever", "llm")]


def test_a_dataprep_service_on_an_edge_is_a_step_of_the_flow():
    pipeline = load_pipeline("""\
name: raw
services:
  - {name: collector, type: dataprep}
  - {name: analyzer, type: undefined}
flow:
  - {service: collector, next: [analyzer]}
""")
    assert pipeline.graph.nodes == ("collector", "analyzer") and pipeline.documents == []
    assert render.microservice_answers(pipeline, pipeline.service("collector"))["stub"] == "passthrough"


def test_answers_read_back_to_the_same_pipeline():
    pipeline = load_pipeline(CHATQNA)
    again = type(pipeline).from_answers(pipeline.answers())
    assert again == pipeline and names(again.documents) == ["dataprep"]


def test_the_dataprep_service_is_rendered_with_the_node_that_embeds_the_questions():
    pipeline = load_pipeline(CHATQNA)
    answers = render.microservice_answers(pipeline, pipeline.service("dataprep"))
    assert answers["stub"] == "dataprep"
    assert answers["embedding"] == {"name": "embedding", "port": 6000, "endpoint": "/v1/embeddings", "server": None}
    assert "embedding" not in render.microservice_answers(pipeline, pipeline.service("retriever"))
    assert render.compose_answers(pipeline)["documents"] == ["dataprep"]


def test_a_tei_embedding_node_is_what_dataprep_calls():
    pipeline = load_pipeline(CHATQNA.replace("{name: embedding, type: embedding}",
                                             "{name: tei, type: embedding, server: tei}"))
    embedding = render.microservice_answers(pipeline, pipeline.service("dataprep"))["embedding"]
    assert (embedding["name"], embedding["server"], embedding["endpoint"]) == ("tei", "tei", "/embed")


def test_without_an_embedding_node_dataprep_embeds_as_the_stubs_do():
    pipeline = load_pipeline("name: x\nservices:\n  - {name: retriever, type: retriever}\n"
                             "  - {name: dataprep, type: dataprep}\n")
    assert render.microservice_answers(pipeline, pipeline.service("dataprep"))["embedding"] is None


def test_only_the_retrievers_of_a_pipeline_with_documents_install_the_stores():
    pipeline = load_pipeline(CHATQNA)
    assert render.microservice_answers(pipeline, pipeline.service("retriever"))["stores"] is True
    assert "stores" not in render.microservice_answers(pipeline, pipeline.service("llm"))
    plain = load_pipeline(CHATQNA.replace("  - {name: dataprep, type: dataprep}\n", ""))
    assert "stores" not in render.microservice_answers(plain, plain.service("retriever"))


def test_projects_without_documents_keep_the_compose_answers_of_earlier_releases():
    pipeline = load_pipeline(CHATQNA.replace("  - {name: dataprep, type: dataprep}\n", ""))
    assert "documents" not in render.compose_answers(pipeline)


@pytest.mark.parametrize("spec", [
    "name: x\nservices:\n  - {name: dataprep, type: dataprep}\n",
    "name: x\nservices:\n  - {name: a, type: dataprep}\n  - {name: b, type: dataprep}\nflow: []\n",
])
def test_a_pipeline_of_dataprep_services_only_has_nothing_to_run(spec):
    with pytest.raises(SpecError) as caught:
        load_pipeline(spec)
    assert "services: every service is a dataprep service beside the flow" in str(caught.value)


@pytest.mark.parametrize("flow", ["3", "oops", "[5]", "[{service: [a], next: [b]}]",
                                  "[{service: a, next: [{service: {x: 1}}]}]"])
def test_a_malformed_flow_beside_dataprep_services_is_a_located_problem_not_a_crash(flow):
    with pytest.raises(SpecError) as caught:
        load_pipeline(f"name: x\nservices:\n  - {{name: a, type: dataprep}}\n  - {{name: b, type: dataprep}}\n"
                      f"flow: {flow}\n")
    assert "flow" in str(caught.value)


def test_adding_a_dataprep_service_puts_it_beside_the_flow():
    pipeline = load_pipeline(CHATQNA.replace("  - {name: dataprep, type: dataprep}\n", ""))
    grown = pipeline.add_service(name="docs", type="dataprep")
    assert names(grown.documents) == ["docs"] and grown.graph == pipeline.graph
    stepped = pipeline.add_service(name="ingest", type="dataprep", after=["llm"])
    assert stepped.documents == [] and stepped.graph.predecessors("ingest") == ["llm"]


def test_removing_a_service_beside_the_flow_leaves_the_flow_as_it_was():
    pipeline = load_pipeline(CHATQNA)
    shrunk = pipeline.remove_service("dataprep")
    assert shrunk.documents == [] and shrunk.graph == pipeline.graph
    with pytest.raises(SpecError) as caught:
        load_pipeline("name: x\nservices:\n  - {name: a, type: undefined}\n  - {name: d, type: dataprep}\n"
                      ).remove_service("a")
    assert "nothing to call" in str(caught.value)
