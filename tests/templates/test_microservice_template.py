"""Render templates/microservice for every stub family and check what comes out.

Fast tests look at the rendered files: exactly the files a service owns, answers
recorded, Python that compiles and passes ruff, a Dockerfile that passes hadolint
and keeps its contract, pins that agree with the megaservice's, and the user's
backend.py surviving a re-render. Slow tests install the pinned requirements in
a venv of their own, run every family's generated tests, and serve each family
over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import copier_render, files_of, free_port, tool

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "templates" / "microservice"
MEGASERVICE_TEMPLATE = REPO / "templates" / "megaservice"

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
    ".copier-answers.yml", ".dockerignore", "Dockerfile", "README.md", "pyproject.toml", "requirements.txt",
    "tests/conftest.py", "tests/test_health.py",
    *(f"app/{name}" for name in ("__init__.py", "__main__.py", "backend.py", "errors.py", "main.py", "routes.py",
                                 "schemas.py", "settings.py", "stub.py")),
}
EXTRA_FILES = {"embedding": {"app/remote.py"}, "rerank": {"app/remote.py"},
               "llm": {"app/remote.py", "app/prompts.py"}}


def answers(stub: str, *, name: str | None = None, port: int = 7100) -> dict[str, Any]:
    service_type, endpoint, _, _ = FAMILIES[stub]
    return {"project_name": "my_app", "service_name": name or f"my_{stub}", "service_type": service_type,
            "stub": stub, "port": port, "endpoint": endpoint}


def render(data: dict[str, Any], destination: Path, template: Path = TEMPLATE, **kwargs: Any) -> Path:
    return copier_render(template, data, destination, **kwargs)


def pins(text: str) -> dict[str, str]:
    return dict(line.split("==") for line in text.splitlines() if "==" in line and not line.startswith("#"))


@pytest.fixture(scope="module", params=list(FAMILIES))
def rendered(request, tmp_path_factory) -> tuple[dict[str, Any], Path]:
    data = answers(request.param)
    return data, render(data, tmp_path_factory.mktemp(request.param))


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


def test_settings_describe_the_service(rendered):
    data, folder = rendered
    text = (folder / "app" / "settings.py").read_text()
    namespace: dict[str, Any] = {}
    exec(compile(text, "settings.py", "exec"), namespace)  # stdlib only: safe to run here
    values = (namespace["NAME"], namespace["PROJECT"], namespace["SERVICE_TYPE"], namespace["ENDPOINT"],
              namespace["DEFAULT_PORT"])
    assert values == (data["service_name"], data["project_name"], data["service_type"].lower(), data["endpoint"],
                      data["port"])


def test_hadolint_passes(rendered):
    _, folder = rendered
    result = subprocess.run([tool("hadolint"), "--failure-threshold", "warning", "Dockerfile"], cwd=folder,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract(rendered):
    data, folder = rendered
    text = (folder / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and "FROM ${BASE_IMAGE}" in text
    assert text.index("COPY requirements.txt") < text.index("RUN pip install --no-cache-dir")
    assert text.index("RUN pip install") < text.index("COPY app/ app/")
    assert re.search(r"^USER user$", text, re.MULTILINE)
    assert "HOST=0.0.0.0" in text and f"PORT={data['port']}" in text and f"EXPOSE {data['port']}" in text
    assert re.search(r'^HEALTHCHECK .*\n\s+CMD \["python", "-c", .*/v1/health_check', text, re.MULTILINE)
    assert text.rstrip().endswith('CMD ["python", "-m", "app"]')
    ignored = (folder / ".dockerignore").read_text().splitlines()
    assert ignored[1:4] == ["*", "!app/", "!requirements.txt"]  # tests and answers stay out of the image


def test_pins_agree_with_the_megaservice(rendered, tmp_path):
    data, folder = rendered
    service = pins((folder / "requirements.txt").read_text())
    assert {"fastapi", "pydantic", "uvicorn"} <= set(service)
    assert ("httpx" in service) == (data["stub"] in ("embedding", "rerank", "llm"))  # the real-backend client
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
    for command in ("python -m app", "python -m pytest", "docker build"):
        assert command in readme, command


# ---------------------------------------------------------------- answers and ownership


def test_backend_py_is_the_users_after_the_first_render(tmp_path):
    folder = render(answers("llm"), tmp_path / "svc")
    (folder / "app" / "backend.py").write_text("# mine\n")
    (folder / "app" / "routes.py").write_text("# stale\n")
    render(answers("llm"), folder, overwrite=True)
    assert (folder / "app" / "backend.py").read_text() == "# mine\n"
    assert (folder / "app" / "routes.py").read_text() != "# stale\n"


def test_names_with_underscores_and_dashes(tmp_path):
    folder = render(answers("passthrough", name="data-proc_v2"), tmp_path / "svc")
    assert 'NAME = "data-proc_v2"' in (folder / "app" / "settings.py").read_text()
    assert "docker build -t opea/my-app-data-proc-v2 ." in (folder / "README.md").read_text()


@pytest.mark.parametrize(("key", "value"), [("stub", "magic"), ("service_name", "Bad Name"), ("port", 0),
                                            ("port", 70000), ("endpoint", "no-slash")])
def test_bad_answers_are_refused(tmp_path, key, value):
    with pytest.raises(ValueError):
        render({**answers("llm"), key: value}, tmp_path / "svc")
    assert not (tmp_path / "svc" / "app").exists()


# ---------------------------------------------------------------- installed and served (slow)


@pytest.fixture(scope="session")
def service_venv(tmp_path_factory) -> Path:
    """One venv with the services' pinned requirements (every family's are a subset of the llm's)."""
    requirements = render(answers("llm"), tmp_path_factory.mktemp("requirements")) / "requirements.txt"
    venv = tmp_path_factory.mktemp("service-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    dev = MEGASERVICE_TEMPLATE / "requirements-dev.txt"
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(requirements), "-r", str(dev)], check=True, timeout=900)
    return venv / "bin" / "python"


@pytest.mark.slow
@pytest.mark.parametrize("stub", list(FAMILIES))
def test_the_generated_tests_pass(stub, tmp_path, service_venv):
    folder = render(answers(stub), tmp_path / "svc")
    result = subprocess.run([str(service_venv), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=folder,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout) and "skipped" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("stub", list(FAMILIES))
def test_python_m_app_serves_on_127_0_0_1_and_stops_on_sigterm(stub, tmp_path, service_venv):
    import httpx

    port = free_port()
    folder = render(answers(stub, port=port), tmp_path / "svc")
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
