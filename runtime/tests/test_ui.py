"""opea_new_runtime.ui: the web UI's pages, its JSON API and its same-origin proxy, against real servers.

The upstreams are real HTTP servers on 127.0.0.1: the megaservice app of the
runtime under test (runtime_under_test.py) in front of an llm node that streams
slowly (test_flow.Services), and a fake node (a small Starlette app) that echoes
what it receives, streams, stays silent and plays a dataprep service. The UI
itself runs under uvicorn too, so what a browser sees, chunk by chunk, is what is
tested. `python -m opea_new_runtime.ui` runs in a subprocess in a project written
to a temporary folder. The pages are the package's templates once they exist
(else a minimal stand-in written to the test's temporary folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from aiohttp import web
from runtime_under_test import RUNTIME, ServiceType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from test_flow import Services, build

from opea_new_runtime.megaservice import Megaservice
from opea_new_runtime.megaservice import create_app as megaservice_app
from opea_new_runtime.nodes import Node
from opea_new_runtime.run import Project
from opea_new_runtime.ui import app as ui_app
from opea_new_runtime.ui.proxy import MAX_BODY_BYTES, MAX_UPLOAD_BYTES

KEY = "ui-key-of-the-tests-0123456789"
DELAY = 0.3  # seconds between two chunks of a slow stream
WORDS = ["Hello", " streaming", " world", "!"]
QUESTION = "What is OPEA?"
CHAT = Megaservice(name="ui-chat-demo", port=8888, endpoint="/v1/chatqna", protocol="chat",
                   description="Answers questions about OPEA", ui_port=5173)
RAW = Megaservice(name="ui-raw-demo", port=8899, endpoint="/v1/transform", protocol="raw", ui_port=5174)


# ---------------------------------------------------------------- servers on 127.0.0.1


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(app) -> Iterator[int]:
    """`app` under uvicorn in a thread on a free port of 127.0.0.1; stopped (and joined) afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="debug", timeout_graceful_shutdown=1,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


async def slow_model(node: str, body: dict, request: web.Request) -> web.StreamResponse:
    """An OpenAI-compatible llm node: a stream of WORDS, DELAY apart; or one answer echoing the prompt."""
    question = body["messages"][-1]["content"] if isinstance(body.get("messages"), list) else str(body)
    if not body.get("stream"):
        return web.json_response({"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": question}}]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for word in WORDS:
        chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word}}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await asyncio.sleep(DELAY)
    await response.write(b"data: [DONE]\n\n")
    return response


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                         "body": body.decode("utf-8", "replace"), "bytes": len(body),
                         "headers": dict(request.headers)},
                        status_code=201, headers={"x-node": "fake", "connection": "close"})


async def stream(request: Request) -> Response:
    async def chunks():
        for word in WORDS:
            yield f"data: {word}\n\n"
            await asyncio.sleep(DELAY)

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def silent(request: Request) -> Response:
    await asyncio.sleep(3)
    return JSONResponse({"late": True})


async def healthy(request: Request) -> Response:
    return JSONResponse({"status": "healthy"})


FAKE_NODE = Starlette(routes=[
    Route("/echo", echo, methods=["GET", "POST"]),
    Route("/v1/chat/completions", echo, methods=["POST"]),
    Route("/v1/dataprep/ingest", echo, methods=["POST"]),
    Route("/v1/dataprep/get", echo, methods=["POST"]),
    Route("/v1/dataprep/delete", echo, methods=["POST"]),
    Route("/stream", stream),
    Route("/slow", silent),
    Route("/v1/health_check", healthy),
])


@pytest.fixture(scope="module")
def fake_node() -> Iterator[int]:
    with serving(FAKE_NODE) as port:
        yield port


