"""opea_new_runtime.access: API keys on a microservice and on the megaservice (driven by the openai SDK), and CORS.

Off until API_KEYS or API_KEYS_FILE holds a key; then every request but the
health checks needs `Authorization: Bearer <key>` and is otherwise a 401 that
says what was missing; keys that cannot be used close the app (503) and stop
serve(). The key never appears in an answer or a log record.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import openai
import pytest
from runtime_under_test import ServiceType
from starlette.testclient import TestClient
from test_flow import Services, build
from test_openai_front_door import MEGASERVICE, QUESTION, model_server
from test_service import EchoModel, client_of

from opea_new_runtime import access

KEY = "k3y-of-the-tests-0123456789"
OTHER = "another-valid-key-9876543210"


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv("API_KEYS", f"{OTHER}, {KEY}")
    monkeypatch.delenv("API_KEYS_FILE", raising=False)
    monkeypatch.delenv("CORS_ALLOW_ORIGINS", raising=False)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------- keys


def test_no_key_leaves_access_open(monkeypatch):
    monkeypatch.delenv("API_KEYS", raising=False)
    monkeypatch.delenv("API_KEYS_FILE", raising=False)
    with client_of(EchoModel()) as client:
        assert client.post("/v1/echo", json={"a": 1}).json() == {"a": 1}


def test_keys_come_from_the_variable_and_from_a_file(tmp_path):
    secret = tmp_path / "keys"
    secret.write_text(f"# the team's keys\n{OTHER}   # ci\n\n{KEY}\n")
    assert access.load_keys({"API_KEYS": f" {KEY},{OTHER} "}) == (KEY.encode(), OTHER.encode())
    assert access.load_keys({"API_KEYS_FILE": str(secret)}) == (OTHER.encode(), KEY.encode())
    assert access.load_keys({"API_KEYS": ""}) == ()


@pytest.mark.parametrize(("environ", "says"), [
    ({"API_KEYS": "short"}, "API_KEYS: a key must be at least 16"),
    ({"API_KEYS": "ключ-которого-не-угадать"}, "printable ASCII"),
    ({"API_KEYS_FILE": "/no/such/keys"}, "API_KEYS_FILE /no/such/keys cannot be read: No such file or directory"),
])
def test_keys_that_cannot_be_used_are_refused_without_showing_them(environ, says):
    with pytest.raises(access.KeysError) as refused:
        access.load_keys(environ)
    assert says in str(refused.value)
    assert all(value not in str(refused.value) for value in environ.values() if "/" not in value)


def test_a_bad_line_of_the_file_is_named(tmp_path):
    secret = tmp_path / "keys"
    secret.write_text(f"{KEY}\nshort\n")
    with pytest.raises(access.KeysError, match=r"line 2: a key must be"):
        access.load_keys({"API_KEYS_FILE": str(secret)})


# ---------------------------------------------------------------- a microservice


def test_a_service_answers_401_without_the_key_and_keeps_health_open(keyed):
    with client_of(EchoModel()) as client:
        assert client.get("/v1/health_check").status_code == 200
        for headers, says in [({}, "needs an API key"), (bearer("wrong-key-0123456789abc"), "not valid"),
                              ({"Authorization": f"Basic {KEY}"}, "Authorization: Bearer <key>"),
                              ({"Authorization": "Bearer"}, "Authorization: Bearer <key>")]:
            refused = client.post("/v1/echo", json={"a": 1}, headers=headers)
            assert refused.status_code == 401, headers
            assert says in refused.json()["detail"] and KEY not in refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/metrics").status_code == 401
        assert client.post("/v1/echo", json={"a": 1}, headers=bearer(KEY)).json() == {"a": 1}
        assert client.post("/v1/echo", json={"a": 2}, headers=bearer(OTHER)).json() == {"a": 2}
        assert "401" in client.get("/metrics", headers=bearer(KEY)).text  # refusals are counted


def test_unusable_keys_close_the_app_and_stop_serve(monkeypatch, tmp_path):
    monkeypatch.setenv("API_KEYS", "short")
    with client_of(EchoModel()) as client:
        closed = client.post("/v1/echo", json={"a": 1}, headers=bearer("short"))
        assert closed.status_code == 503 and "API_KEYS" in closed.json()["detail"]
        assert client.get("/v1/health_check").status_code == 503  # unhealthy, so it shows
    script = textwrap.dedent("""
        from fastapi import APIRouter
        from opea_new_runtime.service import Service, create_app, serve
        service = Service(name="keyed", project="demo", type="unknown", port=0, endpoint="/v1/x")
        serve(create_app(service, APIRouter(), lambda: None))
    """)
    started = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                             env={"API_KEYS": "short", "PATH": "/usr/bin:/bin"})
    assert started.returncode == 2 and "keyed: API_KEYS: a key must be at least 16" in started.stderr
    assert "Traceback" not in started.stderr


def test_cors_is_closed_by_default_and_opens_for_the_origins_given(keyed, monkeypatch):
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    with client_of(EchoModel()) as client:
        answer = client.options("/v1/echo", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://ui.example")
    with client_of(EchoModel()) as client:
        answer = client.options("/v1/echo", headers=preflight)  # no key: a preflight carries none
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "https://ui.example"
        other = client.options("/v1/echo", headers={**preflight, "Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
        called = client.post("/v1/echo", json={"a": 1}, headers={**bearer(KEY), "Origin": "https://ui.example"})
        assert called.json() == {"a": 1} and called.headers["access-control-allow-origin"] == "https://ui.example"


# ---------------------------------------------------------------- the megaservice


@pytest.fixture
def megaservice(keyed):
    with Services(llm=model_server).in_thread() as services, \
            TestClient(access_app(services.port)) as client:
        yield client


def access_app(port: int):
    from opea_new_runtime.megaservice import create_app

    return create_app(MEGASERVICE, lambda: build(port, [], nodes=["llm"], types={"llm": ServiceType.LLM}))


def sdk(client: TestClient, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=client, max_retries=0)


def test_the_sdk_works_with_the_key_and_raises_authentication_error_without(megaservice, caplog):
    caplog.set_level(logging.DEBUG)
    messages = [{"role": "user", "content": QUESTION}]
    assert sdk(megaservice, KEY).chat.completions.create(model="front-door", messages=messages).choices
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk(megaservice, "wrong-key-0123456789abc").chat.completions.create(model="front-door", messages=messages)
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key" and "not valid" in refused.value.message
    assert KEY not in caplog.text and KEY not in str(refused.value.body)


def test_the_megaservice_guards_every_endpoint_but_health(megaservice):
    body = {"messages": QUESTION}
    for path in ("/v1/health_check", "/v1/health", "/health", "/v1/health/ready"):
        assert megaservice.get(path).status_code in (200, 503), path  # ready may be 503; never 401
        assert megaservice.get(path).status_code != 401, path
    for method, path in [("POST", "/v1/chatqna"), ("POST", "/v1/chat/completions"), ("GET", "/v1/models"),
                         ("GET", "/v1/statistics"), ("GET", "/metrics"), ("GET", "/openapi.json")]:
        refused = megaservice.request(method, path, json=body if method == "POST" else None)
        assert refused.status_code == 401, path
        error = refused.json()["error"]
        assert (error["status"], error["code"], error["type"]) == (401, "invalid_api_key", "invalid_request_error")
        assert megaservice.request(method, path, json=body if method == "POST" else None,
                                   headers=bearer(KEY)).status_code == 200, path


# ---------------------------------------------------------------- paths an app opens itself (the web UI's pages)


def opened_app(environ, **opened):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def page(request):
        return PlainTextResponse(request.url.path)

    app = Starlette(routes=[Route("/{path:path}", page, methods=["GET", "POST"])])
    access.protect(app, environ, refusal=lambda message: {"detail": message}, **opened)
    return app


def test_open_paths_and_prefixes_need_no_key_and_open_nothing_else():
    environ = {"API_KEYS": KEY}
    with TestClient(opened_app(environ, open_paths=["/", "/chat"], open_prefixes=["/services/", "/static/"])) as client:
        for path in ("/", "/chat", "/services/llm", "/static/style.css", "/v1/health_check"):
            assert client.get(path).status_code == 200, path
        for path in ("/chat/x", "/chats", "/services", "/static", "/v1/chatqna", "/ui/api/services/llm/x"):
            refused = client.get(path)
            assert refused.status_code == 401 and "needs an API key" in refused.json()["detail"], path
        assert client.get("/v1/chatqna", headers=bearer(KEY)).status_code == 200
    with TestClient(opened_app(environ)) as client:  # without them: only the health checks, as before
        assert client.get("/").status_code == 401 and client.get("/v1/health").status_code == 200
    with TestClient(opened_app({"API_KEYS": "short"}, open_paths=["/"])) as client:  # unusable keys: all closed
        assert client.get("/").status_code == 503
    with TestClient(opened_app({}, open_paths=["/"])) as client:  # no key: all open
        assert client.get("/anything").status_code == 200
