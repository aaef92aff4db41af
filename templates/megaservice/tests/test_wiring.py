"""The pipeline module without servers: every node and edge of the spec, and the other artifacts agree with it.

How requests run through a flow (conditions, errors, streams) is tested in the runtime library.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from megaservice import pipeline
from megaservice.pipeline import MEGASERVICE, build_orchestrator

ROOT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((ROOT / ".copier-answers.yml").read_text())


@pytest.fixture
def orchestrator():
    return build_orchestrator()


def test_the_pipeline_is_the_spec(orchestrator):
    assert MEGASERVICE.name == SPEC["name"]
    assert (MEGASERVICE.port, MEGASERVICE.endpoint, MEGASERVICE.protocol) == tuple(
        SPEC["megaservice"][key] for key in ("port", "endpoint", "protocol"))
    beside = getattr(pipeline, "BESIDE_THE_FLOW", ())  # dataprep services no edge names
    assert sorted((node.name, node.type, node.port, node.endpoint, node.image)
                  for node in [*orchestrator.nodes, *beside]) == sorted(
        (service["name"], service["type"].lower(), service["port"], service["endpoint"], service["image"])
        for service in SPEC["services"])
    assert all(node.type == "dataprep" for node in beside)
    names = {node.name for node in beside}
    assert [node.name for node in orchestrator.nodes] == [s["name"] for s in SPEC["services"] if s["name"] not in names]
    assert sorted(orchestrator.edges) == sorted(
        (entry["service"], edge["service"], edge.get("condition") or "success")
        for entry in SPEC["flow"] for edge in entry["next"])


def test_addresses_come_from_the_environment(monkeypatch):
    node = build_orchestrator().nodes[0]
    monkeypatch.setenv(node.host_variable, "svc.example")
    monkeypatch.setenv(node.port_variable, "1234")
    service = next(iter(build_orchestrator().services.values()))
    assert service.endpoint_path() == f"http://svc.example:1234{node.endpoint}"


def test_services_beside_the_flow_run_in_compose_but_the_megaservice_does_not_wait_for_them():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for node in getattr(pipeline, "BESIDE_THE_FLOW", ()):
        assert node.dns_name in compose and node.dns_name not in compose["megaservice"]["depends_on"]
        assert (ROOT / node.folder / "app" / "routes.py").is_file() or not node.generated, node.name


def test_every_generated_node_has_its_service_folder_and_compose_service(orchestrator):
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for node in orchestrator.nodes:
        if node.generated:
            assert (ROOT / node.folder / "app" / "routes.py").is_file(), node.name
        environment = compose["megaservice"]["environment"]
        assert environment[node.host_variable] == node.dns_name, node.name
        assert str(environment[node.port_variable]) == str(node.port), node.name
        assert node.dns_name in compose, node.name
