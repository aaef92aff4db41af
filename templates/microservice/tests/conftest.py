"""The app with its stub model, in-process: no server, no network, no model."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.stub import create_stub


@pytest.fixture
def client():
    with TestClient(create_app(create_stub)) as test_client:
        yield test_client
