"""Render templates/microservice for every stub family and check what comes out.

Each service is rendered where a project holds it, `<root>/services/<dns-name>/`,
with the runtime library's wheel in `<root>/vendor/` (as the root template puts
it). Fast tests look at the rendered files: exactly the files a service owns (thin:
the machinery is opea-new-runtime's, and its image is a stage of the project's one
Dockerfile), answers recorded, Python that compiles and passes ruff, no code
repeated between services nor anywhere in a whole project, pins that agree with
the megaservice's and with the runtime's version, and the user's backend.py
surviving a re-render. Slow tests install the pinned requirements (the runtime from vendor/)
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
    "llm": ("LLM", "/v1/chat/completions", {"query": "What is OPEA?", "stream": False}, "choices"),
    "guardrail": ("guardrail", "/v1/guardrails", {"text": "hello"}, "blocked"),
    "passthrough": ("text2sql", "/v1/text2sql", {"text": "hello"}, "trace"),
}
COMMON_FILES = {
    ".copier-answers.yml", "README.md", "pyproject.toml", "requirements.txt",
    "tests/conftest.py", "tests/test_health.py",
    *(f"app/{name}" for name in ("__init__.py", "__main__.py", "backend.py", "main.py", "routes.py", "schemas.py",
                                 "stub.py")),
}
# Rendered from one template file for every service, not from a family's: alike in every service by design.
SAME_IN_EVERY_SERVICE = {"README.md", "pyproject.toml", "requirements.txt", "tests/conftest.py",
                         "tests/test_health.py", "app/__init__.py", "app/__main__.py", "app/main.py"}
PINS = {"opea-new-runtime": RUNTIME_VERSION, "fastapi": "0.124.0", "pydantic": "2.11.7", "pydantic-settings": "2.10.1",
        "uvicorn": "0.35.0", "starlette": "0.49.1", "anyio": "4.10.0", "prometheus-client": "0.22.1",
        "httpx": "0.28.1"}
STORE_PINS = {"numpy": "2.3.2", "psycopg": "3.2.9", "psycopg-binary": "3.2.9"}  # retrievers and dataprep: the stores
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


def test_its_image_is_the_service_stage_of_the_projects_dockerfile(rendered):
    """No Dockerfile of its own (the root template's `service` stage builds every service, from the project
    root, whose .dockerignore governs); its README builds that stage with its folder name and port."""
    data, folder = rendered
    assert not (folder / "Dockerfile").exists() and not (folder / ".dockerignore").exists()
    here = dns(data["service_name"])
    command = (f"(cd ../.. && docker build --target service --build-arg SERVICE={here} --build-arg PORT={data['port']}"
               f" -t opea/my-app-{here} .)")
    assert command in (folder / "README.md").read_text().splitlines()
    stage = (MEGASERVICE_TEMPLATE / "Dockerfile.jinja").read_text().split("FROM base AS service\n")[1]
    assert stage.startswith("ARG SERVICE\n") and "\nARG PORT\n" in stage
    assert "COPY services/${SERVICE}/app/ services/${SERVICE}/app/" in stage
    # What the stage copies is here, under the names it copies.
    assert (folder / "requirements.txt").is_file() and (folder / "app" / "__main__.py").is_file()


def test_requirements_find_the_runtime_in_vendor_and_pin_exactly(rendered):
    data, folder = rendered
    text = (folder / "requirements.txt").read_text()
    assert text.splitlines()[0] == "--find-links ../../vendor"
    assert pins(text) == PINS
    assert data["service_name"] not in text and dns(data["service_name"]) not in text  # the same in every service
    wheel = folder.parents[1] / "vendor" / runtime_wheel.wheel_name()
    assert wheel.is_file() and f"-{PINS['opea-new-runtime']}-" in wheel.name


def test_a_retriever_beside_a_dataprep_service_installs_the_stores_and_no_other_does(tmp_path):
    """numpy and psycopg are in a retriever's image only when a dataprep service fills a store it searches."""
    searching = render(answers("retriever") | {"stores": True}, tmp_path / "searching")
    assert pins((searching / "requirements.txt").read_text()) == PINS | STORE_PINS
    plain = render(answers("retriever"), tmp_path / "plain")
    assert not set(STORE_PINS) & set(pins((plain / "requirements.txt").read_text()))
    dataprep = render({**answers("retriever"), "service_type": "dataprep", "stub": "dataprep",
                       "endpoint": "/v1/dataprep/ingest"}, tmp_path / "dataprep")
    assert set(STORE_PINS) <= set(pins((dataprep / "requirements.txt").read_text()))


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
    for command in ("python -m app", "python -m pytest", "docker build --target service", "/metrics"):
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
    assert ("docker build --target service --build-arg SERVICE=data-proc-v2 --build-arg PORT=7100"
            " -t opea/my-app-data-proc-v2 .") in (folder / "README.md").read_text()
    # The image copies services/${SERVICE}/app/ with SERVICE=data-proc-v2 (compose passes the folder name):
    # tests/templates/test_compose_template.py resolves it for echo_service and guard_in.


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
    """Two services' copies of one file of the microservice template that no family varies."""
    if not (one.startswith("services/") and other.startswith("services/")):
        return False
    relative = one.split("/", 2)[2]  # services/<name>/...
    return relative == other.split("/", 2)[2] and relative in SAME_IN_EVERY_SERVICE


