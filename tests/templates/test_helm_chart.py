"""The Helm chart of the compose part (deploy/helm/<project>/), rendered for several pipelines, validated offline.

For each pipeline shape (ChatQnA, a raw-protocol one with `_` in its names, one with published `image:`
nodes, a fan-out/fan-in DAG, a chat DAG on lite) and each values set a user is likely to install (the
defaults, the accelerator file, everything scaled, a Secret named, another release name) the chart is
rendered with helm-python-sdk (Helm v4's library), linted strictly, every manifest validated with
kubernetes-validate --strict for Kubernetes 1.33 and 1.37, and checked for what a schema cannot see
(tests/chart/chart_checks.py, the code the generated project runs with `make chart`). It is also compared
with compose.yaml rendered from the same answers: the same nodes, images, ports, variables and health
endpoints. Each check is shown to catch a manifest broken on purpose.

No cluster and no helm binary are needed; both tools are pinned in the `[test]` extra.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm  # helm-python-sdk and kubernetes-validate: the [test] extra (missing: an error, not a skip)
import kubernetes_validate
import pytest
import yaml

from opea_new import render
from opea_new.spec import default_pipeline, load_pipeline, pipeline_from_data
from tests.conftest import chart_checks, copier_render, run_cli
from tests.templates.test_compose_template import CHATQNA_REAL, OLD_ANSWERS, TGI

REPO = Path(__file__).resolve().parents[2]
COMPOSE_TEMPLATE = REPO / "templates" / "compose"
E2E_SPECS = REPO / "tests" / "e2e" / "specs"
LLM_TYPES = ("llm", "lvm")
ACCELERATORS = {"values-gaudi": "habana.ai/gaudi"}


checks = chart_checks()  # tests/chart/chart_checks.py, as generated projects have it

RAW_ECHO = """\
name: my_first_app
runtime: lite
megaservice: {port: 8000, endpoint: /process, protocol: raw}
services:
  - {name: echo_service, type: undefined, port: 5000, endpoint: /echo}
  - {name: data_processor, type: dataprep, port: 6007}
flow:
  - {service: echo_service, next: [data_processor]}
"""
WITH_IMAGES = """\
name: docsum
services:
  - {name: guard_in, type: guardrail, port: 9090}
  - {name: embedding, type: embedding, port: 6000, image: "opea/embedding:1.5"}
  - name: llm-main
    type: LLM
    port: 9001
    image: "registry.example.com:5000/opea/llm-textgen@sha256:DIGEST"
  - {name: vision, type: lvm, port: 9399}
