"""Render templates/megaservice with copier for several pipelines and check what comes out.

Fast tests look at the rendered files: what is generated (a thin megaservice on
the opea-new-runtime library, whose wheel is in vendor/), that answers stay data
(a hostile description), that the two runtimes differ only in pipeline.py's
import line (and requirements, README), that pipeline.py declares every node and
edge (it is executed against a recording stand-in of the runtime), the Mermaid
include, ruff, and the project's one Dockerfile (hadolint, a stage per image).
Slow tests render whole projects (this template, compose, and a service folder
per generated service) and run their `make install test` and
`python -m opea_new_runtime.run` (`make run`) for real.
"""

from __future__ import annotations

import ast
import atexit
import difflib
import functools
import io
import json
import keyword
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from opea_new import __version__, runtime_wheel
from tests.conftest import build_context, copier_render, files_of, free_ports, read_pipeline, released_template, tool

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "templates" / "megaservice"
COMPOSE_TEMPLATE = REPO / "templates" / "compose"
MICROSERVICE_TEMPLATE = REPO / "templates" / "microservice"
TYPED_STUBS = ("embedding", "retriever", "rerank", "llm", "guardrail")
WHEEL = f"vendor/opea_new_runtime-{__version__}-py3-none-any.whl"
COMMON_FILES = {
    ".copier-answers.yml", ".dockerignore", ".gitignore", ".github/workflows/ci.yml", "Dockerfile", "Makefile",
    "README.md", "pyproject.toml", "requirements-dev.txt", WHEEL,
    "tests/conftest.py", "tests/test_docker.py", "tests/test_pipeline.py", "tests/test_security.py",
    "tests/test_wiring.py", "tests/test_ui.py", "tests/test_browser.py", "requirements-browser.txt",
    *(f"megaservice/{name}" for name in ("__init__.py", "__main__.py", "hooks.py", "pipeline.py", "requirements.txt")),
}
RUNTIME_NAMES = ("Megaservice", "ServiceOrchestrator", "ServiceType", "remote_service")
# Every name pipeline.py defines or imports at module level, and the local one of build_orchestrator().
PIPELINE_NAMES = {*RUNTIME_NAMES, "hooks", "MEGASERVICE", "build_orchestrator", "orchestrator"}
SHARED_PINS = ["fastapi==0.124.0", "pydantic==2.11.7", "pydantic-settings==2.10.1", "uvicorn==0.35.0",
               "starlette==0.49.1", "anyio==4.10.0", "aiohttp==3.12.15", "httpx==0.28.1",
               "prometheus-client==0.22.1"]
LITE_PINS = ["httptools==0.6.4", 'uvloop==0.21.0; sys_platform != "win32"']
UI_PINS = ["jinja2==3.1.6", "markupsafe==3.0.2"]  # the web UI's templates (a spec without `ui: false`)


