"""Render templates/microservice for every stub family and check what comes out.

Each service is rendered where a project holds it, `<root>/services/<dns-name>/`,
with the runtime library's wheel in `<root>/vendor/` (as the root template puts
it). Fast tests look at the rendered files: exactly the files a service owns (thin:
the machinery is opea-new-runtime's), answers recorded, Python that compiles and
passes ruff, no code repeated between services, a Dockerfile that passes hadolint
and keeps its contract (project root as build context), pins that agree with the
megaservice's and with the runtime's version, and the user's backend.py surviving
a re-render. Slow tests install the pinned requirements (the runtime from vendor/)
in a venv of their own, run every family's generated tests, and serve each family
over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import opea_new
from opea_new import runtime_wheel
from tests.conftest import copier_render, files_of, free_port, tool

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "templates" / "microservice"
MEGASERVICE_TEMPLATE = REPO / "templates" / "megaservice"
RUNTIME_VERSION = tomllib.loads((REPO / "runtime" / "pyproject.toml").read_text())["project"]["version"]

FAMILIES = {  # stub family → (service type, endpoint, request, a key its answer must have)
    "embedding": ("embedding", "/v1/embeddings", {"text": "What is OPEA?"}, "embedding"),
    "retriever": ("retriever", "/v1/retrieval", {"text": "OPEA", "embedding": [0.5, 0.5, 0.5, 0.5]},
                  "retrieved_docs"),
    "rerank": ("rerank", "/v1/reranking", {"initial_query": "OPEA?", "retrieved_docs": [{"text": "OPEA is."}]},
               "documents"),
    "llm": ("LLM", "/v1/chat/completions", {"query": "What is OPEA?", "stream": False}, "text"),
    "guardrail": ("guardrail", "/v1/guardrails", {"text": "hello"}, "blocked"),
    "passthrough": ("text2sql", "/v1/text2sql", {"text": "hello"}, "trace"),
}
COMMON_FILES = {
    ".copier-answers.yml", "Dockerfile", "README.md", "pyproject.toml", "requirements.txt",
    "tests/conftest.py", "tests/test_health.py",
    *(f"app/{name}" for name in ("__init__.py", "__main__.py", "backend.py", "main.py", "routes.py", "schemas.py",
                                 "stub.py")),
}
# Rendered from one template file for every service, not from a family's: alike in every service by design.
SAME_IN_EVERY_SERVICE = {"Dockerfile", "README.md", "pyproject.toml", "requirements.txt", "tests/conftest.py",
                         "tests/test_health.py", "app/__init__.py", "app/__main__.py", "app/main.py"}
PINS = {"opea-new-runtime": RUNTIME_VERSION, "fastapi": "0.124.0", "pydantic": "2.11.7", "pydantic-settings": "2.10.1",
        "uvicorn": "0.35.0", "starlette": "0.49.1", "anyio": "4.10.0", "prometheus-client": "0.22.1",
        "httpx": "0.28.1"}
EXTRA_FILES = {"embedding": {"app/remote.py"}, "rerank": {"app/remote.py"},
               "llm": {"app/remote.py", "app/prompts.py"}}


def answers(stub: str, *, name: str | None = None, port: int = 7100) -> dict[str, Any]:
    service_type, endpoint, _, _ = FAMILIES[stub]
    return {"project_name": "my_app", "service_name": name or f"my_{stub}", "service_type": service_type,
            "stub": stub, "port": port, "endpoint": endpoint}


def dns(name: str) -> str:
    return name.replace("_", "-")


def render(data: dict[str, Any], destination: Path, template: Path = TEMPLATE, **kwargs: Any) -> Path:
    return copier_render(template, data, destination, **kwargs)


def render_service(data: dict[str, Any], root: Path, **kwargs: Any) -> Path:
    """The service rendered into `root/services/<dns-name>/`, the runtime's wheel in `root/vendor/` as in a project."""
    vendor = root / "vendor"
    if not vendor.is_dir():
        vendor.mkdir(parents=True)
        name, wheel = runtime_wheel.build()
        (vendor / name).write_bytes(wheel)
    return render(data, root / "services" / dns(data["service_name"]), **kwargs)


