"""Access control: with API_KEYS set, the megaservice answers only requests that carry the key.

`guarded` is a second megaservice on the same nodes with a key of the tests' own
(opea_new_runtime.testing); the other tests' megaservice is open, as `make run`
is until API_KEYS or API_KEYS_FILE holds a key (.env.example).
"""

from __future__ import annotations

import pytest

from megaservice.pipeline import MEGASERVICE


def request_body() -> dict:
    if MEGASERVICE.protocol == "chat":
        return {"messages": [{"role": "user", "content": "What is OPEA?"}], "stream": False}
    return {"text": "What is OPEA?"}


@pytest.mark.parametrize("authorization", [None, "Bearer not-the-key-0123456789", "Basic dXNlcjpwYXNz"])
def test_without_the_key_the_pipeline_answers_401(guarded, authorization):
    key, client, _ = guarded
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.post(MEGASERVICE.endpoint, json=request_body(), headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["status"] == 401 and answer.json()["error"]["detail"]
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert key not in answer.text


@pytest.mark.parametrize("path", ["/v1/statistics", "/metrics", "/openapi.json"])
def test_management_endpoints_need_the_key_too(guarded, path):
    key, client, _ = guarded
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_the_key_opens_the_pipeline(guarded, whole_flow):
    key, client, _ = guarded
    answer = client.post(MEGASERVICE.endpoint, json=request_body(), headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("path", ["/v1/health_check", "/v1/health", "/health"])
def test_health_stays_open(guarded, path):
    _, client, _ = guarded
    assert client.get(path).status_code == 200


def test_the_key_is_in_no_log_line(guarded):
    key, client, log_dir = guarded
    client.post(MEGASERVICE.endpoint, json=request_body(), headers={"Authorization": f"Bearer {key}x"})
    client.post(MEGASERVICE.endpoint, json=request_body(), headers={"Authorization": f"Bearer {key}"})
    logs = sorted(log_dir.glob("*.log"))
    assert logs, f"no logs in {log_dir}"
    assert all(key not in log.read_text(errors="replace") for log in logs)