@functools.cache
def release() -> Path:
    """The template as its release holds it (the runtime's wheel included): what opea-new renders from."""
    scratch = Path(tempfile.mkdtemp(prefix="opea-new-megaservice-release-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return released_template(TEMPLATE, scratch / "megaservice")


# ---------------------------------------------------------------- answer sets


def service(name: str, type_: str, port: int, endpoint: str, image: str | None = None) -> dict[str, Any]:
    return {"name": name, "type": type_, "port": port, "endpoint": endpoint, "image": image}


def edge(source: str, *targets: str | tuple[str, str]) -> dict[str, Any]:
    return {"service": source, "next": [
        {"service": target, "condition": "success"} if isinstance(target, str)
        else {"service": target[0], "condition": target[1]} for target in targets]}


def answers(name: str, services: list[dict], flow: list[dict], *, runtime: str = "lite",
            protocol: str = "raw", port: int = 8888, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "runtime": runtime,
        "megaservice": {"port": port, "endpoint": f"/v1/{name}", "protocol": protocol},
        "services": services,
        "flow": flow,
    }


CHAIN = answers("chatqna", [
    service("embedding", "embedding", 6000, "/v1/embeddings"),
    service("retriever", "retriever", 7000, "/v1/retrieval"),
    service("rerank", "rerank", 8000, "/v1/reranking"),
    service("llm", "llm", 9000, "/v1/chat/completions"),
], [edge("embedding", "retriever"), edge("retriever", "rerank"), edge("rerank", "llm")],
    protocol="chat", description="Answers questions over a small document set.")

PASS_THROUGH = answers("my_app", [
    service("echo_service", "undefined", 7001, "/v1/echo"),
    service("data-proc", "dataprep", 6007, "/v1/dataprep/ingest"),
    service("kg", "knowledge_graph", 8060, "/v1/graphs"),
], [edge("echo_service", "data-proc"), edge("data-proc", "kg")], port=18888)

# Fan-out and fan-in, and two terminal nodes (merge and side).
FAN = answers("data-pipeline", [
    service("collector", "dataprep", 9001, "/v1/collect"),
    service("processor", "undefined", 9002, "/v1/process"),
    service("validator", "undefined", 9003, "/v1/validate"),
    service("merge", "ragas", 9004, "/v1/ragas"),
    service("side", "text2sql", 9005, "/v1/text2sql"),
], [edge("collector", "processor", "validator"), edge("processor", "merge", "side"),
    edge("validator", "merge")])

CONDITIONAL = answers("guarded", [
    service("guard", "guardrail", 9101, "/v1/guardrails"),
    service("data_processor", "undefined", 9102, "/v1/process"),
    service("data_analyzer", "undefined", 9103, "/v1/analyze"),
    service("error_handler", "undefined", 9104, "/v1/errors"),
    service("refusal", "undefined", 9105, "/v1/refusal"),
], [edge("guard", ("data_processor", "!blocked"), ("refusal", "blocked == true")),
    edge("data_processor", "data_analyzer", ("error_handler", "error"))])

GUARDED_CHAT = answers("guarded-chat", [
    service("guard", "guardrail", 9090, "/v1/guardrails"),
    service("llm", "llm", 9000, "/v1/chat/completions"),
    service("tts", "tts", 9088, "/v1/audio/speech", image="opea/tts:1.5"),
], [edge("guard", "llm"), edge("llm", "tts")], protocol="chat")

HOSTILE_DESCRIPTION = ('He said "hi" {{ name }} {% raw %} {# x #} \\ \\n \'\'\' """ `rm -rf` $(x) ${HOME} '
                       '<!-- hidden --> | a | é 😀 \u2028 \x7f end\nsecond line')
HOSTILE = {**PASS_THROUGH, "description": HOSTILE_DESCRIPTION}

ANSWER_SETS = {"chain": CHAIN, "pass_through": PASS_THROUGH, "fan": FAN, "conditional": CONDITIONAL,
               "guarded_chat": GUARDED_CHAT, "hostile": HOSTILE}


def with_runtime(data: dict[str, Any], runtime: str) -> dict[str, Any]:
    return {**data, "runtime": runtime}


# ---------------------------------------------------------------- helpers


def render(data: dict[str, Any], destination: Path, template: Path | None = None, **kwargs: Any) -> Path:
    return copier_render(template or release(), data, destination, **kwargs)


def dns(name: str) -> str:
    return name.replace("_", "-")


def prefix(name: str) -> str:
    return name.replace("-", "_").upper()


def spec_nodes(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["name"], s["type"].lower(), s["port"], s["endpoint"], s["image"]) for s in data["services"]]


def spec_edges(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(entry["service"], target["service"], target["condition"]) for entry in data["flow"]
            for target in entry["next"]]


def variable(name: str) -> str:
    """The local variable pipeline.py holds a node in: its Python-safe name, `_node` added if that shadows."""
    python = name.replace("-", "_")
    shadows = keyword.iskeyword(python) or keyword.issoftkeyword(python) or python in PIPELINE_NAMES
    return f"{python}_node" if shadows else python


RENDERINGS = [(key, runtime) for key in ANSWER_SETS for runtime in ("comps", "lite")]


@pytest.fixture(scope="module", params=RENDERINGS, ids=lambda param: f"{param[0]}-{param[1]}")
def rendered(request, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    key, runtime = request.param
    data = with_runtime(ANSWER_SETS[key], runtime)
    return data, render(data, tmp_path_factory.mktemp(f"{key}-{runtime}"))


# ---------------------------------------------------------------- the files


def test_renders_exactly_the_files_it_owns(rendered):
    _, project = rendered
    assert set(files_of(project)) == COMMON_FILES


def test_vendor_holds_the_runtime_wheel_as_built(rendered):
    """The wheel `make install` and `docker build` install offline: byte for byte runtime_wheel.build()."""
    data, project = rendered
    name, built = runtime_wheel.build()
    assert f"vendor/{name}" == WHEEL
    assert (project / WHEEL).read_bytes() == built
    with zipfile.ZipFile(project / WHEEL) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"opea_new_runtime-{__version__}.dist-info/METADATA").decode()
    # What the project imports from it: its runtime's names, the server, the local runner, the test fixtures.
    assert {f"opea_new_runtime/{module}.py" for module in
            (data["runtime"], "megaservice", "run", "testing", "settings")} <= names
    assert "Name: opea-new-runtime" in metadata.splitlines() and f"Version: {__version__}" in metadata.splitlines()


def test_no_template_syntax_is_left(rendered):
    data, project = rendered
    for path, text in files_of(project).items():
        if path == WHEEL or (path == ".copier-answers.yml" and data["description"]):
            continue  # a zip; the answers file is data (compared exactly elsewhere)
        text = without_renderings_of(data["description"], text)  # the hostile one carries syntax on purpose
        if path.endswith(".py"):
            text = without_description_literals(data["description"], text)
        for marker in ("{{", "{%", "{#"):
            assert marker not in text, f"{path} contains {marker!r}"


def without_renderings_of(description: str, text: str) -> str:
    """`text` without the forms the templates write a description in: HTML-escaped, JSON literals, TOML summary."""
    import markupsafe

    summary = re.sub(r"[\x00-\x1f\x7f]+", " ", description).strip()
    forms = (str(markupsafe.escape(description)), json.dumps(description, ensure_ascii=False)[1:-1],
             json.dumps(summary, ensure_ascii=False)[1:-1])
    for form in forms:
        if form:
            text = text.replace(form, "")
    return text


def without_description_literals(description: str, source: str) -> str:
    """Python source without its string literals that hold the description (or its one-line summary).

    However a template escapes it into a literal (a docstring, MEGASERVICE's description), Python reads the
    description back from it; every other literal and all the code stay. Source that does not tokenize is
    returned whole (test_python_compiles says why).
    """
    if not description:
        return source
    summary = re.sub(r"[\x00-\x1f\x7f]+", " ", description).strip()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    kept = []
    for token in tokens:
        if token.type == tokenize.STRING:
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):
                value = None
            if isinstance(value, str) and (description in value or summary in value):
                continue
        kept.append(token.string)
    return " ".join(kept)


def test_answers_file_records_the_answers(rendered):
    data, project = rendered
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {key: recorded[key] for key in data} == data
    assert recorded["_src_path"]


def test_python_compiles(rendered):
    _, project = rendered
    for path in project.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_ruff_passes(rendered):
    _, project = rendered
    ruff = tool("ruff")
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    strict = [ruff, "check", "--no-cache", "--select", "E,F,W,I,B,UP,SIM", "--line-length", "120",
              "megaservice", "tests"]
    result = subprocess.run(strict, cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_passes(rendered):
    _, project = rendered
    hadolint = tool("hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", "Dockerfile"],
                            cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile_stages(text: str) -> dict[str, str]:
    """The instructions of each stage of a Dockerfile, by stage name (comments and blank lines dropped); what
    comes before the first FROM under ""."""
    stages, name = {"": []}, ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = re.fullmatch(r"FROM (\S+) AS (\S+)", line)
        if found:
            name = found[2]
            stages[name] = [line]
        else:
            stages[name].append(line)
    return {stage: "\n".join(lines) + "\n" for stage, lines in stages.items()}


def in_order(text: str, steps: list[str]) -> None:
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions), steps