""".replace("DIGEST", "0123456789abcdef" * 4)


def pipelines() -> dict[str, Any]:
    return {
        "chatqna": default_pipeline(),
        "raw-echo": pipeline_from_data(yaml.safe_load(RAW_ECHO)),
        "images": pipeline_from_data(yaml.safe_load(WITH_IMAGES)),
        "fan-out-in": load_pipeline(E2E_SPECS / "fan-out-in.json"),
        "insights-dag": load_pipeline(E2E_SPECS / "insights-dag.yaml"),
        "documents": load_pipeline(E2E_SPECS / "documents.yaml"),
    }


PIPELINES = pipelines()


def test_the_shapes_cover_both_runtimes_both_protocols_and_published_images():
    shapes = PIPELINES.values()
    assert {pipeline.runtime for pipeline in shapes} == {"comps", "lite"}
    assert {pipeline.megaservice.protocol for pipeline in shapes} == {"chat", "raw"}
    assert any(service.image for pipeline in shapes for service in pipeline.services)
    assert any("_" in pipeline.name for pipeline in shapes)


def dns(name: str) -> str:
    return name.replace("_", "-")


def prefix(name: str) -> str:
    return dns(name).replace("-", "_").upper()


@pytest.fixture(params=sorted(PIPELINES), scope="module")
def project(request, tmp_path_factory) -> tuple[Any, Path]:
    """The compose part rendered by copier from the answers opea-new gives it."""
    pipeline = PIPELINES[request.param]
    destination = tmp_path_factory.mktemp(request.param)
    copier_render(COMPOSE_TEMPLATE, render.compose_answers(pipeline), destination)
    return pipeline, destination


def value_sets(chart: Path) -> dict[str, dict[str, Any]]:
    return {
        "defaults": {},
        **{path.stem: checks.read_values(path) for path in checks.accelerator_files(chart)},
        "scaled": checks.scaled(chart),
        "secret": {"secrets": {"existingSecret": "app-secrets"}},
        "front-door": FRONT_DOOR,
        "everything": checks.merge(checks.merge(checks.read_values(chart / "values-gaudi.yaml"), checks.scaled(chart)),
                                   {"secrets": {"existingSecret": "app-secrets"}, **FRONT_DOOR}),
    }


FRONT_DOOR = {"ingress": {"enabled": True, "className": "nginx", "host": "chat.example.com",
                          "tls": [{"secretName": "chat-tls", "hosts": ["chat.example.com"]}]}}
VALUE_SETS = ("defaults", "values-gaudi", "scaled", "secret", "front-door", "everything")
RELEASES = {"defaults": None, "secret": "prod"}  # None: the chart's name; "prod": a release that is not


@pytest.fixture(params=VALUE_SETS, scope="module")
def rendered(request, project) -> tuple[Any, Path, dict[str, Any], list[dict[str, Any]]]:
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    values = value_sets(chart)[request.param]
    return pipeline, chart, values, checks.render(chart, values, release=RELEASES.get(request.param),
                                                  namespace="opea")


def compose_of(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "compose.yaml").read_text())["services"]


# ---------------------------------------------------------------- lint, schemas, semantics


def test_value_sets_are_what_the_chart_ships(project):
    _, folder = project
    chart = checks.chart_dir(folder)
    assert set(value_sets(chart)) == set(VALUE_SETS)
    assert [path.stem for path in checks.accelerator_files(chart)] == sorted(ACCELERATORS)


def test_lint_strict_passes(rendered):
    _, chart, values, _ = rendered
    assert checks.lint(chart, values) == []


@pytest.mark.parametrize("kube_version", checks.KUBE_VERSIONS)
def test_every_manifest_validates_strictly(rendered, kube_version):
    _, _, _, documents = rendered
    assert documents
    assert checks.schema_problems(documents, kube_version) == []


def test_semantics_a_schema_cannot_check(rendered):
    _, _, _, documents = rendered
    assert checks.semantic_problems(documents) == []


def test_values_files_hold_no_secret(project):
    _, folder = project
    chart = checks.chart_dir(folder)
    for path in [chart / "values.yaml", *checks.accelerator_files(chart)]:
        assert checks.values_secret_problems(yaml.safe_load(path.read_text()) or {}) == [], path


def test_what_is_rendered(rendered):
    pipeline, _, values, documents = rendered
    ui = 1 if pipeline.megaservice.ui_port else 0  # the web UI: a Deployment and its Service
    components = len(pipeline.services) + 1 + ui
    kinds = [document["kind"] for document in documents]
    scaled = "autoscaling" in str(values)
    store = 1 if pipeline.documents else 0  # the pgvector server: a StatefulSet, its Service and its Secret
    assert kinds.count("Deployment") == kinds.count("Service") - store == components
    assert kinds.count("StatefulSet") == kinds.count("Secret") == store
    assert kinds.count("HorizontalPodAutoscaler") == kinds.count("PodDisruptionBudget") == (components if scaled
                                                                                             else 0)
    assert kinds.count("Ingress") == (1 if "ingress" in values else 0)
    assert len(checks.helm_tests(documents)) == 1
    assert set(kinds) <= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Pod",
                          "StatefulSet", "Secret", "Ingress"}


# ---------------------------------------------------------------- the same pipeline as compose.yaml


# Where documents are stored differs on purpose: compose's containers share one SQLite file in a volume,
# a cluster's pods cannot, so the chart runs a pgvector server (test_dataprep_and_the_retriever_share_...).
STORE_VARIABLES = {"VECTOR_STORE", "VECTOR_STORE_PATH", "PG_CONNECTION_STRING", "POSTGRES_PASSWORD"}


def test_every_node_runs_as_compose_runs_it(project):
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    documents = checks.render(chart, {"secrets": {"existingSecret": "app-secrets"}})
    compose = compose_of(folder)
    services = checks.of_kind(documents, "Service")
    for service in pipeline.services:
        deployment = checks.deployment_of(documents, dns(service.name))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        composed = compose[dns(service.name)]
        expected_image = service.image or re.sub(r"\$\{REGISTRY:-([^}]*)\}", r"\1", composed["image"]).replace(
            "${TAG:-latest}", "latest")
        assert container["image"] == expected_image
        assert [port["containerPort"] for port in container["ports"]] == [service.port]
        env = {entry["name"]: entry for entry in container["env"] if entry["name"] not in STORE_VARIABLES}
        environment = {name: value for name, value in composed["environment"].items() if name not in STORE_VARIABLES}
        assert set(env) == set(environment)
        for name, value in environment.items():
            if checks.SECRET_NAME.search(name):
                assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "app-secrets", name
            elif name.endswith("_SERVICE_HOST_IP"):  # another node (dataprep's embedding): its Service here
                host = env[name]["value"]
                assert services[host]["spec"]["selector"]["app.kubernetes.io/component"] == value, name
            elif name != "no_proxy":
                assert env[name]["value"] == re.sub(r"^\$\{[A-Za-z_]+:-(.*)\}$", r"\1", value), name


def test_the_megaservice_finds_every_node_at_its_service(project):
    """<NODE>_SERVICE_HOST_IP: compose's service name there, the Service of that node's pods here; same ports."""
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    compose = compose_of(folder)["megaservice"]["environment"]
    for release in (None, "prod"):
        documents = checks.render(chart, release=release)
        megaservice = checks.deployment_of(documents, "megaservice")
        env = checks.container_env(documents, megaservice["metadata"]["name"])
        services = checks.of_kind(documents, "Service")
        wiring = {name for name in env if name.endswith(("_SERVICE_HOST_IP", "_SERVICE_PORT"))}
        assert wiring == {name for name in compose if name.endswith(("_SERVICE_HOST_IP", "_SERVICE_PORT"))}
        for service in pipeline.services:
            if service in pipeline.documents:  # beside the flow: the megaservice never calls it
                assert f"{prefix(service.name)}_SERVICE_HOST_IP" not in env
                continue
            host = env[f"{prefix(service.name)}_SERVICE_HOST_IP"]["value"]
            assert services[host]["spec"]["selector"]["app.kubernetes.io/component"] == compose[
                f"{prefix(service.name)}_SERVICE_HOST_IP"]
            assert env[f"{prefix(service.name)}_SERVICE_PORT"]["value"] == str(service.port)
            assert services[host]["spec"]["ports"][0]["port"] == service.port
        for name in ("MEGA_SERVICE_HOST", "MEGA_SERVICE_PORT", "MEGA_SERVICE_TIMEOUT"):
            assert env[name]["value"] == re.sub(r"^\$\{[A-Za-z_]+:-(.*)\}$", r"\1", compose[name])
        if release:
            assert all(host.startswith(f"{release}-") for host in services)


def test_probes_are_composes_healthchecks(project):
    """Liveness on /v1/health_check; readiness where compose waits: /v1/health/ready for the megaservice,
    /v1/health for the UI (which answers /v1/health_check too)."""
    _, folder = project
    documents = checks.render(checks.chart_dir(folder))
    compose = compose_of(folder)
    for key, service in compose.items():
        if service.get("profiles"):  # pgvector: compose's opt-in server, the chart's StatefulSet
            continue
        if key == "nginx":  # compose's front door; the chart's is an Ingress (test_the_ingress_routes_as_nginx)
            continue
        container = checks.deployment_of(documents, key)["spec"]["template"]["spec"]["containers"][0]
        healthcheck = re.search(r"http://127\.0\.0\.1:\d+(/\S*)", " ".join(service["healthcheck"]["test"])).group(1)
        assert container["readinessProbe"]["httpGet"]["path"] == healthcheck
        assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health_check"
        assert container["startupProbe"]["httpGet"]["path"] == "/v1/health_check"
    megaservice = checks.deployment_of(documents, "megaservice")["spec"]["template"]["spec"]["containers"][0]
    assert megaservice["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    if "ui" in compose:
        ui = checks.deployment_of(documents, "ui")["spec"]["template"]["spec"]["containers"][0]
        assert ui["readinessProbe"]["httpGet"] == {"path": "/v1/health", "port": "http"}


def test_helm_test_sends_what_test_compose_sends(project):
    pipeline, folder = project
    documents = checks.render(checks.chart_dir(folder))
    (hook,) = checks.helm_tests(documents)
    command = hook["spec"]["containers"][0]["command"]
    script = (folder / "tests" / "test_compose.sh").read_text()
    block = script[script.index("validate_megaservice() {"):].splitlines()[1:7]
    words = [shlex.split(line.strip().removesuffix("\\").strip())[0] for line in block]
    assert words[0] == "validate_service"  # URL EXPECTED NAME CONTAINER PAYLOAD
    url, expected, _, _, payload = words[1:]
    megaservice = checks.deployment_of(documents, "megaservice")["metadata"]["name"]
    assert command[3:] == [url.replace("127.0.0.1", megaservice), payload, expected, pipeline.megaservice.protocol]
    assert hook["metadata"]["annotations"][checks.HOOK] == "test"
    assert hook["spec"]["restartPolicy"] == "Never"


def test_accelerator_files_give_each_llm_type_node_one_accelerator(project):
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    for stem, resource in ACCELERATORS.items():
        documents = checks.render(chart, checks.read_values(chart / f"{stem}.yaml"))
        for service in pipeline.services:
            spec = checks.deployment_of(documents, dns(service.name))["spec"]["template"]["spec"]
            limits = spec["containers"][0]["resources"]["limits"]
            if service.type.lower() in LLM_TYPES:
                assert limits[resource] == 1 and limits["cpu"] == "1", (stem, service.name)  # merged onto the CPU's
                assert spec["tolerations"][0]["key"] == resource
            else:
                assert resource not in limits and "tolerations" not in spec, (stem, service.name)
        megaservice = checks.deployment_of(documents, "megaservice")["spec"]["template"]["spec"]["containers"][0]
        assert resource not in megaservice["resources"]["limits"]


def test_replicas_and_autoscaling(project):
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    keys = [dns(service.name) for service in pipeline.services]
    ui = bool(pipeline.megaservice.ui_port)
    documents = checks.render(chart, {"megaservice": {"replicas": 2}, "services": {key: {"replicas": 3}
                                                                                    for key in keys},
                                      **({"ui": {"replicas": 4}} if ui else {})})
    assert {document["spec"]["replicas"] for document in checks.of_kind(documents, "Deployment").values()} == (
        {2, 3, 4} if ui else {2, 3})
    assert not checks.of_kind(documents, "HorizontalPodAutoscaler")
    one = keys[0]
    documents = checks.render(chart, {"services": {one: {"autoscaling": {"enabled": True, "maxReplicas": 7},
                                                         "podDisruptionBudget": {"enabled": True,
                                                                                 "minAvailable": 1}}}})
    (hpa,) = checks.of_kind(documents, "HorizontalPodAutoscaler").values()
    (pdb,) = checks.of_kind(documents, "PodDisruptionBudget").values()
    assert hpa["spec"]["maxReplicas"] == 7 and pdb["spec"] == {"minAvailable": 1, "selector": pdb["spec"]["selector"]}
    assert "replicas" not in checks.deployment_of(documents, one)["spec"]
    assert checks.semantic_problems(documents) == []


def test_each_components_replicas_mirror_composes(project):
    """compose's deploy.replicas (${<NAME>_REPLICAS:-1}) is the chart's <component>.replicas, 1 by default."""
    _, folder = project
    chart = checks.chart_dir(folder)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    compose = compose_of(folder)
    scaled_in_compose = {key for key, service in compose.items() if "replicas" in service.get("deploy", {})}
    assert "megaservice" in scaled_in_compose
    for key in scaled_in_compose:
        assert compose[key]["deploy"]["replicas"] == f"${{{prefix(key)}_REPLICAS:-1}}", key
    components = {key: ("megaservice",) if key == "megaservice" else ("ui",) if key == "ui" else ("services", key)
                  for key in scaled_in_compose | ({"ui"} if "ui" in compose else set())}
    for key, path in components.items():
        entry = values
        for part in path:
            entry = entry[part]
        assert entry["replicas"] == 1, key
        override: dict[str, Any] = {"replicas": 5}
        for part in reversed(path):
            override = {part: override}
        documents = checks.render(chart, override)
        assert checks.deployment_of(documents, key)["spec"]["replicas"] == 5, key
        assert [document["spec"]["replicas"] for document in checks.of_kind(documents, "Deployment").values()
                ].count(5) == 1, key


# ---------------------------------------------------------------- the web UI and the front door


def test_the_ui_runs_as_compose_runs_it(project):
    """The megaservice's image, compose's command as args, UI_PORT, the megaservice and every node at their
    Services (compose's names there), API_KEYS from the megaservice's Secret; none when compose has none."""
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    compose = compose_of(folder)
    documents = checks.render(chart, {"secrets": {"existingSecret": "app-secrets"}})
    components = {document["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                  for document in checks.of_kind(documents, "Deployment").values()}
    if not pipeline.megaservice.ui_port:
        assert "ui" not in compose and "ui" not in components
        assert not [name for name in checks.of_kind(documents, "Service") if name.endswith("-ui")]
        return
    composed = compose["ui"]
    deployment = checks.deployment_of(documents, "ui")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    megaservice = checks.deployment_of(documents, "megaservice")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == megaservice["image"]
    assert composed["image"] == compose["megaservice"]["image"]
    assert container["args"] == composed["command"] == ["python", "-m", "opea_new_runtime.ui"]
    assert "command" not in container  # the image's CMD replaced, as compose's command does
    port = pipeline.megaservice.ui_port
    assert [entry["containerPort"] for entry in container["ports"]] == [port]
    services = checks.of_kind(documents, "Service")
    (service,) = [svc for svc in services.values() if svc["spec"]["selector"]["app.kubernetes.io/component"] == "ui"]
    assert service["spec"]["ports"][0]["port"] == port
    env = {entry["name"]: entry for entry in container["env"]}
    environment = composed["environment"]
    assert set(env) == set(environment)
    for name, value in environment.items():
        if checks.SECRET_NAME.search(name):
            assert env[name]["valueFrom"] == next(entry for entry in megaservice["env"]
                                                  if entry["name"] == name)["valueFrom"], name
            assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "app-secrets"
        elif name.endswith("_SERVICE_HOST_IP"):  # the megaservice, every node (beside the flow too)
            host = env[name]["value"]
            assert services[host]["spec"]["selector"]["app.kubernetes.io/component"] == value, name
        elif name != "no_proxy":
            assert env[name]["value"] == re.sub(r"^\$\{[A-Za-z_]+:-(.*)\}$", r"\1", value), name
    assert env["UI_PORT"]["value"] == str(port) and env["UI_HOST"]["value"] == "0.0.0.0"
    wiring = {name for name in env if name.endswith("_SERVICE_HOST_IP")}
    assert wiring == {"MEGA_SERVICE_HOST_IP"} | {f"{prefix(node.name)}_SERVICE_HOST_IP" for node in pipeline.services}
    assert checks.wiring_problems(documents) == []


NO_UI = RAW_ECHO.replace("protocol: raw}", "protocol: raw, ui: false}")
ANOTHER_UI_PORT = RAW_ECHO.replace("protocol: raw}", "protocol: raw, ui_port: 3000}")


@pytest.mark.parametrize(("spec", "ui_port"), [(NO_UI, None), (ANOTHER_UI_PORT, 3000), (RAW_ECHO, 5173)],
                         ids=["ui-false", "ui-port-3000", "ui-default"])
def test_the_ui_is_there_exactly_when_compose_has_it(spec, ui_port, tmp_path):
    pipeline = pipeline_from_data(yaml.safe_load(spec))
    assert pipeline.megaservice.ui_port == ui_port
    copier_render(COMPOSE_TEMPLATE, render.compose_answers(pipeline), tmp_path)
    chart = checks.chart_dir(tmp_path)
    compose = compose_of(tmp_path)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["ui"]["enabled"] is (ui_port is not None) is ("ui" in compose)
    for overrides in ({}, checks.scaled(chart), FRONT_DOOR):
        assert checks.lint(chart, overrides) == []
        documents = checks.render(chart, overrides)
        assert checks.semantic_problems(documents) == []
        for kube_version in checks.KUBE_VERSIONS:
            assert checks.schema_problems(documents, kube_version) == []
        uis = [name for name, document in checks.of_kind(documents, "Deployment").items()
               if document["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "ui"]
        assert len(uis) == (0 if ui_port is None else 1)
        if ui_port is not None:
            assert checks.container_env(documents, uis[0])["UI_PORT"]["value"] == str(ui_port)
            scaled = "autoscaling" in str(overrides)
            hpas = [name for name in checks.of_kind(documents, "HorizontalPodAutoscaler") if name.endswith("-ui")]
            assert len(hpas) == (1 if scaled else 0)
    documents = checks.render(chart, FRONT_DOOR)
    (ingress,) = checks.of_kind(documents, "Ingress").values()
    root = next(path for path in ingress["spec"]["rules"][0]["http"]["paths"] if path["path"] == "/")
    assert root["backend"]["service"]["name"] == f"my-first-app-{'megaservice' if ui_port is None else 'ui'}"


def nginx_routes(folder: Path) -> dict[str, str]:
    """deploy/nginx/default.conf's locations: path -> the compose service it proxies to."""
    conf = (folder / "deploy" / "nginx" / "default.conf").read_text()
    addresses = dict(re.findall(r"set \$(\w+) ([\w-]+):\d+;", conf))
    routes = {}
    for path, variable in re.findall(r"location (?:= )?(\S+) \{\s*proxy_pass http://\$(\w+);", conf):
        routes[path] = addresses[variable]
    return routes


def ingress_routes(documents: list[dict[str, Any]]) -> dict[str, tuple[str, str, int]]:
    """The Ingress's paths -> (pathType, the component of the Service it goes to, the port)."""
    services = checks.of_kind(documents, "Service")
    (ingress,) = checks.of_kind(documents, "Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    routes = {}
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        component = services[backend["name"]]["spec"]["selector"]["app.kubernetes.io/component"]
        routes[path["path"]] = (path["pathType"], component, backend["port"]["number"])
    return routes


def test_the_ingress_routes_as_nginx(project):
    """Off by default; on, the paths of compose's front door to the same components: the pipeline's endpoint
    (and OpenAI's routes of a chat pipeline) to the megaservice, /v1/dataprep/ to dataprep, / to the UI."""
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    assert checks.of_kind(checks.render(chart), "Ingress") == {}
    for release in (None, "prod"):
        documents = checks.render(chart, FRONT_DOOR, release=release)
        routes = ingress_routes(documents)
        nginx = {path: target for path, target in nginx_routes(folder).items() if path != "/healthz"}
        assert {path: component for path, (_, component, _) in routes.items()} == nginx
        endpoint = pipeline.megaservice.endpoint
        assert routes[endpoint] == ("Exact", "megaservice", pipeline.megaservice.port)
        if pipeline.megaservice.protocol == "chat":
            for path in ("/v1/chat/completions", "/v1/models"):
                assert routes[path] == ("Exact", "megaservice", pipeline.megaservice.port)
        if pipeline.documents:
            dataprep = pipeline.documents[0]
            assert routes["/v1/dataprep/"] == ("Prefix", dns(dataprep.name), dataprep.port)
        else:
            assert "/v1/dataprep/" not in routes
        ui = pipeline.megaservice.ui_port
        assert routes["/"] == (("Prefix", "ui", ui) if ui else ("Prefix", "megaservice", pipeline.megaservice.port))
        (ingress,) = checks.of_kind(documents, "Ingress").values()
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["rules"][0]["host"] == "chat.example.com"
        assert ingress["spec"]["tls"] == FRONT_DOOR["ingress"]["tls"]
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
        assert checks.ingress_problems(documents) == []
    documents = checks.render(chart, {"ingress": {"enabled": True}})
    (ingress,) = checks.of_kind(documents, "Ingress").values()
    assert "ingressClassName" not in ingress["spec"] and "tls" not in ingress["spec"]
    assert "host" not in ingress["spec"]["rules"][0]  # any host
    assert checks.schema_problems(documents, checks.KUBE_VERSIONS[0]) == []


def test_an_unknown_dataprep_for_the_ingress_is_refused(project):
    _, folder = project
    with pytest.raises(helm.HelmRenderError, match="is not a service of the chart"):
        checks.render(checks.chart_dir(folder), {"ingress": {"enabled": True, "dataprep": "nowhere"}})


def test_chart_metadata_follows_the_project(project):
    pipeline, folder = project
    chart = checks.chart_dir(folder)
    metadata = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert chart.name == metadata["name"] == dns(pipeline.name)
    assert metadata["apiVersion"] == "v2" and metadata["type"] == "application"
    # appVersion is the project's version: the one pyproject.toml's template writes.
    pyproject = (REPO / "templates" / "megaservice" / "pyproject.toml.jinja").read_text()
    assert metadata["appVersion"] == re.search(r'^version = "(.+)"$', pyproject, re.MULTILINE).group(1)
    assert metadata["annotations"]["opea-new/runtime"] == pipeline.runtime


def test_the_chart_templates_are_static_and_generic():
    """Helm's {{ }} never meets Jinja: only Chart.yaml, values.yaml and the accelerator files are rendered."""
    (chart,) = (COMPOSE_TEMPLATE / "template" / "deploy" / "helm").iterdir()
    rendered = sorted(path.relative_to(chart).as_posix() for path in chart.rglob("*.jinja"))
    assert rendered == ["Chart.yaml.jinja", "values-gaudi.yaml.jinja", "values.yaml.jinja"]
    for path in (chart / "templates").rglob("*"):
        assert path.is_dir() or path.suffix != ".jinja", path


# ---------------------------------------------------------------- model-server nodes (TEI, vLLM, TGI)


SERVER_ANSWERS = {"chatqna-real": CHATQNA_REAL, "tgi": TGI}  # the compose template's answer sets
MODEL_VARIABLE = re.compile(r"^\$\{[A-Z0-9_]+_MODEL_ID:-[^}]+\}$")


@pytest.fixture(params=sorted(SERVER_ANSWERS), scope="module")
def server_project(request, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """The compose part rendered by copier from answers whose nodes name a model server."""
    data = SERVER_ANSWERS[request.param]
    destination = tmp_path_factory.mktemp(f"servers-{request.param}")
    copier_render(COMPOSE_TEMPLATE, data, destination)
    return data, destination


def server_nodes(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in data["services"] if node.get("server")]


def server_value_sets(chart: Path, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    claims = {"services": {dns(node["name"]): {"modelCache": {"existingClaim": f"models-{dns(node['name'])}"}}
                           for node in server_nodes(data)}}
    return {
        "defaults": {},
        "secret": {"secrets": {"existingSecret": "app-secrets"}},
        "claims": claims,
        "everything": checks.merge(checks.merge(checks.merge(checks.read_values(chart / "values-gaudi.yaml"),
                                                             checks.scaled(chart)), claims),
                                   {"secrets": {"existingSecret": "app-secrets"}}),
    }


def container_of(documents: list[dict[str, Any]], component: str) -> dict[str, Any]:
    return checks.deployment_of(documents, component)["spec"]["template"]["spec"]["containers"][0]


def test_server_charts_pass_lint_schemas_and_semantics(server_project):
    data, folder = server_project
    chart = checks.chart_dir(folder)
    assert server_nodes(data)
    assert checks.values_secret_problems(yaml.safe_load((chart / "values.yaml").read_text())) == []
    for name, values in server_value_sets(chart, data).items():
        assert checks.lint(chart, values) == [], name
        documents = checks.render(chart, values, namespace="opea")
        assert checks.semantic_problems(documents) == [], name
        for kube_version in checks.KUBE_VERSIONS:
            assert checks.schema_problems(documents, kube_version) == [], (name, kube_version)


def test_a_server_node_runs_as_compose_runs_it(server_project):
    """The published image with compose's command as args ($(MODEL_ID) for its ${<NODE>_MODEL_ID:-model}), the
    same variables (tokens from the Secret), /health probes at the spec port, the model cache at /data."""
    data, folder = server_project
    documents = checks.render(checks.chart_dir(folder), {"secrets": {"existingSecret": "app-secrets"}})
    compose = compose_of(folder)
    for node in server_nodes(data):
        composed = compose[dns(node["name"])]
        container = container_of(documents, dns(node["name"]))
        assert container["image"] == composed["image"] == node["image"]
        assert container["args"] == [MODEL_VARIABLE.sub("$(MODEL_ID)", word) for word in composed["command"]]
        assert container["args"][container["args"].index("--port") + 1] == str(node["port"])
        assert [port["containerPort"] for port in container["ports"]] == [node["port"]]
        env = {entry["name"]: entry for entry in container["env"]}
        assert env["MODEL_ID"]["value"] == node["model"]
        assert set(composed["environment"]) <= set(env)
        assert not {"HOST", "PORT"} & set(env)  # a generated node's settings, not a server's
        for name, value in composed["environment"].items():
            if checks.SECRET_NAME.search(name):
                assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "app-secrets", "key": "HF_TOKEN",
                                                                  "optional": True}, name
            elif name != "no_proxy":
                assert env[name]["value"] == re.sub(r"^\$\{[A-Za-z_]+:-(.*)\}$", r"\1", value), name
        assert env["HF_HUB_CACHE"]["value"] == "/data"
        health = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", " ".join(composed["healthcheck"]["test"])).groups()
        assert health == (str(node["port"]), "/health")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[kind]["httpGet"] == {"path": "/health", "port": "http"}, kind
        assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 1800
        pod_spec = checks.deployment_of(documents, dns(node["name"]))["spec"]["template"]["spec"]
        volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert mounts == {"/tmp": "tmp", "/data": "model-cache", "/dev/shm": "shm"}
        assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {"sizeLimit": "50Gi"}}
        assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_megaservice_names_each_servers_model(server_project):
    """<NODE>_MODEL_ID: modelId in values.yaml, in the megaservice's env and the server's MODEL_ID; one value."""
    data, folder = server_project
    chart = checks.chart_dir(folder)
    values = yaml.safe_load((chart / "values.yaml").read_text())["services"]
    composed = compose_of(folder)["megaservice"]["environment"]
    documents = checks.render(chart)
    env = checks.container_env(documents, checks.deployment_of(documents, "megaservice")["metadata"]["name"])
    model_variables = {name for name in env if name.endswith("_MODEL_ID")}
    assert model_variables == {name for name in composed if name.endswith("_MODEL_ID")} == {
        f"{prefix(node['name'])}_MODEL_ID" for node in server_nodes(data)}
    for node in server_nodes(data):
        assert values[dns(node["name"])]["server"] == node["server"]
        assert values[dns(node["name"])]["modelId"] == node["model"]
        assert env[f"{prefix(node['name'])}_MODEL_ID"]["value"] == node["model"]
    node = server_nodes(data)[0]
    documents = checks.render(chart, {"services": {dns(node["name"]): {"modelId": "Qwen/Qwen2-0.5B"}}})
    env = checks.container_env(documents, checks.deployment_of(documents, "megaservice")["metadata"]["name"])
    assert env[f"{prefix(node['name'])}_MODEL_ID"]["value"] == "Qwen/Qwen2-0.5B"
    server_env = {entry["name"]: entry for entry in container_of(documents, dns(node["name"]))["env"]}
    assert server_env["MODEL_ID"]["value"] == "Qwen/Qwen2-0.5B"


def test_an_existing_claim_holds_the_model_cache(server_project):
    data, folder = server_project
    chart = checks.chart_dir(folder)
    documents = checks.render(chart, server_value_sets(chart, data)["claims"])
    for node in server_nodes(data):
        pod_spec = checks.deployment_of(documents, dns(node["name"]))["spec"]["template"]["spec"]
        (cache,) = [volume for volume in pod_spec["volumes"] if volume["name"] == "model-cache"]
        assert cache == {"name": "model-cache", "persistentVolumeClaim": {"claimName": f"models-{dns(node['name'])}"}}


def test_nodes_without_a_server_render_as_before(tmp_path):
    """Answers of an older release (no `server` key) and the generated nodes beside servers: no server settings."""
    copier_render(COMPOSE_TEMPLATE, OLD_ANSWERS, tmp_path / "old")
    copier_render(COMPOSE_TEMPLATE, CHATQNA_REAL, tmp_path / "real")
    for folder, component in ((tmp_path / "old", "llm"), (tmp_path / "real", "retriever")):
        chart = checks.chart_dir(folder)
        assert checks.lint(chart) == []
        documents = checks.render(chart)
        assert checks.semantic_problems(documents) == []
        entry = yaml.safe_load((chart / "values.yaml").read_text())["services"][component]
        assert not {"server", "modelId", "args", "modelCache"} & set(entry)
        container = container_of(documents, component)
        assert "args" not in container
        assert [mount["mountPath"] for mount in container["volumeMounts"]] == ["/tmp"]
        assert {container[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe")} == {
            "/v1/health_check"}
        assert container["startupProbe"]["failureThreshold"] == 60
        env = {entry["name"] for entry in container["env"]}
        assert {"HOST", "PORT"} <= env and "MODEL_ID" not in env
    documents = checks.render(checks.chart_dir(tmp_path / "old"))
    megaservice = checks.deployment_of(documents, "megaservice")["metadata"]["name"]
    assert not [name for name in checks.container_env(documents, megaservice) if name.endswith("_MODEL_ID")]


# ---------------------------------------------------------------- each check catches what it is there for


@pytest.fixture(scope="module")
def chatqna(tmp_path_factory) -> tuple[Path, list[dict[str, Any]]]:
    destination = tmp_path_factory.mktemp("chatqna-broken")
    copier_render(COMPOSE_TEMPLATE, render.compose_answers(PIPELINES["chatqna"]), destination)
    chart = checks.chart_dir(destination)
    return chart, checks.render(chart, checks.merge(checks.scaled(chart), {"ingress": {"enabled": True}}))


def find(documents: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    return next(document for document in documents if document["kind"] == kind
                and document["metadata"]["labels"]["app.kubernetes.io/component"] == component)


def pod(documents, component="megaservice") -> dict[str, Any]:
    return find(documents, "Deployment", component)["spec"]["template"]["spec"]


def env_entry(documents, name, component="megaservice") -> dict[str, Any]:
    return next(entry for entry in pod(documents, component)["containers"][0]["env"] if entry["name"] == name)


def _wrong_host(documents):
    env_entry(documents, "LLM_SERVICE_HOST_IP")["value"] = "llm"  # compose's name, not the Service's


def _wrong_port(documents):
    env_entry(documents, "RERANK_SERVICE_PORT")["value"] = "8001"


def _selector(documents):
    find(documents, "Service", "retriever")["spec"]["selector"]["app.kubernetes.io/component"] = "retriver"


def _target_port(documents):
    find(documents, "Service", "embedding")["spec"]["ports"][0]["targetPort"] = 6001


def _probe_port(documents):
    pod(documents, "llm")["containers"][0]["readinessProbe"]["httpGet"]["port"] = 9001


def _token_literal(documents):
    pod(documents, "llm")["containers"][0]["env"].append({"name": "HF_TOKEN", "value": ""})


def _token_value(documents):
    pod(documents, "llm")["containers"][0]["env"].append({"name": "EXTRA", "value": "hf_abcdefghijklmnop"})


def _config_map(documents):
    documents.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                      "data": {"LLM_API_KEY": "x"}})


def _no_security_context(documents):
    del pod(documents, "rerank")["containers"][0]["securityContext"]


def _writable_root(documents):
    pod(documents, "rerank")["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False


def _capabilities(documents):
    pod(documents, "rerank")["containers"][0]["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}


def _escalation(documents):
    del pod(documents)["containers"][0]["securityContext"]["allowPrivilegeEscalation"]


def _root(documents):
    for context in (pod(documents)["securityContext"], pod(documents)["containers"][0]["securityContext"]):
        context.pop("runAsNonRoot")


def _seccomp(documents):
    for context in (pod(documents)["securityContext"], pod(documents)["containers"][0]["securityContext"]):
        context["seccompProfile"] = {"type": "Unconfined"}


def _test_pod_unhardened(documents):
    (hook,) = checks.helm_tests(documents)
    del hook["spec"]["containers"][0]["securityContext"]


def _hpa_target(documents):
    find(documents, "HorizontalPodAutoscaler", "llm")["spec"]["scaleTargetRef"]["name"] = "chatqna-lm"


def _hpa_and_replicas(documents):
    find(documents, "Deployment", "llm")["spec"]["replicas"] = 2


def _pdb_selector(documents):
    find(documents, "PodDisruptionBudget", "llm")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "x"


def _no_limits(documents):
    del pod(documents, "embedding")["containers"][0]["resources"]["limits"]


def _no_probe(documents):
    del pod(documents, "embedding")["containers"][0]["livenessProbe"]


def _ingress_service(documents):
    next(iter(checks.of_kind(documents, "Ingress").values()))["spec"]["rules"][0]["http"]["paths"][-1]["backend"][
        "service"]["name"] = "ui"  # compose's name, not the Service's


def _ingress_port(documents):
    next(iter(checks.of_kind(documents, "Ingress").values()))["spec"]["rules"][0]["http"]["paths"][0]["backend"][
        "service"]["port"] = {"number": 80}


def _ingress_twice(documents):
    paths = next(iter(checks.of_kind(documents, "Ingress").values()))["spec"]["rules"][0]["http"]["paths"]
    paths.append(copy.deepcopy(paths[0]))


BREAKAGES = {
    "a host that is not a Service": (_wrong_host, "LLM_SERVICE_HOST_IP='llm' is not a Service"),
    "a port that is not the Service's": (_wrong_port, "RERANK_SERVICE_PORT='8001' is not a port"),
    "a selector that matches no pods": (_selector, "matches no Deployment's or StatefulSet's pods"),
    "a targetPort no container exposes": (_target_port, "targetPort 6001 is not a port"),
    "a probe on an unexposed port": (_probe_port, "hits port 9001"),
    "a token as an env literal": (_token_literal, "HF_TOKEN is an env literal"),
    "a token-shaped value": (_token_value, "looks like a token"),
    "a key in a ConfigMap": (_config_map, "ConfigMap/settings: LLM_API_KEY looks like a secret"),
    "no securityContext": (_no_security_context, "has no securityContext"),
    "a writable root": (_writable_root, "readOnlyRootFilesystem"),
    "capabilities kept": (_capabilities, "keeps capabilities"),
    "privilege escalation": (_escalation, "allows privilege escalation"),
    "maybe root": (_root, "may run as root"),
    "no seccomp": (_seccomp, "seccomp profile 'Unconfined'"),
    "an unhardened test pod": (_test_pod_unhardened, "container test has no securityContext"),
    "an HPA of nothing": (_hpa_target, "not a Deployment of the chart"),
    "an HPA fighting fixed replicas": (_hpa_and_replicas, "also fixes its replicas"),
    "a PDB of nothing": (_pdb_selector, "PodDisruptionBudget/chatqna-llm: its selector"),
    "no limits": (_no_limits, "has no limits for cpu, memory"),
    "no liveness probe": (_no_probe, "has no livenessProbe"),
    "an Ingress to no Service": (_ingress_service, "'/' goes to 'ui', not a Service of the chart"),
    "an Ingress to a port the Service lacks": (_ingress_port, "goes to port {'number': 80} of Service"),
    "a path routed twice": (_ingress_twice, "is routed twice"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_semantic_checks_catch_a_broken_manifest(chatqna, breakage):
    _, documents = chatqna
    assert checks.semantic_problems(documents) == []  # the same documents, unbroken, pass
    broken = copy.deepcopy(documents)
    mutate, expected = BREAKAGES[breakage]
    mutate(broken)
    problems = checks.semantic_problems(broken)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(("where", "change"), [
    ("an unknown field", lambda d: d["spec"]["template"]["spec"].update(enableServiceLink=False)),
    ("a wrong type", lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
        containerPort="6000")),
    ("a missing required field", lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name")),
])
def test_strict_schemas_catch_a_broken_manifest(chatqna, where, change):
    _, documents = chatqna
    deployment = copy.deepcopy(find(documents, "Deployment", "embedding"))
    assert checks.schema_problems([deployment], checks.KUBE_VERSIONS[0]) == []
    change(deployment)
    assert checks.schema_problems([deployment], checks.KUBE_VERSIONS[0]), where


def test_strict_is_what_catches_an_unknown_field(chatqna):
    _, documents = chatqna
    service = copy.deepcopy(find(documents, "Service", "llm"))
    service["spec"]["ports"][0]["targetPorts"] = "http"  # a typo
    kubernetes_validate.validate(service, checks.KUBE_VERSIONS[0], strict=False)  # lenient: passes
    assert checks.schema_problems([service], checks.KUBE_VERSIONS[0])


def test_lint_catches_a_broken_chart(chatqna, tmp_path):
    chart, _ = chatqna
    broken = shutil.copytree(chart, tmp_path / chart.name)
    (broken / "templates" / "services.yaml").write_text("{{ if }}\n")
    assert checks.lint(broken)
    metadata = broken / "Chart.yaml"
    shutil.copy(chart / "templates" / "services.yaml", broken / "templates" / "services.yaml")
    assert checks.lint(broken) == []
    metadata.write_text(metadata.read_text().replace("version: 0.1.0\n", ""))
    assert any("version" in problem for problem in checks.lint(broken))


def test_the_chart_refuses_a_secret_as_a_plain_value(chatqna):
    chart, _ = chatqna
    for component in ({"services": {"llm": {"env": {"LLM_API_KEY": "sk-abc"}}}},
                      {"megaservice": {"env": {"HF_TOKEN": "hf_abc"}}}):
        with pytest.raises(helm.HelmRenderError, match="looks like a secret"):
            checks.render(chart, component)


def test_without_a_secret_no_secret_variable_is_set(chatqna):
    """Only the password of the chart's own pgvector server, from the Secret the chart generates, is set."""
    chart, _ = chatqna
    documents = checks.render(chart)
    generated = set(checks.of_kind(documents, "Secret"))
    assert generated == {"chatqna-pgvector"}
    for _, _, spec in checks.pod_specs(documents):
        for container in checks.containers(spec):
            secrets = [entry for entry in container.get("env") or [] if checks.SECRET_NAME.search(entry["name"])]
            assert [entry for entry in secrets
                    if entry.get("valueFrom", {}).get("secretKeyRef", {}).get("name") not in generated] == []


def test_values_secret_check_catches_a_literal():
    assert checks.values_secret_problems({"services": {"llm": {"secretEnv": {"LLM_API_KEY": "LLM_API_KEY"}}}}) == []
    assert checks.values_secret_problems({"services": {"llm": {"env": {"LLM_API_KEY": "abc"}}}})
    assert checks.values_secret_problems({"proxy": {"http_proxy": "hf_abcdefghijklmnop"}})


# ---------------------------------------------------------------- the generated project's own check (make chart)


@pytest.mark.parametrize("spec", [None, E2E_SPECS / "fan-out-in.json"], ids=["defaults", "fan-out-in"])
def test_the_projects_own_chart_tests_pass(spec, tmp_path):
    project = tmp_path / "project"
    result = run_cli("megaservice", *(["--spec", spec] if spec else ["--defaults"]), "--output", project)
    assert result.returncode == 0, result.stderr
    # What `make chart` runs, with this venv's pinned helm-python-sdk and kubernetes-validate.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "--confcutdir=tests/chart", "tests/chart"], cwd=project, capture_output=True, text=True,
                           timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s( \(\d+:\d+:\d+\))?", summary), summary  # nothing skipped or failed
    make = shutil.which("make") or pytest.skip("make is not installed")
    dry = subprocess.run([make, "-n", "chart", "VENV=/x/venv"], cwd=project, capture_output=True, text=True,
                         check=True).stdout
    assert "/x/venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-chart.txt" in dry
    assert "/x/venv/bin/python -m pytest -q --confcutdir=tests/chart tests/chart" in dry
    # `make test` needs nothing new: the project's pytest settings leave tests/chart out.
    assert "--ignore=tests/chart" in (project / "pyproject.toml").read_text()
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    assert [step.get("run") for step in workflow["jobs"]["chart"]["steps"]][-1] == "make chart"
    kind = "\n".join(step.get("run") or step.get("uses") for step in workflow["jobs"]["kind"]["steps"])
    for command in ("helm/kind-action", "docker compose build", "kind load docker-image", "helm install", "--wait",
                    "helm test"):
        assert command in kind, command
    readme = (project / "README.md").read_text()
    section = readme[readme.index("## On Kubernetes (Helm)"):readme.index("## Plugging in real backends")]
    name = checks.chart_dir(project).name
    for text in (f"helm install {name} deploy/helm/{name}", f"helm test {name}", "make chart", "image.registry",
                 "secrets.existingSecret", "replicas", "autoscaling.enabled", "values-gaudi.yaml"):
        assert text in section, text


def test_the_projects_chart_tests_fail_on_a_broken_chart(tmp_path):
    """The project's tests can fail: a securityContext weakened in its values is reported."""
    project = tmp_path / "project"
    assert run_cli("megaservice", "--defaults", "--output", project).returncode == 0
    values = project / "deploy" / "helm" / "chatqna" / "values.yaml"
    text = values.read_text()
    assert text.count("  readOnlyRootFilesystem: true\n") == 1
    values.write_text(text.replace("  readOnlyRootFilesystem: true\n", "  readOnlyRootFilesystem: false\n"))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "--confcutdir=tests/chart", "tests/chart"], cwd=project, capture_output=True, text=True,
                           timeout=300)
    assert tests.returncode == 1, tests.stdout
    assert "failed" in tests.stdout and "the root file system is writable" in tests.stdout


def test_the_requirements_pin_what_this_repository_tests_with():
    import tomllib
    from importlib.metadata import version

    pins = dict(line.split("==") for line in (COMPOSE_TEMPLATE / "template" / "requirements-chart.txt").read_text()
                .splitlines() if "==" in line and not line.startswith("#"))
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    for package in ("helm-python-sdk", "kubernetes-validate"):
        assert f"{package}=={pins[package]}" in extra, package
        assert version(package) == pins[package], package
    megaservice_dev = (REPO / "templates" / "megaservice" / "requirements-dev.txt").read_text()
    for package in ("pytest", "pyyaml"):
        assert f"{package}=={pins[package]}" in megaservice_dev, package  # one project venv holds both files


# ---------------------------------------------------------------- documents (a dataprep service beside the flow)


@pytest.fixture(scope="module")
def documents_chart(tmp_path_factory) -> Path:
    destination = tmp_path_factory.mktemp("documents-chart")
    copier_render(COMPOSE_TEMPLATE, render.compose_answers(PIPELINES["documents"]), destination)
    return checks.chart_dir(destination)


def env_of(documents: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return checks.container_env(documents, checks.deployment_of(documents, key)["metadata"]["name"])


def test_dataprep_and_the_retriever_share_the_charts_pgvector_server(documents_chart):
    documents = checks.render(documents_chart)
    (server,) = checks.of_kind(documents, "StatefulSet").values()
    (service,) = [svc for name, svc in checks.of_kind(documents, "Service").items() if name.endswith("-pgvector")]
    assert service["spec"]["ports"][0]["port"] == 5432
    assert server["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    connection = {key: env_of(documents, key)["PG_CONNECTION_STRING"]["value"] for key in ("dataprep", "retriever")}
    assert len(set(connection.values())) == 1
    assert f"@{service['metadata']['name']}:5432/vectordb" in connection["dataprep"]
    assert "$(POSTGRES_PASSWORD)" in connection["dataprep"]  # expanded by Kubernetes from the Secret, not a value
    for key in ("dataprep", "retriever"):
        assert env_of(documents, key)["VECTOR_STORE"]["value"] == "pgvector"
    dataprep = env_of(documents, "dataprep")
    assert dataprep["EMBEDDING_SERVICE_HOST_IP"]["value"].endswith("-embedding")
    assert "VECTOR_STORE" not in env_of(documents, "llm")


def test_the_generated_password_is_random_and_only_in_the_charts_own_secret(documents_chart):
    first, second = (checks.render(documents_chart) for _ in range(2))
    secrets = [next(iter(checks.of_kind(rendered, "Secret").values())) for rendered in (first, second)]
    assert secrets[0]["data"]["POSTGRES_PASSWORD"] != secrets[1]["data"]["POSTGRES_PASSWORD"]
    assert checks.generated_secrets(first) == {secrets[0]["metadata"]["name"]}
    assert checks.semantic_problems(first) == []
    values = (documents_chart / "values.yaml").read_text()
    assert "POSTGRES_PASSWORD" not in values and checks.values_secret_problems(yaml.safe_load(values)) == []


def test_an_existing_secret_replaces_the_charts_server(documents_chart):
    documents = checks.render(documents_chart, {"documents": {"existingSecret": "my-store"}})
    assert checks.of_kind(documents, "StatefulSet") == {} and checks.of_kind(documents, "Secret") == {}
    reference = env_of(documents, "retriever")["PG_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "my-store", "key": "PG_CONNECTION_STRING", "optional": True}
    assert checks.semantic_problems(documents) == []


def test_a_secret_the_chart_did_not_generate_is_still_refused(documents_chart):
    documents = checks.render(documents_chart)
    secret = next(iter(checks.of_kind(documents, "Secret").values()))
    del secret["metadata"]["annotations"][checks.GENERATED]
    assert any("the chart renders a Secret" in problem for problem in checks.secret_problems(documents))