def test_no_code_is_repeated_between_the_files_of_a_project(tmp_path):
    """One service of each family, as in one project: the shared code is the runtime's, not copies."""
    for port, stub in enumerate(FAMILIES, start=7100):
        render_service(answers(stub, port=port), tmp_path)
    files = {path.relative_to(tmp_path).as_posix(): path.read_text() for path in tmp_path.rglob("*.py")}
    assert len(files) > 60
    assert repeated_runs(files) == []


# A project with a service of every stub family, names with '_' included.
SIX_FAMILIES = {"name": "six_families", "services": [
    {"name": "embed", "type": "embedding"}, {"name": "search", "type": "retriever"},
    {"name": "rank", "type": "rerank"}, {"name": "guard_in", "type": "guardrail"},
    {"name": "answer", "type": "llm"}, {"name": "to_sql", "type": "text2sql"},
    {"name": "published", "type": "undefined", "image": "opea/published:1.5"},
]}


def generated_project(tmp_path: Path, spec: dict[str, Any] | None) -> Path:
    from tests.conftest import run_cli

    output = tmp_path / "project"
    if spec is None:
        result = run_cli("megaservice", "--defaults", "--output", output, cwd=tmp_path)
    else:
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        result = run_cli("megaservice", "--spec", tmp_path / "spec.yaml", "--output", output, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return output


def project_runs(project: Path) -> list[tuple[str, str, str]]:
    """repeated_runs over every text file of a generated project (the runtime's wheel and .git aside), with two
    allowances besides alike_by_design: the answers files (copier records each part's answers, the compose
    part's are the root's by design), and the pins the megaservice's requirements.txt shares with every
    service's (equal on purpose, one venv holds them all: test_pins_agree_with_the_megaservice)."""
    files = {path: text for path, text in files_of(project).items()
             if not path.startswith((".git/", "vendor/"))}
    assert "Dockerfile" in files and not [path for path in files if path.endswith("/Dockerfile")]

    def allowed(one: str, other: str) -> bool:
        names = {one.rsplit("/", 1)[-1], other.rsplit("/", 1)[-1]}
        if names <= {".copier-answers.yml", ".copier-answers.compose.yml"} and "/" not in one + other:
            return True
        return names == {"requirements.txt"} and "megaservice/requirements.txt" in (one, other)

    return [(one, other, line) for one, other, line in repeated_runs(files) if not allowed(one, other)]


@pytest.mark.parametrize("spec", [None, SIX_FAMILIES], ids=["defaults", "six-families"])
def test_no_run_of_six_lines_is_repeated_between_the_files_of_a_generated_project(spec, tmp_path):
    """The whole project as `opea-new megaservice` writes it, every file: what images, services and the
    megaservice share is written once (the root Dockerfile's stages, the runtime library)."""
    project = generated_project(tmp_path, spec)
    services = [folder.name for folder in (project / "services").iterdir()]
    assert len(services) == (5 if spec is None else 6)  # the defaults: four on the flow, dataprep beside it
    assert project_runs(project) == []


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