def test_dockerfile_has_a_stage_per_image_on_one_base(rendered):
    """One Dockerfile at the root for every image: `base` (what they share), `megaservice`, `service`."""
    _, project = rendered
    text = (project / "Dockerfile").read_text()
    stages = dockerfile_stages(text)
    assert list(stages) == ["", "base", "megaservice", "service"]
    assert stages[""] == "ARG BASE_IMAGE=python:3.11-slim\n"
    assert stages["base"].startswith("FROM ${BASE_IMAGE} AS base\n")
    assert stages["megaservice"].startswith("FROM base AS megaservice\n")
    assert stages["service"].startswith("FROM base AS service\n")
    base = stages["base"]
    for variable in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PIP_NO_CACHE_DIR=1"):
        assert variable in base, variable
    in_order(base, ["USER root\n", "useradd --create-home --uid 1000", "WORKDIR /home/user/app\n",
                    "COPY vendor/ vendor/\n", "USER user\n"])
    assert base.count("COPY ") == 1  # the runtime's wheel only: each image's stage copies its own folder
    # Every image stage ends as the non-root user, with a healthcheck that needs no curl.
    for stage in ("megaservice", "service"):
        assert re.findall(r"^USER (\S+)$", stages[stage], re.MULTILINE)[-1] == "user", stage
        assert re.search(r'^HEALTHCHECK .*\n\s+CMD \["python", "-c", .*/v1/health_check', stages[stage],
                         re.MULTILINE), stage
    # How to build each by hand, and which base images work.
    project_dns = read_pipeline(project).megaservice["name"].replace("_", "-")
    assert f"#   docker build --target megaservice -t {project_dns}/{project_dns} ." in text
    assert re.search(rf"^#   docker build --target service --build-arg SERVICE=\S+ --build-arg PORT=\S+ "
                     rf"-t {project_dns}/{project_dns}-\S+ \.$", text, re.MULTILINE)
    assert "Python 3.11-3.13" in text and "opea/comps-base:1.5" in text


def test_dockerfile_megaservice_stage(rendered):
    data, project = rendered
    text = dockerfile_stages((project / "Dockerfile").read_text())["megaservice"]
    # vendor/ (the runtime's wheel, found with --find-links ../vendor, copied by base) and the pins, installed
    # before the code.
    in_order(text, ["USER root\n", "COPY megaservice/requirements.txt megaservice/requirements.txt\n",
                    "RUN pip install --no-cache-dir -r megaservice/requirements.txt\n",
                    "COPY megaservice/ megaservice/\n", "USER user\n"])
    assert text.count("COPY ") == 2  # its own folder only: no service's code goes into the megaservice image
    assert "MEGA_SERVICE_HOST=0.0.0.0" in text and f"MEGA_SERVICE_PORT={data['megaservice']['port']}" in text
    assert f"EXPOSE {data['megaservice']['port']}\n" in text
    assert "os.environ['MEGA_SERVICE_PORT']" in text
    assert text.rstrip().endswith('CMD ["python", "-m", "megaservice"]')


def test_dockerfile_service_stage(rendered):
    """Any generated service, by its folder name: laid out as in the project (requirements.txt finds
    ../../vendor), the dependencies first, then only that folder's app/; PORT declared after every RUN (a
    declared ARG is in the cache key of each RUN after it: a new port would reinstall the dependencies)."""
    _, project = rendered
    text = dockerfile_stages((project / "Dockerfile").read_text())["service"]
    here = "services/${SERVICE}"
    in_order(text, ["ARG SERVICE\n", "USER root\n", f"COPY {here}/requirements.txt {here}/\n",
                    f"RUN pip install --no-cache-dir -r {here}/requirements.txt\n", f"COPY {here}/app/ {here}/app/\n",
                    f"WORKDIR /home/user/app/{here}\n", "USER user\n", "ARG PORT\n", 'CMD ["python", "-m", "app"]'])
    assert "RUN " not in text[text.index("ARG PORT\n"):]
    # requirements.txt's --find-links ../../vendor, from where it is copied, is where base put the wheel.
    assert (Path("/home/user/app/services/x") / "../../vendor").resolve() == Path("/home/user/app/vendor")
    assert text.count("COPY ") == 2  # nothing else: tests and answers stay out of the image
    assert "ENV HOST=0.0.0.0 \\\n    PORT=${PORT}\n" in text and "EXPOSE ${PORT}\n" in text
    assert "os.environ['PORT']" in text
    assert text.rstrip().endswith('CMD ["python", "-m", "app"]')