@pytest.fixture(scope="module")
def megaservice() -> Iterator[int]:
    """The real megaservice app of the runtime under test; its llm node streams slowly."""
    with Services(llm=slow_model).in_thread() as services, \
            serving(megaservice_app(CHAT, lambda: build(services.port, [], nodes=["llm"],
                                                        types={"llm": ServiceType.LLM}))) as port:
        yield port


# ---------------------------------------------------------------- projects and the UI


def chat_project(root: Path, *, dataprep: bool = True) -> Project:
    nodes = (Node("retriever", "retriever", 7000, "/v1/retrieval"),
             Node("llm", "llm", 9000, "/v1/chat/completions", image="opea/llm-textgen:1.5"))
    beside = (Node("dataprep", "dataprep", 6007, "/v1/dataprep/ingest"),) if dataprep else ()
    return Project(root, CHAT, nodes, (("retriever", "llm", "success"),), None, beside)


def raw_project(root: Path) -> Project:
    nodes = (Node("guard", "guardrail", 7100, "/v1/guard"), Node("tei", "embedding", 8090, "/embed",
                                                                  image="ghcr.io/huggingface/tei", server="tei",
                                                                  model="BAAI/bge-small-en-v1.5"),
             Node("fallback", "llm", 7200, "/v1/x"))
    edges = (("guard", "tei", "success"), ("guard", "fallback", "failure"))
    return Project(root, RAW, nodes, edges, None)


