"""The Helm chart in deploy/helm/, rendered, linted and validated offline (`make chart`).

Not part of `make test` (pyproject.toml ignores tests/chart): it needs requirements-chart.txt
(helm-python-sdk, kubernetes-validate), which `make chart` installs. No cluster, no helm binary.

Every values set a user is likely to install is checked: the defaults (CPU), each accelerator file
(values-*.yaml), everything scaled (replicas, HPA and PDB on every component) and with a Secret named.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import chart_checks as checks  # beside this file (pytest puts its folder on sys.path)
import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
CHART = checks.chart_dir(PROJECT)
SECRET = {"secrets": {"existingSecret": f"{CHART.name}-secrets"}}
VALUE_SETS = {
    "defaults": {},
    **{path.stem: checks.read_values(path) for path in checks.accelerator_files(CHART)},
    "scaled": checks.scaled(CHART),
    "secret": SECRET,
}


def answers() -> dict:
    return yaml.safe_load((PROJECT / ".copier-answers.compose.yml").read_text())


def dns(name: str) -> str:
    return name.replace("_", "-")


@pytest.fixture(params=sorted(VALUE_SETS), scope="module")
def rendered(request) -> tuple[dict, list[dict]]:
    values = VALUE_SETS[request.param]
    return values, checks.render(CHART, values)


def test_lint_strict(rendered):
    values, _ = rendered
    assert checks.lint(CHART, values) == []


@pytest.mark.parametrize("kube_version", checks.KUBE_VERSIONS)
def test_every_manifest_validates_strictly(rendered, kube_version):
    _, documents = rendered
    assert checks.schema_problems(documents, kube_version) == []


def test_wiring_selectors_probes_secrets_and_security(rendered):
    _, documents = rendered
    assert checks.semantic_problems(documents) == []


def test_values_files_hold_no_secret():
    for path in [CHART / "values.yaml", *checks.accelerator_files(CHART)]:
        assert checks.values_secret_problems(yaml.safe_load(path.read_text()) or {}) == [], path


def test_every_node_has_a_deployment_and_is_wired_into_the_megaservice():
    data = answers()
    documents = checks.render(CHART)
    megaservice = checks.deployment_of(documents, "megaservice")
    env = checks.container_env(documents, megaservice["metadata"]["name"])
    services = checks.of_kind(documents, "Service")
    for node in data["services"]:
        deployment = checks.deployment_of(documents, dns(node["name"]))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        if node["image"]:
            assert container["image"] == node["image"]
        assert container["ports"][0]["containerPort"] == node["port"]
        prefix = dns(node["name"]).replace("-", "_").upper()
        if node["name"] in data.get("documents", []):  # beside the flow: the megaservice never calls it
            assert f"{prefix}_SERVICE_HOST_IP" not in env
            assert [name for name, service in services.items()
                    if service["spec"]["selector"]["app.kubernetes.io/component"] == dns(node["name"])]
            continue
        host = env[f"{prefix}_SERVICE_HOST_IP"]["value"]
        assert services[host]["spec"]["selector"]["app.kubernetes.io/component"] == dns(node["name"])
        assert env[f"{prefix}_SERVICE_PORT"]["value"] == str(node["port"])
    assert len(checks.of_kind(documents, "Deployment")) == len(data["services"]) + 1


def test_helm_test_calls_the_megaservice():
    data = answers()
    documents = checks.render(CHART)
    (hook,) = checks.helm_tests(documents)
    arguments = hook["spec"]["containers"][0]["command"]
    service = checks.deployment_of(documents, "megaservice")["metadata"]["name"]
    megaservice = data["megaservice"]
    assert f"http://{service}:{megaservice['port']}{megaservice['endpoint']}" in arguments
    assert arguments[-1] == megaservice["protocol"]


def test_secrets_come_from_the_named_secret_only():
    documents = checks.render(CHART, SECRET)
    allowed = {SECRET["secrets"]["existingSecret"], *checks.generated_secrets(documents)}
    for deployment in checks.of_kind(documents, "Deployment"):
        for entry in checks.container_env(documents, deployment).values():
            reference = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if checks.SECRET_NAME.search(entry["name"]):
                assert reference and reference["name"] in allowed, entry


def test_a_secret_as_a_plain_value_is_refused():
    import helm_python as helm

    key = next(iter(yaml.safe_load((CHART / "values.yaml").read_text())["services"]))
    with pytest.raises(helm.HelmRenderError, match="looks like a secret"):
        checks.render(CHART, {"services": {key: {"env": {"HF_TOKEN": "hf_not_a_real_token"}}}})


def test_app_version_is_the_projects_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert str(chart["appVersion"]) == project["version"], (
        "deploy/helm/*/Chart.yaml's appVersion follows [project].version of pyproject.toml: change both")