def test_dockerfile_is_the_same_for_every_pipeline_of_a_megaservice_port(tmp_path):
    """Only the megaservice's port and the by-hand examples depend on the answers: services never change it."""
    one = render(with_runtime(CHAIN, "lite"), tmp_path / "one")
    other = render(with_runtime({**PASS_THROUGH, "name": "chatqna", "megaservice": CHAIN["megaservice"]}, "comps"),
                   tmp_path / "other")

    def instructions(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    assert instructions((one / "Dockerfile").read_text()) == instructions((other / "Dockerfile").read_text())


def test_dockerignore_lets_in_only_what_images_copy(rendered):
    """Every image builds from the project root: its context is vendor/, megaservice/ and services/, minus
    venvs, tests, caches and answers files."""
    _, project = rendered
    patterns = [line for line in (project / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]
    assert patterns[:4] == ["*", "!vendor/", "!megaservice/", "!services/"]
    assert {"**/.venv", "**/tests", "**/__pycache__"} <= set(patterns[4:])
    for name in ("Python", "venv/bin/python"):  # what `make install` leaves in the tree
        (project / ".venv" / name).parent.mkdir(parents=True, exist_ok=True)
        (project / ".venv" / name).write_text("")
    (project / "megaservice" / "__pycache__").mkdir(exist_ok=True)
    (project / "megaservice" / "__pycache__" / "pipeline.cpython-311.pyc").write_bytes(b"")
    try:
        context = build_context(project)
    finally:
        shutil.rmtree(project / ".venv")
        shutil.rmtree(project / "megaservice" / "__pycache__")
    # The Dockerfile is read by docker whatever .dockerignore says; no image copies it.
    assert context == {WHEEL, *(f"megaservice/{name}" for name in (
        "__init__.py", "__main__.py", "hooks.py", "pipeline.py", "requirements.txt"))}


def test_requirements_per_runtime(rendered):
    data, project = rendered
    requirements = project / "megaservice" / "requirements.txt"
    pins = [line for line in requirements.read_text().splitlines() if line and not line.startswith("#")]
    runtime = ["--find-links ../vendor", f"opea-new-runtime=={__version__}"]
    if data["runtime"] == "comps":
        assert pins == [*runtime, "opea-comps==1.5", *SHARED_PINS, *UI_PINS]
    else:
        assert pins == [*runtime, *SHARED_PINS, *LITE_PINS, *UI_PINS]
    # --find-links is relative to the file: the project's vendor/ holds the very version pinned.
    assert (requirements.parent / "../vendor").resolve() / Path(WHEEL).name == (project / WHEEL).resolve()
    dev = [line for line in (project / "requirements-dev.txt").read_text().splitlines() if "==" in line]
    assert {line.split("==")[0] for line in dev} == {"pytest", "httpx", "openai", "pyyaml", "docker"}


def test_the_megaservice_code_imports_only_the_runtime_library(rendered):
    data, project = rendered
    tree = ast.parse((project / "megaservice" / "pipeline.py").read_text())
    imports = {(node.module, node.level, tuple(alias.name for alias in node.names))
               for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert imports == {(f"opea_new_runtime.{data['runtime']}", 0, RUNTIME_NAMES), (None, 1, ("hooks",))}
    assert not [node for node in tree.body if isinstance(node, ast.Import)]
    main = ast.parse((project / "megaservice" / "__main__.py").read_text())
    assert {(node.module, node.level, tuple(alias.name for alias in node.names)) for node in main.body
            if isinstance(node, ast.ImportFrom)} == {("opea_new_runtime.megaservice", 0, ("serve",)),
                                                     ("pipeline", 1, ("MEGASERVICE", "build_orchestrator"))}
    assert "serve(MEGASERVICE, build_orchestrator)" in (project / "megaservice" / "__main__.py").read_text()
    for path in (project / "megaservice").rglob("*.py"):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
        assert not modules & {"comps", "lite", "aiohttp", "fastapi", "uvicorn"}, path  # the runtime's business


@pytest.mark.parametrize("key", sorted(ANSWER_SETS))
def test_pipeline_import_is_the_only_code_that_differs_between_runtimes(key, tmp_path):
    comps = files_of(render(with_runtime(ANSWER_SETS[key], "comps"), tmp_path / "comps"))
    lite = files_of(render(with_runtime(ANSWER_SETS[key], "lite"), tmp_path / "lite"))
    assert set(comps) == set(lite)
    differing = {path for path in comps if comps[path] != lite[path]}
    assert differing == {"megaservice/pipeline.py", "megaservice/requirements.txt", "README.md",
                         ".copier-answers.yml"}
    changed = [line for line in difflib.ndiff(comps["megaservice/pipeline.py"].splitlines(),
                                              lite["megaservice/pipeline.py"].splitlines())
               if line.startswith(("- ", "+ "))]
    names = ", ".join(RUNTIME_NAMES)
    assert changed == [f"- from opea_new_runtime.comps import {names}",
                       f"+ from opea_new_runtime.lite import {names}"]

    def pins(text: str) -> set[str]:
        return {line for line in text.splitlines() if line and not line.startswith("#")}

    requirements = "megaservice/requirements.txt"
    assert pins(comps[requirements]) - pins(lite[requirements]) == {"opea-comps==1.5"}
    assert pins(lite[requirements]) - pins(comps[requirements]) == set(LITE_PINS)


# ---------------------------------------------------------------- pipeline.py


def connections(pipeline: str) -> list[tuple[str, str, str]]:
    """Every orchestrator.flow_to(...) of pipeline.py: (source variable, target variable, condition as written)."""
    found = []
    for node in ast.walk(ast.parse(pipeline)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "flow_to":
            source, target = node.args
            conditions = [ast.literal_eval(keyword_.value) for keyword_ in node.keywords if keyword_.arg == "condition"]
            assert len(node.keywords) == len(conditions) <= 1
            found.append((source.id, target.id, conditions[0] if conditions else "success"))
    return found


def test_pipeline_builds_every_node_with_its_type_and_address(rendered):
    data, project = rendered
    pipeline = read_pipeline(project)
    assert [(n.name, n.type, n.port, n.endpoint, n.image) for n in pipeline.nodes] == spec_nodes(data)
    assert pipeline.added == [s["name"] for s in data["services"]]
    assert pipeline.variables == {s["name"]: variable(s["name"]) for s in data["services"]}


def test_pipeline_connects_every_edge(rendered):
    data, project = rendered
    assert read_pipeline(project).edges == spec_edges(data)
    # As an OPEA engineer writes it: the default condition is left out.
    expected = [(variable(source), variable(target), condition) for source, target, condition in spec_edges(data)]
    text = (project / "megaservice" / "pipeline.py").read_text()
    assert connections(text) == expected
    assert text.count("condition=") == sum(condition != "success" for *_, condition in expected)


def test_megaservice_and_hooks_describe_the_spec(rendered):
    data, project = rendered
    pipeline = read_pipeline(project)
    mega = data["megaservice"]
    assert pipeline.runtime == data["runtime"]
    assert pipeline.megaservice == {"name": data["name"], "port": mega["port"], "endpoint": mega["endpoint"],
                                    "protocol": mega["protocol"], "description": data["description"],
                                    "ui_port": mega.get("ui_port", 5173) if mega.get("ui", True) else None}
    assert pipeline.hooks == "megaservice.hooks"  # ServiceOrchestrator(hooks): the project's own module
    echo = pipeline.nodes[0]
    assert echo.host_variable == f"{prefix(echo.name)}_SERVICE_HOST_IP"
    assert echo.folder == f"services/{dns(echo.name)}"


def test_a_pipeline_without_a_web_ui_has_no_ui_port_tests_nor_jinja(tmp_path):
    data = with_runtime(CHAIN, "lite")
    project = render({**data, "megaservice": {**data["megaservice"], "ui": False}}, tmp_path / "p")
    assert read_pipeline(project).megaservice["ui_port"] is None
    assert set(files_of(project)) == COMMON_FILES - {"tests/test_ui.py", "tests/test_browser.py",
                                                     "requirements-browser.txt"}
    assert "jinja2" not in (project / "megaservice" / "requirements.txt").read_text()


def test_instance_management_adds_the_docker_sdk_to_the_megaservice_image(tmp_path):
    """The control service and its socket proxy run on the megaservice's image (compose.yaml): it carries the SDK."""
    data = with_runtime(CHAIN, "lite")
    project = render({**data, "megaservice": {**data["megaservice"], "control": True}}, tmp_path / "p")
    pins = [line for line in (project / "megaservice" / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert pins[-1] == "docker==7.2.0"
    assert "docker==" not in (render(data, tmp_path / "without") / "megaservice" / "requirements.txt").read_text()


def test_the_web_ui_listens_on_the_spec_port(tmp_path):
    data = with_runtime(CHAIN, "comps")
    project = render({**data, "megaservice": {**data["megaservice"], "ui": True, "ui_port": 7001}}, tmp_path / "p")
    assert read_pipeline(project).megaservice["ui_port"] == 7001


# ---------------------------------------------------------------- answers are data


def test_a_hostile_description_breaks_nothing(tmp_path):
    project = render(with_runtime(HOSTILE, "comps"), tmp_path / "p")
    assert read_pipeline(project).megaservice["description"] == HOSTILE_DESCRIPTION
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    summary = pyproject["project"]["description"]
    assert "\n" not in summary and "\x7f" not in summary
    assert summary.startswith('He said "hi" {{ name }}')
    readme = (project / "README.md").read_text()
    assert "&lt;!-- hidden --&gt;" in readme and "<!--" not in readme
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["description"] == HOSTILE_DESCRIPTION
    for path in ("megaservice/__main__.py", "megaservice/hooks.py", "Dockerfile", "Makefile",
                 ".github/workflows/ci.yml"):
        assert "hidden" not in (project / path).read_text(), path
    # pipeline.py holds it in MEGASERVICE's description, nowhere else (not even its docstring).
    tree = ast.parse((project / "megaservice" / "pipeline.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Megaservice":
            node.keywords = [keyword_ for keyword_ in node.keywords if keyword_.arg != "description"]
    assert "hidden" not in ast.unparse(tree)


def test_conditions_with_quotes_and_unicode_are_literals(tmp_path):
    condition = 'label == "tox\\"ic 😀"'
    data = answers("odd", [service("a", "undefined", 9001, "/a"), service("b", "undefined", 9002, "/b")],
                   [edge("a", ("b", condition))])
    project = render(data, tmp_path / "p")
    assert connections((project / "megaservice" / "pipeline.py").read_text()) == [("a", "b", condition)]
    assert read_pipeline(project).edges == [("a", "b", condition)]


def test_keyword_and_module_names_cannot_shadow_anything(tmp_path):
    names = ["import", "os", "orchestrator", "hooks", "remote_service", "build_orchestrator", "match", "megaservice"]
    services = [service(name, "undefined", 9001 + i, f"/{name}") for i, name in enumerate(names)]
    data = answers("names", services, [edge(names[i], names[i + 1]) for i in range(len(names) - 1)])
    project = render(data, tmp_path / "p")
    pipeline = read_pipeline(project)  # executes it: a shadowed name would call the wrong thing
    assert [node.name for node in pipeline.nodes] == pipeline.added == names
    assert pipeline.edges == spec_edges(data)
    assert pipeline.hooks == "megaservice.hooks"
    assert pipeline.variables == {name: variable(name) for name in names}
    assert {pipeline.variables[name] for name in ("import", "orchestrator", "hooks", "remote_service",
                                                  "build_orchestrator", "match")} == {
        "import_node", "orchestrator_node", "hooks_node", "remote_service_node", "build_orchestrator_node",
        "match_node"}


def test_bad_answers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="runtime"):
        render({**CHAIN, "runtime": "docker"}, tmp_path / "runtime")
    with pytest.raises(ValueError, match="name"):
        render({**CHAIN, "name": "Chat QnA"}, tmp_path / "name")


def test_hooks_are_the_users_after_the_first_render(tmp_path):
    project = render(CHAIN, tmp_path / "p")
    (project / "megaservice" / "hooks.py").write_text("# mine\n")
    (project / "megaservice" / "pipeline.py").write_text("# stale\n")
    render(CHAIN, project, overwrite=True)
    assert (project / "megaservice" / "hooks.py").read_text() == "# mine\n"
    assert (project / "megaservice" / "pipeline.py").read_text() != "# stale\n"


# ---------------------------------------------------------------- README, Mermaid, Makefile, CI


def mermaid(services: list[dict], flow: list[dict]) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(loader=FileSystemLoader(TEMPLATE), undefined=StrictUndefined)
    return environment.get_template("includes/mermaid.jinja").render(services=services, flow=flow).strip()


def test_mermaid_include_depends_only_on_services_and_flow():
    text = mermaid(CONDITIONAL["services"], CONDITIONAL["flow"])
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    for spec in CONDITIONAL["services"]:
        node = f'svc_{spec["name"]}["{spec["name"]}<br/>'
        assert any(line.strip().startswith(node) and spec["type"] in line for line in lines), spec["name"]
    assert "    request --> svc_guard" in lines
    assert '    svc_guard -->|"!blocked"| svc_data_processor' in lines
    assert '    svc_guard -->|"blocked == true"| svc_refusal' in lines
    assert '    svc_data_processor -. "error" .-> svc_error_handler' in lines
    assert "    svc_data_processor --> svc_data_analyzer" in lines


def test_mermaid_labels_are_quoted_safely():
    text = mermaid([service("a", "undefined", 1, "/a"), service("end", "undefined", 2, "/b")],
                   [edge("a", ("end", 'x == "<b>&"'))])
    assert 'svc_a -->|"x == #quot;#lt;b#gt;#amp;#quot;"| svc_end' in text
    assert "svc_end[" in text and "\n    end" not in text


def test_readme_shows_the_flow_services_and_commands(rendered):
    data, project = rendered
    readme = (project / "README.md").read_text()
    assert readme.startswith(f"# {data['name']}\n")
    diagram = re.search(r"```mermaid\n(.*?)\n```", readme, re.DOTALL).group(1)
    assert diagram == mermaid(data["services"], data["flow"])
    for spec in data["services"]:
        row = next(line for line in readme.splitlines() if line.startswith(f"| {spec['name']} |"))
        assert f"| {spec['port']} |" in row and spec["endpoint"] in row
        assert (spec["image"] in row) if spec["image"] else (f"services/{dns(spec['name'])}/" in row)
    for command in ("make install", "make test", "make run", "cp .env.example .env", "make up",
                    "opea-new update --dry-run", "opea-new remove-service", "copier update --defaults --trust",
                    f"http://127.0.0.1:{data['megaservice']['port']}"):
        assert command in readme, command


def test_makefile_targets(rendered):
    _, project = rendered
    make = shutil.which("make") or pytest.skip("make is not installed")
    listed = subprocess.run([make, "help"], cwd=project, capture_output=True, text=True, check=True).stdout
    for target in ("install", "test", "run", "up", "down", "lint", "help"):
        assert f"make {target}" in listed, target
    dry = subprocess.run([make, "-n", "install", "test", "run", "up", "down", "VENV=/x/venv", "COMPOSE=dc"],
                         cwd=project, capture_output=True, text=True, check=True).stdout
    assert "/x/venv/bin/python -m pip install" in dry and "-r requirements-dev.txt" in dry
    assert "/x/venv/bin/python -m pytest -q tests" in dry
    assert "/x/venv/bin/python -m opea_new_runtime.run" in dry
    assert "dc up -d --build --wait" in dry and "dc down" in dry


def test_ci_workflow(rendered):
    _, project = rendered
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    static = "\n".join(step.get("run", "") for step in workflow["jobs"]["static"]["steps"])
    for command in ("hadolint", "docker compose config -q", "--builtin-schema vendor.compose-spec",
                    "ruff check", "make install test"):
        assert command in static, command
    smoke = "\n".join(step.get("run", "") for step in workflow["jobs"]["compose"]["steps"])
    assert "bash tests/test_compose.sh" in smoke


def test_gitignore_keeps_secrets_and_venvs_out(rendered):
    _, project = rendered
    ignored = (project / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and ".venv/" in ignored and "__pycache__/" in ignored


# ---------------------------------------------------------------- whole projects (slow)


def microservice_answers(data: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["type"] if spec["type"] in TYPED_STUBS else "passthrough"
    return {"project_name": data["name"], "service_name": spec["name"], "service_type": spec["type"],
            "stub": kind, "port": spec["port"], "endpoint": spec["endpoint"]}


def render_project(data: dict[str, Any], destination: Path) -> Path:
    """Every part of a project, as opea-new renders it."""
    render(data, destination)
    render({key: data[key] for key in ("name", "runtime", "megaservice", "services")}, destination,
           COMPOSE_TEMPLATE, answers_file=".copier-answers.compose.yml")
    for spec in data["services"]:
        if spec["image"]:
            continue
        render(microservice_answers(data, spec), destination / "services" / dns(spec["name"]), MICROSERVICE_TEMPLATE)
    return destination


def clean_environment(**extra: str) -> dict[str, str]:
    inherited = ("_SERVICE_PORT", "_SERVICE_HOST_IP")
    environment = {key: value for key, value in os.environ.items()
                   if not key.endswith(inherited) and key not in ("VENV", "MAKEFLAGS")}
    return {**environment, **extra}


@pytest.fixture(scope="session")
def venvs(project_venvs) -> Path:
    """One venv per runtime for the whole session (`make install VENV=...` reuses it)."""
    return project_venvs


def make(project: Path, venv: Path, *targets: str,
         timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run(["make", *targets, f"VENV={venv}"], cwd=project, capture_output=True, text=True,
                            timeout=timeout, env=clean_environment())
    return result, time.monotonic() - started


SLOW_PROJECTS = {
    "lite-chain": with_runtime(CHAIN, "lite"),
    "lite-fan": FAN,
    "lite-conditional": CONDITIONAL,
    "lite-pass-through": PASS_THROUGH,
    "lite-guarded-chat": GUARDED_CHAT,
    "comps-chain": with_runtime(CHAIN, "comps"),
    "comps-fan": with_runtime(FAN, "comps"),
}


# What the real runtime makes of pipeline.py, in the project's venv: the Project the runner and tests load.
READ_PROJECT = """
import json, sys
from opea_new_runtime.run import Project
project = Project.load(sys.argv[1])
print(json.dumps({
    "runtime": project.module.build_orchestrator().RUNTIME,
    "megaservice": vars(project.megaservice),
    "nodes": [[n.name, n.type, n.port, n.endpoint, n.image, n.dns_name, n.host_variable, n.port_variable,
               n.generated, n.folder] for n in project.nodes],
    "edges": [list(edge) for edge in project.edges],
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("key", list(SLOW_PROJECTS))
def test_make_install_test(key, tmp_path, venvs):
    data = SLOW_PROJECTS[key]
    project = render_project(data, tmp_path / data["name"])
    venv = venvs / data["runtime"]
    installed, install_seconds = make(project, venv, "install")
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    # The runtime installed is the project's own wheel, at the version pinned.
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('opea-new-runtime'))"],
                             capture_output=True, text=True, env=clean_environment())
    assert version.stdout.strip() == __version__, version.stderr
    read = subprocess.run([str(venv / "bin" / "python"), "-c", READ_PROJECT, str(project)], cwd=tmp_path,
                          capture_output=True, text=True, env=clean_environment(), timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    loaded = json.loads(read.stdout)
    mega = data["megaservice"]
    assert loaded["runtime"] == data["runtime"]
    assert loaded["megaservice"] == {"name": data["name"], "port": mega["port"], "endpoint": mega["endpoint"],
                                     "protocol": mega["protocol"], "description": data["description"],
                                     "ui_port": mega.get("ui_port", 5173) if mega.get("ui", True) else None}
    assert loaded["nodes"] == [[*node, dns(node[0]), f"{prefix(node[0])}_SERVICE_HOST_IP",
                                f"{prefix(node[0])}_SERVICE_PORT", node[4] is None, f"services/{dns(node[0])}"]
                               for node in spec_nodes(data)]
    assert loaded["edges"] == [list(edge_) for edge_ in spec_edges(data)]
    tested, test_seconds = make(project, venv, "test")
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output[-6000:]
    assert re.search(r"\d+ passed", output)
    if data is GUARDED_CHAT:  # tts runs a published image nobody started
        assert "needs every node" in output and "skipped" in output
    print(f"\n[{key}] make install {install_seconds:.1f}s, make test {test_seconds:.1f}s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (the runner then stops its children), SIGKILL only if that does not work."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port_environment(data: dict[str, Any]) -> tuple[int, dict[str, str]]:
    """Free ports for every service, the megaservice and the web UI, as the runner reads them:
    (megaservice port, env)."""
    *ports, mega_port, ui_port = free_ports(len(data["services"]) + 2)
    addresses = {f"{prefix(spec['name'])}_SERVICE_PORT": str(port)
                 for spec, port in zip(data["services"], ports, strict=True)}
    return mega_port, clean_environment(MEGA_SERVICE_PORT=str(mega_port), UI_PORT=str(ui_port), **addresses)


def processes_of(data: dict[str, Any]) -> int:
    """What the runner starts: every service, the megaservice and (unless `ui: false`) the web UI."""
    return len(data["services"]) + 1 + (data["megaservice"].get("ui", True) is not False)


def start_runner(project: Path, venv: Path, environment: dict[str, str]) -> subprocess.Popen:
    """`make run`'s command: the runtime library's local runner, from the project's root."""
    return subprocess.Popen([str(venv / "bin" / "python"), "-m", "opea_new_runtime.run"], cwd=project,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for_output(process: subprocess.Popen, needle: str, timeout: float) -> str:
    """Read the process's stdout (unbuffered, straight from the pipe) until `needle` appears."""
    import selectors

    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while needle.encode() not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and process.poll() is None, f"{needle!r} never came:\n{seen.decode()}"
            if selector.select(remaining):
                seen += os.read(process.stdout.fileno(), 65536)
    return seen.decode()


@pytest.mark.slow
@pytest.mark.parametrize("key", ["lite-chain", "comps-chain", "lite-fan"])
def test_runner_serves_and_stops_on_sigterm(key, tmp_path, venvs):
    import httpx

    data = SLOW_PROJECTS[key]
    project = render_project(data, tmp_path / data["name"])
    venv = venvs / data["runtime"]
    installed, _ = make(project, venv, "install")
    assert installed.returncode == 0, installed.stderr[-3000:]
    mega_port, environment = free_port_environment(data)
    process = start_runner(project, venv, environment)
    try:
        banner = wait_for_output(process, "Ctrl-C stops everything", timeout=120)
        url = f"http://127.0.0.1:{mega_port}{data['megaservice']['endpoint']}"
        assert url in banner and "curl -s" in banner
        children = children_of(process.pid)
        assert len(children) == processes_of(data)
        with httpx.Client(timeout=30, trust_env=False) as client:
            if data["megaservice"]["protocol"] == "chat":
                answer = client.post(url, json={"messages": "What is OPEA?"})
                assert answer.status_code == 200, answer.text
                assert "OPEA" in answer.json()["choices"][0]["message"]["content"]
                streamed = client.post(url, json={"messages": "What is OPEA?", "stream": True})
                assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
            else:
                answer = client.post(url, json={"text": "hello"})
                assert answer.status_code == 200, answer.text
                assert set(answer.json()) == {"merge", "side"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.stdout.read().decode()
        assert "SIGTERM: stopping everything" in output
        assert not [pid for pid in children if alive(pid)]
    finally:
        stop(process)


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["lite", "comps"])
def test_conditional_edges_route_requests(runtime, tmp_path, venvs):
    """guard → data_processor (!blocked) | refusal (blocked == true);
    data_processor → data_analyzer | error_handler (error): every route taken for real, on both runtimes."""
    import httpx

    data = with_runtime(CONDITIONAL, runtime)
    project = render_project(data, tmp_path / data["name"])
    venv = venvs / runtime
    installed, _ = make(project, venv, "install")
    assert installed.returncode == 0, installed.stderr[-3000:]
    *ports, mega_port, second_port, dead_port = free_ports(len(data["services"]) + 3)
    addresses = {f"{prefix(spec['name'])}_SERVICE_PORT": str(port)
                 for spec, port in zip(data["services"], ports, strict=True)}
    stack = start_runner(project, venv, clean_environment(MEGA_SERVICE_PORT=str(mega_port), **addresses))
    # A second megaservice whose data_processor is dead: its failure takes the `error` edge.
    broken = None
    try:
        wait_for_output(stack, "Ctrl-C stops everything", timeout=120)
        url = f"http://127.0.0.1:{mega_port}{data['megaservice']['endpoint']}"
        with httpx.Client(timeout=30, trust_env=False) as client:
            allowed = client.post(url, json={"text": "hello"})
            assert allowed.status_code == 200, allowed.text
            assert allowed.json()["trace"] == ["data_processor", "data_analyzer"]
            assert allowed.json()["blocked"] is False and "downstream_black_list" not in allowed.json()

            refused = client.post(url, json={"text": "how to build a bomb"})
            assert refused.status_code == 200, refused.text
            assert refused.json()["blocked"] is True and refused.json()["trace"] == ["refusal"]

            broken = subprocess.Popen(
                [str(venv / "bin" / "python"), "-m", "megaservice"], cwd=project,
                env=clean_environment(MEGA_SERVICE_PORT=str(second_port), **{
                    **addresses, "DATA_PROCESSOR_SERVICE_PORT": str(dead_port)}),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_healthy(f"http://127.0.0.1:{second_port}/v1/health_check", broken)
            handled = client.post(f"http://127.0.0.1:{second_port}{data['megaservice']['endpoint']}",
                                  json={"text": "hello"})
            assert handled.status_code == 200, handled.text
            assert handled.json()["trace"] == ["error_handler"]
            assert handled.json()["error"]["node"] == "data_processor"
    finally:
        for process in (broken, stack):
            if process is not None:
                stop(process)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="children follow their parent through PR_SET_PDEATHSIG")
def test_runner_children_do_not_outlive_a_killed_runner(tmp_path, venvs):
    data = PASS_THROUGH
    project = render_project(data, tmp_path / data["name"])
    venv = venvs / data["runtime"]
    assert make(project, venv, "install")[0].returncode == 0
    mega_port, environment = free_port_environment(data)
    process = start_runner(project, venv, environment)
    try:
        wait_for_output(process, "Ctrl-C stops everything", timeout=120)
        children = children_of(process.pid)
        assert len(children) == processes_of(data)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 20
        while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if alive(pid)]
    finally:
        stop(process)


class MisbehavingLLM:
    """An HTTP server on 127.0.0.1 that answers the way `mode` says: the failures a node can have."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.mode = "ok"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self.send(200, b'{"status": "healthy"}')

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = owner.mode
                if mode == "ok":
                    self.send(200, b'{"text": "fine", "prompt": "q"}')
                elif mode == "500":
                    self.send(500, b'{"detail": "model crashed"}')
                elif mode == "text-500":
                    self.send(500, b"Internal Server Error", "text/plain")
                elif mode == "422":
                    self.send(422, b'{"detail": [{"msg": "query is required"}]}')
                elif mode == "slow":
                    time.sleep(3)
                    self.send(200, b'{"text": "late", "prompt": "q"}')
                elif mode == "cut":  # a chunked stream that dies after two tokens
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for token in ("one ", "two "):
                        chunk = json.dumps({"choices": [{"delta": {"content": token}}]})
                        event = f"data: {chunk}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                        self.wfile.flush()
                        time.sleep(0.05)
                    self.close_connection = True  # no last chunk: the stream is cut

            def send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        import threading

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["lite", "comps"])
def test_node_failures_are_named_502_and_timeouts_504(runtime, tmp_path, venvs):
    import httpx

    data = answers("failing", [service("llm", "llm", 9000, "/v1/chat/completions")], [], runtime=runtime,
                   protocol="chat")
    project = render(data, tmp_path / "failing")
    venv = venvs / runtime
    assert make(project, venv, "install")[0].returncode == 0
    llm = MisbehavingLLM()
    (mega_port,) = free_ports(1)
    environment = clean_environment(MEGA_SERVICE_PORT=str(mega_port), LLM_SERVICE_PORT=str(llm.port),
                                    MEGA_SERVICE_TIMEOUT="1")
    megaservice = subprocess.Popen([str(venv / "bin" / "python"), "-m", "megaservice"], cwd=project,
                                   env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{mega_port}/v1/failing"
    try:
        wait_healthy(f"http://127.0.0.1:{mega_port}/v1/health_check", megaservice)
        with httpx.Client(timeout=30, trust_env=False) as client:
            def ask(mode: str, stream: bool = False) -> httpx.Response:
                llm.mode = mode
                return client.post(url, json={"messages": "q", "stream": stream})

            assert ask("ok").json()["choices"][0]["message"]["content"] == "fine"
            for mode, status in (("500", 500), ("text-500", 500), ("422", 422)):
                failed = ask(mode)
                assert failed.status_code == 502, (mode, failed.text)
                assert failed.json()["error"]["node"] == "llm"
                assert failed.json()["error"]["status"] == status, mode
            assert "model crashed" in ask("500").json()["error"]["detail"]
            timed_out = ask("slow")
            assert timed_out.status_code == 504, timed_out.text
            assert timed_out.json()["error"]["node"] == "llm"

            broken_stream = ask("500", stream=True)
            assert broken_stream.status_code == 502, broken_stream.text  # never a 200 with an empty stream
            assert broken_stream.json()["error"]["node"] == "llm"
            assert broken_stream.json()["error"]["status"] == 500  # comps' own streaming path would hide it
            assert ask("slow", stream=True).status_code == 504  # ... and ignore the timeout
            cut = ask("cut", stream=True)
            assert cut.status_code == 200
            events = [line[6:] for line in cut.text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            assert json.loads(events[-2])["error"]["node"] == "llm"
            assert "".join(json.loads(event)["choices"][0]["delta"].get("content", "")
                           for event in events[:-2]).split() == ["one", "two"]
            assert client.get(f"http://127.0.0.1:{mega_port}/v1/health").status_code == 200
    finally:
        stop(megaservice)
        llm.close()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["lite", "comps"])
def test_a_bad_setting_stops_the_start_with_one_line(runtime, tmp_path, venvs):
    """The runtime's pydantic settings: `<name>: MEGA_SERVICE_X: <message>` on stderr, a non-zero exit, no
    traceback; the same for a node's port variable (read when the orchestrator is built)."""
    data = answers("strict", [service("llm", "llm", 9000, "/v1/chat/completions")], [], runtime=runtime,
                   protocol="chat")
    project = render(data, tmp_path / "strict")
    venv = venvs / runtime
    assert make(project, venv, "install")[0].returncode == 0
    cases = {
        "MEGA_SERVICE_PORT": ({"MEGA_SERVICE_PORT": "eighty"}, "strict: MEGA_SERVICE_PORT: "),
        "MEGA_SERVICE_TIMEOUT": ({"MEGA_SERVICE_TIMEOUT": "soon"}, "strict: MEGA_SERVICE_TIMEOUT: "),
        "LLM_SERVICE_PORT": ({"LLM_SERVICE_PORT": "70000"}, "strict: LLM_SERVICE_PORT: '70000' is not a port"),
    }
    for name, (variables, expected) in cases.items():
        started = subprocess.run([str(venv / "bin" / "python"), "-m", "megaservice"], cwd=project,
                                 env=clean_environment(**variables), capture_output=True, text=True, timeout=60)
        assert started.returncode != 0, (name, started.stdout, started.stderr)
        lines = started.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), (name, started.stderr)
        assert "Traceback" not in started.stderr, name


# ---------------------------------------------------------------- model-server nodes

CHATQNA_XEON = answers("chatqna-xeon", [
    {**service("tei-embedding", "embedding", 6006, "/embed",
               image="ghcr.io/huggingface/text-embeddings-inference:cpu-1.7"),
     "server": "tei", "model": "BAAI/bge-base-en-v1.5"},
    {**service("retriever", "retriever", 7000, "/v1/retrieval"), "server": None, "model": None},
    {**service("tei-reranking", "rerank", 8808, "/rerank",
               image="ghcr.io/huggingface/text-embeddings-inference:cpu-1.7"),
     "server": "tei", "model": "BAAI/bge-reranker-base"},
    {**service("vllm", "llm", 9009, "/v1/chat/completions",
               image="public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1"),
     "server": "vllm", "model": "Intel/neural-chat-7b-v3-3"},
], [edge("tei-embedding", "retriever"), edge("retriever", "tei-reranking"), edge("tei-reranking", "vllm")],
    protocol="chat")


@pytest.mark.parametrize("runtime", ["comps", "lite"])
def test_model_server_nodes_are_written_with_their_server_and_model(runtime, tmp_path):
    project = render(with_runtime(CHATQNA_XEON, runtime), tmp_path / "p")
    recorded = read_pipeline(project)
    assert [(node.name, node.server, node.model, node.image) for node in recorded.nodes] == [
        (s["name"], s["server"], s["model"], s["image"]) for s in CHATQNA_XEON["services"]]
    assert recorded.edges == spec_edges(CHATQNA_XEON)
    text = (project / "megaservice" / "pipeline.py").read_text()
    assert 'server="vllm"' in text and 'model="Intel/neural-chat-7b-v3-3"' in text
    assert "server=" not in next(line for line in text.splitlines() if "retriever = remote_service" in line)
