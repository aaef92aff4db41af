"""The Helm chart in deploy/helm/, rendered, linted and validated offline (`make chart`).

Not part of `make test` (pyproject.toml ignores tests/chart): it needs requirements-chart.txt
(helm-python-sdk, kubernetes-validate), which `make chart` installs. No cluster, no helm binary.

Every values set a user is likely to install is checked: the defaults (CPU), each accelerator file
(values-*.yaml), everything scaled (replicas, HPA and PDB on every component), with a Secret named and
with the front door (the Ingress) on.
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
FRONT_DOOR = {"ingress": {"enabled": True}}
VALUE_SETS = {
    "defaults": {},
    **{path.stem: checks.read_values(path) for path in checks.accelerator_files(CHART)},
    "scaled": checks.scaled(CHART),
    "secret": SECRET,
    "front-door": FRONT_DOOR,
}


def answers() -> dict:
    return yaml.safe_load((PROJECT / ".copier-answers.compose.yml").read_text())


def dns(name: str) -> str:
    return name.replace("_", "-")


def prefix(name: str) -> str:
    return dns(name).replace("-", "_").upper()


def has_ui(data: dict) -> bool:
    """The project serves the web UI (compose.yaml's `ui` service) unless its spec says megaservice.ui: false."""
    return data["megaservice"].get("ui", True) is not False


def component_of(documents: list[dict], service: str) -> str:
    return checks.of_kind(documents, "Service")[service]["spec"]["selector"]["app.kubernetes.io/component"]


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
    assert len(checks.of_kind(documents, "Deployment")) == len(data["services"]) + 1 + has_ui(data)


def test_the_ui_reaches_the_megaservice_and_every_node():
    data = answers()
    documents = checks.render(CHART, SECRET)
    uis = [name for name, deployment in checks.of_kind(documents, "Deployment").items()
           if deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "ui"]
    if not has_ui(data):
        assert uis == []
        return
    (ui,) = uis
    container = checks.of_kind(documents, "Deployment")[ui]["spec"]["template"]["spec"]["containers"][0]
    megaservice = checks.deployment_of(documents, "megaservice")
    assert container["image"] == megaservice["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["args"] == ["python", "-m", "opea_new_runtime.ui"]
    port = data["megaservice"].get("ui_port", 5173)
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/health"
    env = checks.container_env(documents, ui)
    assert env["UI_PORT"]["value"] == str(port)
    assert component_of(documents, env["MEGA_SERVICE_HOST_IP"]["value"]) == "megaservice"
    assert env["MEGA_SERVICE_PORT"]["value"] == str(data["megaservice"]["port"])
    for node in data["services"]:
        assert component_of(documents, env[f"{prefix(node['name'])}_SERVICE_HOST_IP"]["value"]) == dns(node["name"])
        assert env[f"{prefix(node['name'])}_SERVICE_PORT"]["value"] == str(node["port"])
    reference = env["API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert reference == checks.container_env(documents, megaservice["metadata"]["name"])["API_KEYS"]["valueFrom"][
        "secretKeyRef"]


def test_the_ingress_is_the_front_door():
    """Off by default; on: the endpoint to the megaservice, /v1/dataprep/ to dataprep, / to the UI."""
    data = answers()
    assert checks.of_kind(checks.render(CHART), "Ingress") == {}
    documents = checks.render(CHART, FRONT_DOOR)
    (ingress,) = checks.of_kind(documents, "Ingress").values()
    routes = {path["path"]: component_of(documents, path["backend"]["service"]["name"])
              for path in ingress["spec"]["rules"][0]["http"]["paths"]}
    megaservice = data["megaservice"]
    assert routes[megaservice["endpoint"]] == "megaservice"
    if megaservice["protocol"] == "chat":
        assert routes["/v1/chat/completions"] == routes["/v1/models"] == "megaservice"
    documents_services = data.get("documents") or []
    assert routes.get("/v1/dataprep/") == (dns(documents_services[0]) if documents_services else None)
    assert routes["/"] == ("ui" if has_ui(data) else "megaservice")


def test_replicas_are_each_components():
    """<component>.replicas, as compose.yaml's <NAME>_REPLICAS."""
    data = answers()
    keys = [dns(node["name"]) for node in data["services"]]
    values = {"megaservice": {"replicas": 2}, "services": {key: {"replicas": 3} for key in keys}}
    if has_ui(data):
        values["ui"] = {"replicas": 4}
    documents = checks.render(CHART, values)
    assert checks.deployment_of(documents, "megaservice")["spec"]["replicas"] == 2
    for key in keys:
        assert checks.deployment_of(documents, key)["spec"]["replicas"] == 3
    if has_ui(data):
        assert checks.deployment_of(documents, "ui")["spec"]["replicas"] == 4


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
