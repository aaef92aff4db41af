"""`add-service` and `remove-service` keep the Helm chart (deploy/helm/, the compose part's) in step.

The chart is re-rendered with compose.yaml: its values list an added service and drop a removed one, the
megaservice's *_SERVICE_HOST_IP follow, and the rewired chart still lints and validates strictly.
"""

from __future__ import annotations

import yaml

from tests.conftest import chart_checks
from tests.update.helpers import commit_all, files_with_markers

checks = chart_checks()


def chart_values(project) -> dict:
    return yaml.safe_load((checks.chart_dir(project) / "values.yaml").read_text())


def assert_valid(project) -> list[dict]:
    chart = checks.chart_dir(project)
    for values in ({}, checks.read_values(chart / "values-gaudi.yaml"), checks.scaled(chart)):
        assert checks.lint(chart, values) == []
        documents = checks.render(chart, values)
        for version in checks.KUBE_VERSIONS:
            assert checks.schema_problems(documents, version) == []
        assert checks.semantic_problems(documents) == []
    return checks.render(chart)


def megaservice_hosts(documents) -> dict[str, str]:
    megaservice = checks.deployment_of(documents, "megaservice")["metadata"]["name"]
    return {name: entry["value"] for name, entry in checks.container_env(documents, megaservice).items()
            if name.endswith("_SERVICE_HOST_IP")}


def test_add_then_remove_service_rewires_the_chart(tier, chain):
    assert sorted(chart_values(chain)["services"]) == ["embedding", "llm", "retriever"]

    added = tier.cli("add-service", "rerank_step", "--type", "rerank", "--port", "18000", "--after", "retriever",
                     "--before", "llm", "--project", chain)

    assert added.returncode == 0, added.stdout + added.stderr
    values = chart_values(chain)["services"]
    assert sorted(values) == ["embedding", "llm", "rerank-step", "retriever"]
    assert values["rerank-step"] | {"image": None} == values["rerank-step"] | {
        "node": "rerank_step", "type": "rerank", "envPrefix": "RERANK_STEP", "port": 18000, "image": None}
    assert values["rerank-step"]["image"] == {"repository": "grow-chain-rerank-step", "tag": ""}
    documents = assert_valid(chain)
    assert megaservice_hosts(documents)["RERANK_STEP_SERVICE_HOST_IP"] == "grow-chain-rerank-step"
    assert checks.deployment_of(documents, "rerank-step")
    assert "deploy/helm/grow-chain/values.yaml" in added.stdout
    assert files_with_markers(chain) == []
    commit_all(chain, "add rerank_step")

    removed = tier.cli("remove-service", "retriever", "--project", chain)

    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert sorted(chart_values(chain)["services"]) == ["embedding", "llm", "rerank-step"]
    documents = assert_valid(chain)
    assert set(megaservice_hosts(documents)) == {"EMBEDDING_SERVICE_HOST_IP", "LLM_SERVICE_HOST_IP",
                                                 "RERANK_STEP_SERVICE_HOST_IP"}
    assert not [document for document in documents if "retriever" in document["metadata"]["name"]]
    assert files_with_markers(chain) == []


def test_an_added_image_node_runs_its_image_in_the_chart(tier, chain):
    result = tier.cli("add-service", "guard", "--type", "guardrail", "--image", "opea/guardrails:1.5", "--after",
                      "retriever", "--before", "llm", "--project", chain)

    assert result.returncode == 0, result.stderr
    assert chart_values(chain)["services"]["guard"]["image"] == {"ref": "opea/guardrails:1.5"}
    documents = assert_valid(chain)
    container = checks.deployment_of(documents, "guard")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "opea/guardrails:1.5"


def test_a_users_edit_of_the_values_survives_add_service(tier, chain):
    values = checks.chart_dir(chain) / "values.yaml"
    text = values.read_text()
    assert text.count('  registry: "grow-chain"\n') == 1  # the project's own namespace, never OPEA's
    values.write_text(text.replace('  registry: "grow-chain"\n', '  registry: "registry.example.com/team"\n'))
    commit_all(chain, "our registry")

    result = tier.cli("add-service", "audit", "--type", "undefined", "--project", chain)

    assert result.returncode == 0, result.stderr
    assert chart_values(chain)["image"]["registry"] == "registry.example.com/team"
    assert "audit" in chart_values(chain)["services"]
    documents = assert_valid(chain)
    image = checks.deployment_of(documents, "audit")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/team/grow-chain-audit:latest"
