"""pipeline.py without servers: the orchestrator has every node and edge of the spec, wired as documented.

How requests run through a flow (conditions, errors, streams) is in test_flow.py."""

from __future__ import annotations

import pytest

from megaservice import settings
from megaservice.conditions import parse
from megaservice.pipeline import Orchestrator, PipelineError, build_orchestrator
from megaservice.protocol import spec_name
from megaservice.runtime import MicroService, ServiceType


@pytest.fixture
def orchestrator() -> Orchestrator:
    return build_orchestrator()


def node(name: str) -> str:
    return f"{name}/MicroService"


def test_every_node_with_its_type_address_and_endpoint(orchestrator):
    assert [spec_name(name) for name in orchestrator.services] == [service.name for service in settings.SERVICES]
    for service in settings.SERVICES:
        micro = orchestrator.services[node(service.name)]
        assert micro.service_type == ServiceType[service.type.upper()]
        assert micro.endpoint_path() == f"http://127.0.0.1:{service.port}{service.endpoint}"


def test_addresses_come_from_the_environment(monkeypatch):
    service = settings.SERVICES[0]
    monkeypatch.setenv(service.host_variable, "svc.example")
    monkeypatch.setenv(service.port_variable, "1234")
    micro = build_orchestrator().services[node(service.name)]
    assert micro.endpoint_path() == f"http://svc.example:1234{service.endpoint}"


def test_every_edge_of_the_flow(orchestrator):
    edges = {(spec_name(source), spec_name(target)) for source, targets in orchestrator.graph.items()
             for target in targets}
    assert edges == {(source, target) for source, target, _ in settings.EDGES}
    for source, target, condition in settings.EDGES:
        assert (node(target), parse(condition)) in orchestrator.flow.edges[node(source)]
    for service in settings.SERVICES:  # in spec order: the order of comps' fan-in merge
        sources = {source for source, target, _ in settings.EDGES if target == service.name}
        expected = [node(other.name) for other in settings.SERVICES if other.name in sources]
        assert orchestrator.flow.predecessors[node(service.name)] == expected


def test_a_bad_edge_is_an_error_naming_it():
    orchestrator = Orchestrator()
    first = MicroService(name="first", host="h", port=1, endpoint="/", use_remote_service=True,
                         service_type=ServiceType.UNDEFINED)
    second = MicroService(name="second", host="h", port=2, endpoint="/", use_remote_service=True,
                          service_type=ServiceType.UNDEFINED)
    orchestrator.add(first)
    with pytest.raises(PipelineError, match="first -> second"):
        orchestrator.connect(first, second)  # second was never added
    orchestrator.add(second)
    orchestrator.connect(first, second)
    with pytest.raises(PipelineError, match="second -> first"):
        orchestrator.connect(second, first)  # a cycle


def test_terminal_nodes_are_the_last_that_ran(orchestrator):
    everything = {name: {} for name in orchestrator.services}
    sources = {source for source, _, _ in settings.EDGES}
    expected = [node(service.name) for service in settings.SERVICES if service.name not in sources]
    assert orchestrator.terminal_nodes(everything, orchestrator) == expected


def test_an_llm_with_downstream_nodes_does_not_stream(orchestrator):
    for name in orchestrator.services:
        if orchestrator.type_of(name) != "llm":
            continue
        inputs = orchestrator.align_inputs({"query": "q", "stream": True}, name, orchestrator, {"stream": True})
        assert inputs["stream"] is (not orchestrator.downstream(name))