MINIMAL_PAGES = {
    "base.html": '<!doctype html><html><head><title>{{ title }} · {{ project.name }}</title>'
                 '<link rel="stylesheet" href="{{ static }}/style.css?v={{ project.runtime_version }}"></head>'
                 '<body><h1>{{ project.name }}</h1>{% block content %}{% endblock %}'
                 '<script id="pipeline" type="application/json">{{ project | tojson }}</script>'
                 '<script src="{{ static }}/ui.js"></script>{% block scripts %}{% endblock %}</body></html>',
    "error.html": '{% extends "base.html" %}{% block content %}<p>{{ message }}</p>{% endblock %}',
    **{f"{name}.html": '{% extends "base.html" %}{% block content %}' + name + ' {{ service.name if service }}'
                       '{% endblock %}' for name in ("home", "chat", "raw", "service", "documents", "statistics")},
}
REAL_TEMPLATES = Path(ui_app.HERE / "templates")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The package's templates and static files once written, else minimal ones of the tests' own."""
    if (REAL_TEMPLATES / "base.html").is_file():
        return {}
    root = tmp_path_factory.mktemp("ui-pages")
    (root / "templates").mkdir()
    (root / "static").mkdir()
    for name, text in MINIMAL_PAGES.items():
        (root / "templates" / name).write_text(text, encoding="utf-8")
    (root / "static" / "style.css").write_text("body { margin: 0 }\n")
    (root / "static" / "ui.js").write_text("window.opea = {};\n")
    return {"templates": root / "templates", "static": root / "static"}


def environment(fake_node: int, mega_port: int | None = None, **more: str) -> dict[str, str]:
    """Every node at the fake node, the megaservice where it runs (or nowhere), no key unless given."""
    env = {f"{name.upper()}_SERVICE_{part}": value for name in ("retriever", "llm", "dataprep", "guard", "tei",
                                                                "fallback")
           for part, value in (("HOST_IP", "127.0.0.1"), ("PORT", str(fake_node)))}
    env.update(MEGA_SERVICE_HOST_IP="127.0.0.1", MEGA_SERVICE_PORT=str(mega_port or free_port()))
    env.update(more)
    return env


@contextlib.contextmanager
def ui_server(project: Project, environ: dict[str, str], folders: dict[str, Path]) -> Iterator[httpx.Client]:
    with serving(ui_app.create_app(project, environ, **folders)) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture
def ui(tmp_path, fake_node, megaservice, folders) -> Iterator[httpx.Client]:
    """The UI of a chat project with dataprep; every node is the fake node; the megaservice is real."""
    with ui_server(chat_project(tmp_path), environment(fake_node, megaservice), folders) as client:
        yield client


def title(html: str) -> str:
    found = re.search(r"<title>(.*?)</title>", html, re.S)
    assert found, html[:300]
    return found.group(1)


def pages_client(project: Project, environ: dict[str, str], folders: dict[str, Path]) -> TestClient:
    return TestClient(ui_app.create_app(project, environ, **folders))


# ---------------------------------------------------------------- pages


@pytest.mark.parametrize("kind", ["chat", "raw", "chat without dataprep"])
def test_every_page_answers_with_the_project_name_in_its_title(tmp_path, folders, kind):
    project = raw_project(tmp_path) if kind == "raw" else chat_project(tmp_path, dataprep="without" not in kind)
    paths = ["/", "/raw" if kind == "raw" else "/chat", "/statistics",
             *(f"/services/{node.name}" for node in project.services)]
    paths += ["/documents"] if project.stores_documents else []
    with pages_client(project, {}, folders) as client:
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, f"{path}: {answer.text[:300]}"
            assert answer.headers["content-type"].startswith("text/html"), path
            assert project.megaservice.name in title(answer.text), path
        pipeline = re.search(r'<script id="pipeline" type="application/json">(.*?)</script>',
                             client.get("/").text, re.S)
        assert pipeline and json.loads(pipeline.group(1))["name"] == project.megaservice.name
        css = re.search(r'href="(/ui/static/[^"]+\.css[^"]*)"', client.get("/").text)
        assert css and client.get(css.group(1)).status_code == 200


@pytest.mark.parametrize(("kind", "path"), [("chat", "/raw"), ("raw", "/chat"), ("chat", "/no-such-page"),
                                            ("chat", "/services/no-such-service"), ("raw", "/documents"),
                                            ("chat", "/services/llm/extra")])
def test_a_page_that_does_not_apply_is_the_404_page(tmp_path, folders, kind, path):
    project = raw_project(tmp_path) if kind == "raw" else chat_project(tmp_path)
    with pages_client(project, {}, folders) as client:
        answer = client.get(path)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert project.megaservice.name in title(answer.text)


def test_what_a_page_shows_is_escaped(tmp_path, folders):
    hostile = Megaservice(name="<script>alert(1)</script>", port=8888, endpoint="/v1/x", protocol="chat")
    project = Project(tmp_path, hostile, (Node("llm", "llm", 9000, "/v1/chat/completions"),), (), None)
    with pages_client(project, {}, folders) as client:
        html = client.get("/").text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_an_unknown_api_path_is_a_json_404(tmp_path, folders):
    with pages_client(chat_project(tmp_path), {}, folders) as client:
        for path in ("/ui/api/nothing", "/v1/nothing", "/ui/static/nothing.css"):
            answer = client.get(path)
            assert answer.status_code == 404 and answer.json()["error"]["status"] == 404, path


# ---------------------------------------------------------------- /ui/api/pipeline


def test_the_pipeline_of_a_chat_project_with_dataprep(tmp_path, folders):
    with pages_client(chat_project(tmp_path), {}, folders) as client:
        described = client.get("/ui/api/pipeline").json()
    assert set(described) == {"name", "description", "endpoint", "protocol", "ui_port", "runtime_version", "nodes",
                              "edges", "terminals", "dataprep", "access"}
    assert (described["name"], described["endpoint"], described["protocol"], described["ui_port"]) == (
        "ui-chat-demo", "/v1/chatqna", "chat", 5173)
    assert described["description"] == "Answers questions about OPEA"
    assert [(node["name"], node["beside"]) for node in described["nodes"]] == [
        ("retriever", False), ("llm", False), ("dataprep", True)]
    assert described["nodes"][1] == {"name": "llm", "type": "llm", "port": 9000, "endpoint": "/v1/chat/completions",
                                     "image": "opea/llm-textgen:1.5", "server": None, "model": None, "beside": False,
                                     "health_path": "/v1/health_check"}
    assert described["edges"] == [{"source": "retriever", "target": "llm", "condition": "success"}]
    assert described["terminals"] == ["llm"] and described["dataprep"] == "dataprep"
    assert described["access"] == {"required": False}


def test_the_pipeline_of_a_raw_project_without_dataprep(tmp_path, folders):
    with pages_client(raw_project(tmp_path), {"API_KEYS": KEY}, folders) as client:
        described = client.get("/ui/api/pipeline").json()  # open, though a key is set
    assert described["protocol"] == "raw" and described["dataprep"] is None
    assert described["terminals"] == ["tei", "fallback"]
    assert {"source": "guard", "target": "fallback", "condition": "failure"} in described["edges"]
    tei = described["nodes"][1]
    assert (tei["server"], tei["model"], tei["health_path"]) == ("tei", "BAAI/bge-small-en-v1.5", "/health")
    assert described["access"] == {"required": True}


# ---------------------------------------------------------------- the proxy


def arrivals(client: httpx.Client, method: str, path: str, **options) -> tuple[httpx.Response, list[tuple]]:
    """The answer and its chunks, each with the time it arrived."""
    with client.stream(method, path, **options) as answer:
        chunks = [(time.monotonic(), chunk) for chunk in answer.iter_raw()]
    return answer, chunks


def test_the_pipeline_streams_through_the_ui_as_it_comes(ui):
    answer, chunks = arrivals(ui, "POST", CHAT.endpoint,
                              json={"messages": [{"role": "user", "content": QUESTION}], "stream": True})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    text = b"".join(chunk for _, chunk in chunks).decode()
    contents = [json.loads(line[6:])["choices"][0]["delta"].get("content", "")
                for line in text.splitlines() if line.startswith("data: {")]
    assert "".join(contents) == "".join(WORDS) and text.rstrip().endswith("data: [DONE]")
    # The words came DELAY apart: through the UI too, the first arrived long before the last.
    first_word = next(at for at, chunk in chunks if WORDS[0].encode() in chunk)
    last_word = next(at for at, chunk in chunks if WORDS[-1].encode() in chunk)
    assert last_word - first_word >= DELAY * (len(WORDS) - 2), [round(at - chunks[0][0], 2) for at, _ in chunks]


def test_a_nodes_stream_passes_chunk_by_chunk(ui):
    answer, chunks = arrivals(ui, "GET", "/ui/api/services/llm/stream")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert b"".join(chunk for _, chunk in chunks).decode() == "".join(f"data: {word}\n\n" for word in WORDS)
    assert len(chunks) >= len(WORDS) - 1
    assert chunks[-1][0] - chunks[0][0] >= DELAY * (len(WORDS) - 2)


def test_the_proxy_forwards_the_method_body_query_and_headers_it_should(ui):
    answer = ui.post("/ui/api/services/llm/echo?page=2&q=%C3%A9", content="é 日本 🚀".encode(),
                     headers={"Content-Type": "text/plain; charset=utf-8", "Accept": "application/json",
                              "Authorization": "Bearer whatever-the-node-checks", "Cookie": "session=secret",
                              "X-Forwarded-For": "10.0.0.1"})
    assert answer.status_code == 201 and answer.headers["x-node"] == "fake"  # the node's status and headers
    assert answer.headers["content-type"] == "application/json"
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == ("POST", "/echo", "page=2&q=%C3%A9",
                                                                            "é 日本 🚀")
    headers = seen["headers"]
    assert headers["content-type"] == "text/plain; charset=utf-8" and headers["accept"] == "application/json"
    assert headers["authorization"] == "Bearer whatever-the-node-checks"
    assert "cookie" not in headers and "x-forwarded-for" not in headers


def test_an_empty_body_and_a_get_pass_through(ui):
    empty = ui.post("/ui/api/services/dataprep/echo", content=b"").json()
    assert (empty["method"], empty["bytes"]) == ("POST", 0)
    assert ui.get("/ui/api/services/llm/v1/health_check").json() == {"status": "healthy"}
    assert ui.post("/v1/dataprep/get", json={}).json()["path"] == "/v1/dataprep/get"


@pytest.mark.parametrize("question", ["Qu'est-ce qu'OPEA ? 日本語 🚀", "x" * 200_000])
def test_unicode_and_long_questions_pass_through_the_megaservice(ui, question):
    answer = ui.post(CHAT.endpoint, json={"messages": [{"role": "user", "content": question}]})
    assert answer.status_code == 200, answer.text[:300]
    assert question in answer.json()["choices"][0]["message"]["content"]  # the prompt, as the node got it


def test_the_megaservices_own_answers_pass_through(ui):
    bad = ui.post(CHAT.endpoint, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == 400  # the megaservice's 400, not the UI's
    assert ui.post(CHAT.endpoint, content=b"").status_code == 400
    assert ui.get("/v1/models").json()["data"][0]["id"] == CHAT.name
    assert "nodes" in ui.get("/v1/statistics").json()
    assert ui.get("/v1/services").json()["services"][0]["name"] == "llm"
    openai = ui.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]})
    assert openai.status_code == 200 and openai.json()["object"] == "chat.completion"


def test_a_node_that_is_down_is_a_502_naming_it(tmp_path, fake_node, folders):
    environ = environment(fake_node, LLM_SERVICE_PORT=str(free_port()))
    with ui_server(chat_project(tmp_path), environ, folders) as ui:
        answer = ui.get("/ui/api/services/llm/v1/health_check")
        error = answer.json()["error"]
        assert answer.status_code == 502 and (error["node"], error["status"]) == ("llm", 502)
        assert error["detail"].startswith(f"the UI cannot reach llm at 127.0.0.1:{environ['LLM_SERVICE_PORT']} (")
        down = ui.post(CHAT.endpoint, json={"messages": QUESTION})  # no megaservice on its port either
        assert down.status_code == 502 and down.json()["error"]["node"] == "megaservice"
        assert f"megaservice at 127.0.0.1:{environ['MEGA_SERVICE_PORT']}" in down.json()["error"]["detail"]


def test_a_node_that_does_not_answer_in_time_is_a_504_naming_it(tmp_path, fake_node, folders):
    with ui_server(chat_project(tmp_path), environment(fake_node, UI_TIMEOUT="0.5"), folders) as ui:
        started = time.monotonic()
        answer = ui.get("/ui/api/services/retriever/slow")
        assert time.monotonic() - started < 2.5
        error = answer.json()["error"]
        assert answer.status_code == 504 and (error["node"], error["status"]) == ("retriever", 504)
        assert "retriever did not answer the UI in time" in error["detail"]


def test_a_body_too_large_is_a_413(ui):
    too_large = b"x" * (MAX_BODY_BYTES + 1)
    for path in ("/ui/api/services/llm/echo", CHAT.endpoint, "/v1/dataprep/get"):
        answer = ui.post(path, content=too_large, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413, path
        assert answer.json()["error"]["status"] == 413 and str(MAX_BODY_BYTES) in answer.json()["error"]["detail"]
    upload = ui.post("/v1/dataprep/ingest", content=too_large)  # dataprep takes uploads up to 64 MiB
    assert upload.status_code == 201 and upload.json()["bytes"] == len(too_large)
    assert ui.post("/v1/dataprep/ingest", content=b"x" * (MAX_UPLOAD_BYTES + 1)).status_code == 413


def test_an_unknown_service_is_a_404_naming_it(ui):
    answer = ui.get("/ui/api/services/no-such-service/v1/health_check")
    error = answer.json()["error"]
    assert answer.status_code == 404 and error["node"] == "no-such-service"
    assert "no service named no-such-service" in error["detail"] and "retriever, llm, dataprep" in error["detail"]


def test_without_dataprep_its_paths_are_not_proxied(tmp_path, fake_node, folders):
    with ui_server(chat_project(tmp_path, dataprep=False), environment(fake_node), folders) as ui:
        assert ui.post("/v1/dataprep/ingest", content=b"x").status_code in (404, 405)


# ---------------------------------------------------------------- access


@pytest.fixture
def guarded_ui(tmp_path, fake_node, megaservice, folders) -> Iterator[httpx.Client]:
    with ui_server(chat_project(tmp_path), environment(fake_node, megaservice, API_KEYS=KEY), folders) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-key-0123456789", f"Basic {KEY}"])
def test_with_a_key_what_is_proxied_needs_it(guarded_ui, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in [("POST", CHAT.endpoint), ("POST", "/v1/chat/completions"), ("GET", "/v1/statistics"),
                         ("GET", "/v1/services"), ("GET", "/v1/models"), ("POST", "/v1/dataprep/ingest"),
                         ("GET", "/ui/api/services/llm/echo"), ("GET", "/ui/api/services/nope/x")]:
        answer = guarded_ui.request(method, path, json={"messages": QUESTION} if method == "POST" else None,
                                    headers=headers)
        assert answer.status_code == 401, f"{method} {path}: {answer.status_code}"
        assert answer.json()["error"]["status"] == 401 and answer.headers["www-authenticate"].startswith("Bearer")
        assert KEY not in answer.text


def test_with_the_key_the_proxy_answers_and_forwards_it(guarded_ui):
    bearer = {"Authorization": f"Bearer {KEY}"}
    echoed = guarded_ui.get("/ui/api/services/llm/echo", headers=bearer).json()
    assert echoed["headers"]["authorization"] == f"Bearer {KEY}"  # the service checks it again
    assert guarded_ui.get("/v1/statistics", headers=bearer).status_code == 200
    answer = guarded_ui.post(CHAT.endpoint, json={"messages": QUESTION}, headers=bearer)
    assert answer.status_code == 200, answer.text


def test_with_a_key_the_pages_assets_pipeline_and_health_stay_open(guarded_ui):
    for path in ("/", "/chat", "/statistics", "/documents", "/services/llm", "/services/dataprep",
                 "/ui/api/pipeline", "/v1/health", "/v1/health_check"):
        assert guarded_ui.get(path).status_code == 200, path
    css = re.search(r'href="(/ui/static/[^"]+)"', guarded_ui.get("/").text)
    assert css and guarded_ui.get(css.group(1)).status_code == 200
    assert guarded_ui.get("/v1/health").json() == {"status": "ok"}
    assert guarded_ui.get("/ui/api/pipeline").json()["access"] == {"required": True}


def test_the_key_is_never_logged(guarded_ui, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    for key in (KEY, "not-the-key-but-secret-0123"):
        guarded_ui.post(CHAT.endpoint, json={"messages": QUESTION}, headers={"Authorization": f"Bearer {key}"})
        guarded_ui.get("/ui/api/services/llm/echo", headers={"Authorization": f"Bearer {key}"})
    captured = capfd.readouterr()
    assert caplog.records  # uvicorn's access log, at least
    for text in (caplog.text, captured.out, captured.err):
        assert KEY not in text and "not-the-key-but-secret" not in text


def test_cors_is_closed_by_default_and_opens_for_the_origins_given(tmp_path, folders):
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with pages_client(chat_project(tmp_path), {"API_KEYS": KEY}, folders) as client:
        assert "access-control-allow-origin" not in client.options(CHAT.endpoint, headers=preflight).headers
        assert "access-control-allow-origin" not in client.get("/ui/api/pipeline",
                                                               headers={"Origin": preflight["Origin"]}).headers
    environ = {"API_KEYS": KEY, "CORS_ALLOW_ORIGINS": "https://elsewhere.example"}
    with pages_client(chat_project(tmp_path), environ, folders) as client:
        answer = client.options(CHAT.endpoint, headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://elsewhere.example"


def test_unusable_keys_close_the_ui(tmp_path, folders):
    with pages_client(chat_project(tmp_path), {"API_KEYS": "short"}, folders) as client:
        closed = client.get("/")
    assert closed.status_code == 503 and "API_KEYS" in closed.json()["error"]["detail"]


# ---------------------------------------------------------------- python -m opea_new_runtime.ui


PIPELINE_MODULE = textwrap.dedent('''
    from opea_new_runtime.{runtime} import Megaservice, Node, ServiceOrchestrator, ServiceType, remote_service

    MEGASERVICE = Megaservice(name="ui-process-demo", port=8888, endpoint="/v1/chatqna", protocol="chat",
                              ui_port=5173)


    def build_orchestrator():
        orchestrator = ServiceOrchestrator()
        orchestrator.add(remote_service("llm", ServiceType.LLM, port=9000, endpoint="/v1/chat/completions"))
        return orchestrator


    BESIDE_THE_FLOW = (Node("dataprep", "dataprep", port=6007, endpoint="/v1/dataprep/ingest"),)
''')


@pytest.fixture
def project_folder(tmp_path) -> Path:
    (tmp_path / "megaservice").mkdir()
    (tmp_path / "megaservice" / "__init__.py").write_text("")
    (tmp_path / "megaservice" / "pipeline.py").write_text(PIPELINE_MODULE.format(runtime=RUNTIME))
    return tmp_path


def ui_environ(**more: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT", "VIRTUAL_ENV")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, "PYTHONUNBUFFERED": "1", **more}


@pytest.mark.parametrize(("more", "says"), [
    ({"UI_PORT": "eighty"}, "UI_PORT"),
    ({"UI_PORT": "70000"}, "UI_PORT"),
    ({"UI_TIMEOUT": "-1"}, "UI_TIMEOUT"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ({"MEGA_SERVICE_PORT": "x"}, "MEGA_SERVICE_PORT"),
    ({"LLM_SERVICE_PORT": "x"}, "LLM_SERVICE_PORT"),
    ({"API_KEYS": "short"}, "API_KEYS: a key must be at least 16"),
    ({"API_KEYS_FILE": "/no/such/keys"}, "API_KEYS_FILE /no/such/keys cannot be read"),
    ({"UI_PROJECT": "/"}, "is not an opea-new project"),
])
def test_bad_settings_stop_the_start_with_one_line(project_folder, more, says):
    started = subprocess.run([sys.executable, "-m", "opea_new_runtime.ui"], cwd=project_folder, capture_output=True,
                             text=True, timeout=60, env=ui_environ(**{"UI_PORT": str(free_port()), **more}))
    assert started.returncode == 2, started.stderr
    assert says in started.stderr and started.stderr.startswith("ui: ")
    assert "Traceback" not in started.stderr and len(started.stderr.strip().splitlines()) == 1
    assert "short" not in started.stderr  # a key is never shown, even a bad one


def test_the_ui_serves_the_project_of_the_current_folder_and_stops_on_sigterm(project_folder):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "opea_new_runtime.ui"], cwd=project_folder,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=ui_environ(UI_PORT=str(port), API_KEYS=KEY, LOGFLAG="true"))
    try:
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False) as client:
            while True:
                assert process.poll() is None, process.stdout.read().decode()
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v1/health").status_code == 200:
                        break
                assert time.monotonic() < deadline, "the UI did not start"
                time.sleep(0.1)
            described = client.get("/ui/api/pipeline").json()
            assert described["name"] == "ui-process-demo" and described["dataprep"] == "dataprep"
            assert client.get("/v1/statistics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 502
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    log = process.stdout.read().decode()
    assert "/v1/statistics" in log and KEY not in log  # debug logging (LOGFLAG) shows the requests, not the key