def pins(text: str) -> dict[str, str]:
    return dict(line.split("==") for line in text.splitlines() if "==" in line and not line.startswith("#"))


@pytest.fixture(scope="module", params=list(FAMILIES))
def rendered(request, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    data = answers(request.param)
    return data, render_service(data, tmp_path_factory.mktemp(request.param))


# ---------------------------------------------------------------- the files


def test_renders_exactly_the_files_a_service_owns(rendered):
    data, folder = rendered
    expected = COMMON_FILES | EXTRA_FILES.get(data["stub"], set()) | {f"tests/test_{data['stub']}.py"}
    assert set(files_of(folder)) == expected


def test_no_template_syntax_is_left_and_files_end_cleanly(rendered):
    _, folder = rendered
    for path, text in files_of(folder).items():
        for marker in ("{{", "{%", "{#"):
            assert marker not in text, f"{path} contains {marker!r}"
        assert text.endswith("\n") and not text.endswith("\n\n"), path
        assert "\n\n\n\n" not in text, f"{path} has three blank lines in a row"


def test_answers_file_records_the_answers(rendered):
    data, folder = rendered
    recorded = yaml.safe_load((folder / ".copier-answers.yml").read_text())
    assert {key: recorded[key] for key in data} == data


def test_python_compiles_and_passes_ruff(rendered):
    _, folder = rendered
    for path in folder.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    strict = [tool("ruff"), "check", "--no-cache", "--select", "E,F,W,I,B,UP,SIM", "--line-length", "120", "."]
    result = subprocess.run(strict, cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def service_identity(folder: Path) -> dict[str, Any]:
    """The keyword arguments of `SERVICE = Service(...)` in app/__init__.py, as literals."""
    tree = ast.parse((folder / "app" / "__init__.py").read_text())
    call = next(node.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "SERVICE")
    assert isinstance(call, ast.Call) and call.func.id == "Service" and not call.args
    return {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}


def test_the_service_describes_itself(rendered):
    data, folder = rendered
    assert service_identity(folder) == {"name": data["service_name"], "project": data["project_name"],
                                        "type": data["service_type"].lower(), "port": data["port"],
                                        "endpoint": data["endpoint"]}


def test_the_machinery_is_the_runtimes(rendered):
    data, folder = rendered
    app = folder / "app"
    assert not (app / "settings.py").exists() and not (app / "errors.py").exists()
    main = (app / "main.py").read_text()
    assert "service.create_app(SERVICE, router, create_model)" in main and main.rstrip().endswith("app = create_app()")
    assert "serve(app)" in (app / "__main__.py").read_text()
    for path in folder.rglob("*.py"):
        assert not re.search(r"from (\.|app)(errors| import settings)|from \.?errors import", path.read_text()), path
    if data["stub"] in ("embedding", "rerank", "llm"):  # a re-export of the runtime's client, with its variables
        remote = (app / "remote.py").read_text()
        assert "from opea_new_runtime.backends." in remote and "BACKEND_TIMEOUT" in remote
        assert len([line for line in remote.splitlines() if line and not line.startswith(" ")]) < 12


def test_the_imports_of_a_0_1_0_backend_still_work(rendered):
    """backend.py is the user's and never rewritten: what 0.1.0 wrote there must import from 0.2.0's files."""
    data, folder = rendered
    imports = {"embedding": ("TEIEmbedder", "HashEmbedder"), "rerank": ("TEIReranker", "LexicalReranker"),
               "llm": ("OpenAICompatibleLLM", "ExtractiveLLM"), "retriever": (None, "InMemoryRetriever"),
               "guardrail": (None, "BlocklistGuard"), "passthrough": (None, "PassThrough")}[data["stub"]]
    remote_class, stub_class = imports
    backend = (folder / "app" / "backend.py").read_text()
    assert f"from .stub import {stub_class}, create_stub" in backend
    assert re.search(rf"^(class {stub_class}\b|def create_stub\()", (folder / "app" / "stub.py").read_text(),
                     re.MULTILINE)
    if remote_class:
        assert f"from .remote import {remote_class}" in backend
        assert f"import {remote_class}" in (folder / "app" / "remote.py").read_text()


def test_hadolint_passes(rendered):
    _, folder = rendered
    result = subprocess.run([tool("hadolint"), "--failure-threshold", "warning", "Dockerfile"], cwd=folder,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract(rendered):
    """Built with the project root as context: vendor/ and the requirements first, laid out as in the project."""
    data, folder = rendered
    text = (folder / "Dockerfile").read_text()
    here = f"services/{dns(data['service_name'])}"
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and "FROM ${BASE_IMAGE}" in text
    assert f"docker build -f {here}/Dockerfile -t opea/my-app-{dns(data['service_name'])} ." in text
    steps = ["WORKDIR /home/user\n", "COPY vendor/ vendor/\n", f"COPY {here}/requirements.txt {here}/\n",
             f"RUN pip install --no-cache-dir -r {here}/requirements.txt\n", f"COPY {here}/app/ {here}/app/\n",
             f"WORKDIR /home/user/{here}\n", "USER user\n", 'CMD ["python", "-m", "app"]']
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions), steps
    assert text.count("COPY ") == 3  # nothing else: tests and answers stay out of the image
    assert "HOST=0.0.0.0" in text and f"PORT={data['port']}" in text and f"EXPOSE {data['port']}" in text
    assert re.search(r'^HEALTHCHECK .*\n\s+CMD \["python", "-c", .*/v1/health_check', text, re.MULTILINE)
    assert text.rstrip().endswith('CMD ["python", "-m", "app"]')
    assert not (folder / ".dockerignore").exists()  # the project root's governs


def test_requirements_find_the_runtime_in_vendor_and_pin_exactly(rendered):
    data, folder = rendered
    text = (folder / "requirements.txt").read_text()
    assert text.splitlines()[0] == "--find-links ../../vendor"
    assert pins(text) == PINS
    assert data["service_name"] not in text and dns(data["service_name"]) not in text  # the same in every service
    wheel = folder.parents[1] / "vendor" / runtime_wheel.wheel_name()
    assert wheel.is_file() and f"-{PINS['opea-new-runtime']}-" in wheel.name


def test_the_runtime_version_is_written_once_and_agrees():
    copier = yaml.safe_load((TEMPLATE / "copier.yml").read_text())["runtime_version"]
    assert copier == {"type": "str", "default": RUNTIME_VERSION, "when": False}
    assert opea_new.__version__ == RUNTIME_VERSION
    for path in TEMPLATE.rglob("*"):
        if path.is_file() and path.name != "copier.yml":
            assert RUNTIME_VERSION not in path.read_text(), path


def test_pins_agree_with_the_megaservice(rendered, tmp_path):
    data, folder = rendered
    service = pins((folder / "requirements.txt").read_text())
    megaservice = render({"name": "p", "description": "", "runtime": "lite",
                          "megaservice": {"port": 8888, "endpoint": "/v1/p", "protocol": "raw"},
                          "services": [], "flow": []}, tmp_path / "mega", MEGASERVICE_TEMPLATE)
    shared = pins((megaservice / "megaservice" / "requirements.txt").read_text())
    shared |= pins((megaservice / "requirements-dev.txt").read_text())
    for package, version in service.items():
        if package in shared:  # one project venv holds them all
            assert shared[package] == version, package


def test_readme_documents_the_endpoint_and_commands(rendered):
    data, folder = rendered
    readme = (folder / "README.md").read_text()
    assert readme.startswith(f"# {data['service_name']}\n")
    assert f"POST {data['endpoint']}" in readme
    assert f"http://127.0.0.1:{data['port']}{data['endpoint']}" in readme
    example = re.search(r"-d '(\{.*\})'", readme).group(1)
    json.loads(example)  # the example request is valid JSON
    for command in ("python -m app", "python -m pytest", "docker build -f services/", "/metrics"):
        assert command in readme, command
    assert "settings.py" not in readme and "errors.py" not in readme


# ---------------------------------------------------------------- answers and ownership


def test_backend_py_is_the_users_after_the_first_render(tmp_path):
    folder = render_service(answers("llm"), tmp_path)
    (folder / "app" / "backend.py").write_text("# mine\n")
    (folder / "app" / "routes.py").write_text("# stale\n")
    render(answers("llm"), folder, overwrite=True)
    assert (folder / "app" / "backend.py").read_text() == "# mine\n"
    assert (folder / "app" / "routes.py").read_text() != "# stale\n"


def test_names_with_underscores_and_dashes(tmp_path):
    folder = render_service(answers("passthrough", name="data-proc_v2"), tmp_path)
    assert folder.name == "data-proc-v2"
    assert service_identity(folder)["name"] == "data-proc_v2"
    assert "docker build -f services/data-proc-v2/Dockerfile -t opea/my-app-data-proc-v2 ." in (
        folder / "README.md").read_text()
    assert "COPY services/data-proc-v2/app/ services/data-proc-v2/app/" in (folder / "Dockerfile").read_text()


def repeated_runs(files: dict[str, str], length: int = 6) -> list[tuple[str, str, str]]:
    """Runs of `length` non-blank lines that two files share: (one file, the other, the run's first line)."""
    first_seen: dict[tuple[str, ...], str] = {}
    found = []
    for path, text in files.items():
        lines = [line.rstrip() for line in text.splitlines() if line.strip()]
        for start in range(len(lines) - length + 1):
            run = tuple(lines[start:start + length])
            other = first_seen.setdefault(run, path)
            if other != path and not alike_by_design(other, path):
                found.append((other, path, run[0]))
    return found


def alike_by_design(one: str, other: str) -> bool:
    relative = one.split("/", 2)[2]  # services/<name>/...
    return relative == other.split("/", 2)[2] and relative in SAME_IN_EVERY_SERVICE


def test_no_code_is_repeated_between_the_files_of_a_project(tmp_path):
    """One service of each family, as in one project: the shared code is the runtime's, not copies."""
    for port, stub in enumerate(FAMILIES, start=7100):
        render_service(answers(stub, port=port), tmp_path)
    files = {path.relative_to(tmp_path).as_posix(): path.read_text() for path in tmp_path.rglob("*.py")}
    assert len(files) > 60
    assert repeated_runs(files) == []


@pytest.mark.parametrize(("key", "value"), [("stub", "magic"), ("service_name", "Bad Name"), ("port", 0),
                                            ("port", 70000), ("endpoint", "no-slash")])
def test_bad_answers_are_refused(tmp_path, key, value):
    with pytest.raises(ValueError):
        render({**answers("llm"), key: value}, tmp_path / "svc")
    assert not (tmp_path / "svc" / "app").exists()


def test_the_runtime_version_is_not_a_question(tmp_path):
    folder = render_service(answers("llm"), tmp_path)
    assert "runtime_version" not in yaml.safe_load((folder / ".copier-answers.yml").read_text())


# ---------------------------------------------------------------- installed and served (slow)


@pytest.fixture(scope="session")
def service_venv(tmp_path_factory) -> Path:
    """One venv with the services' pinned requirements (the same for every family), the runtime from vendor/."""
    requirements = render_service(answers("llm"), tmp_path_factory.mktemp("requirements")) / "requirements.txt"
    venv = tmp_path_factory.mktemp("service-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    dev = MEGASERVICE_TEMPLATE / "requirements-dev.txt"
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(requirements), "-r", str(dev)], check=True, timeout=900)
    return venv / "bin" / "python"


@pytest.mark.slow
@pytest.mark.parametrize("stub", list(FAMILIES))
def test_the_generated_tests_pass(stub, tmp_path, service_venv):
    folder = render_service(answers(stub), tmp_path)
    result = subprocess.run([str(service_venv), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=folder,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout) and "skipped" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("stub", list(FAMILIES))
def test_python_m_app_serves_on_127_0_0_1_and_stops_on_sigterm(stub, tmp_path, service_venv):
    import httpx

    port = free_port()
    folder = render_service(answers(stub, port=port), tmp_path)
    environment = {key: value for key, value in os.environ.items() if key not in ("HOST", "PORT")}
    process = subprocess.Popen([str(service_venv), "-m", "app"], cwd=folder, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                health = httpx.get(f"{base}/v1/health_check", timeout=2, trust_env=False)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the service never answered"
                time.sleep(0.1)
        assert health.json()["status"] == "healthy"
        _, endpoint, request, key = FAMILIES[stub]
        answer = httpx.post(f"{base}{endpoint}", json=request, timeout=10, trust_env=False)
        assert answer.status_code == 200, answer.text
        assert key in answer.json()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
