"""The graph model, normalisation of specs, and the edits add-service/remove-service make."""

from __future__ import annotations

import pytest

from opea_new.spec import Edge, Graph, GraphError, Pipeline, SpecError, default_pipeline, load_pipeline
from tests.conftest import SHARED_SPECS

DAG = """
name: dag
services:
  - {name: source, type: dataprep}
  - {name: left, type: undefined}
  - {name: right, type: undefined}
  - {name: join, type: ragas}
  - {name: audit, type: undefined}
flow:
  - {service: source, next: [left, right]}
  - {service: left, next: [join]}
  - {service: right, next: [join, audit]}
"""


def test_entry_terminal_and_order_of_a_dag():
    graph = load_pipeline(DAG).graph
    assert graph.entry_nodes == ["source"]
    assert graph.terminal_nodes == ["join", "audit"]
    order = graph.topological_order()
    for edge in graph.edges:
        assert order.index(edge.source) < order.index(edge.target)
    assert not graph.is_chain()


def test_defaults_are_filled_from_the_catalog_without_collisions():
    pipeline = load_pipeline("name: p\nservices:\n  - {name: a, type: undefined}\n  - {name: b, type: UNDEFINED}\n"
                             "  - {name: c, type: undefined, port: 9101}\n")
    assert [s.port for s in pipeline.services] == [9100, 9102, 9101]
    assert [s.type for s in pipeline.services] == ["undefined"] * 3
    assert pipeline.megaservice.port == 8888
    assert pipeline.megaservice.endpoint == "/v1/p"
    assert pipeline.megaservice.protocol == "raw"
    assert pipeline.graph.edges == (Edge("a", "b"), Edge("b", "c"))  # default flow: a chain


def test_chat_protocol_is_the_default_when_an_llm_is_terminal():
    assert default_pipeline().megaservice.protocol == "chat"
    assert load_pipeline(SHARED_SPECS / "fan-in.yaml").megaservice.protocol == "raw"


def test_answers_round_trip_for_every_shared_spec():
    for path in sorted(SHARED_SPECS.glob("*.yaml")):
        pipeline = load_pipeline(path)
        assert Pipeline.from_answers(pipeline.answers()) == pipeline, path.name


def test_conditions_are_stored_in_canonical_form():
    pipeline = load_pipeline(SHARED_SPECS / "conditional.yaml")
    conditions = {(e.source, e.target): e.condition for e in pipeline.graph.edges}
    assert conditions[("guard", "refusal")] == "blocked == true"
    assert conditions[("data_processor", "error_handler")] == "error"
    assert pipeline.has_conditions


def test_add_service_between_two_nodes_replaces_their_edge():
    grown = default_pipeline().add_service(name="guard", type="guardrail", after=["rerank"], before=["llm"])
    edges = {(e.source, e.target) for e in grown.graph.edges}
    assert ("rerank", "llm") not in edges
    assert {("rerank", "guard"), ("guard", "llm")} <= edges
    assert grown.service("guard").port == 9090
    assert grown.service("guard").endpoint == "/v1/guardrails"


def test_add_service_without_position_appends_to_a_chain_only():
    grown = default_pipeline().add_service(name="audit", type="undefined")
    assert grown.graph.terminal_nodes == ["audit"]
    with pytest.raises(SpecError, match="--after"):
        load_pipeline(DAG).add_service(name="x", type="undefined")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "llm", "type": "llm"}, "already the name"),
        ({"name": "x", "type": "llm", "port": 6000}, "6000 is already used by services[0] (embedding)"),
        ({"name": "x", "type": "llm", "port": 8888}, "8888 is already used by megaservice"),
        ({"name": "x", "type": "llm", "after": ["nope"]}, "no service 'nope'"),
        ({"name": "x", "type": "llm", "after": ["llm"], "before": ["embedding"]}, "would create a cycle"),
        ({"name": "x", "type": "nonsense"}, "unknown service type"),
        ({"name": "Bad", "type": "llm"}, "not a valid name"),
    ],
)
def test_add_service_refusals(kwargs, message):
    with pytest.raises(SpecError) as caught:
        default_pipeline().add_service(**kwargs)
    assert message in str(caught.value)


def test_remove_service_reconnects_neighbours():
    shrunk = default_pipeline().remove_service("rerank")
    assert ("retriever", "llm") in {(e.source, e.target) for e in shrunk.graph.edges}
    assert [s.name for s in shrunk.services] == ["embedding", "retriever", "llm", "dataprep"]


def test_add_then_remove_is_the_identity():
    pipeline = default_pipeline()
    grown = pipeline.add_service(name="guard", type="guardrail", after=["rerank"], before=["llm"])
    assert grown.remove_service("guard") == pipeline


def test_remove_refusals():
    with pytest.raises(SpecError, match="no service 'nope'"):
        default_pipeline().remove_service("nope")
    with pytest.raises(SpecError, match="conditional edges"):
        load_pipeline(SHARED_SPECS / "conditional.yaml").remove_service("data_processor")
    with pytest.raises(SpecError, match="only service"):
        load_pipeline(SHARED_SPECS / "echo.yaml").remove_service("echo_service")


def test_find_cycle_names_the_cycle():
    graph = Graph(("a", "b", "c"), (Edge("a", "b"), Edge("b", "c"), Edge("c", "b")))
    assert graph.find_cycle() == ["b", "c", "b"]
    with pytest.raises(GraphError, match="cycle"):
        graph.topological_order()


def test_mermaid_quotes_labels_and_labels_conditions():
    diagram = load_pipeline(SHARED_SPECS / "conditional.yaml").mermaid()
    assert diagram.startswith("flowchart LR")
    assert 'svc_guard -->|"blocked == true"| svc_refusal' in diagram
    assert "svc_data_processor -. \"error\" .-> svc_error_handler" in diagram
    quoted = load_pipeline('name: q\nservices:\n  - {name: a, type: guardrail}\n  - {name: end, type: llm}\n'
                           'flow:\n  - service: a\n    next: [{service: end, condition: \'label == "x"\'}]\n').mermaid()
    assert '-->|"label == #quot;x#quot;"| svc_end' in quoted  # `end` is a Mermaid keyword; ids are prefixed
