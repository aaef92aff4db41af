"""The checks every generated microservice runs on itself: health, its endpoint in OpenAPI, bad bodies, /metrics.

A service's tests/test_health.py imports these test functions, and pytest runs them
there with that service's `client` fixture (its app with the stub model) and its
`app.SERVICE` (imported when a test runs: the service folder is on the path).
"""

from __future__ import annotations

import pytest


def _service():
    from app import SERVICE

    return SERVICE


@pytest.mark.parametrize("route", ["/v1/health_check", "/health"])
def test_health(client, route):
    answer = client.get(route)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["service"], body["type"]) == ("healthy", _service().name, _service().type)
    assert body["model"] and body["model"] == client.app.state.model.name


def test_the_endpoint_is_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths[_service().endpoint]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_a_422(client, body):
    answer = client.post(_service().endpoint, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"]


def test_metrics_count_requests_by_route_and_status(client):
    client.post(_service().endpoint, content=b"[]", headers={"Content-Type": "application/json"})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    counted = f'method="POST",route="{_service().endpoint}",status="422"'
    assert "opea_service_requests_total{" + counted + "} 1.0" in metrics.text
