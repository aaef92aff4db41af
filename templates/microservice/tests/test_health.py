"""The routes every microservice has: health checks, the documented endpoint, bad bodies."""

from __future__ import annotations

import pytest

from app import settings


@pytest.mark.parametrize("route", ["/v1/health_check", "/health"])
def test_health(client, route):
    answer = client.get(route)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["service"], body["type"]) == ("healthy", settings.NAME, settings.SERVICE_TYPE)
    assert body["model"].startswith("stub")


def test_the_endpoint_is_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths[settings.ENDPOINT]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_a_422(client, body):
    answer = client.post(settings.ENDPOINT, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"]
