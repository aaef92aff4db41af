"""Schemathesis against the stub families' apps and a megaservice: their OpenAPI documents tell the truth.

Not collected with the library suite (needs schemathesis); tests/runtime/test_hostile_requests.py runs it,
in a venv of its own, against real processes:

    CONFORMANCE_TARGETS='{"name": "http://127.0.0.1:PORT", ...}' python -m pytest runtime/tests/conformance.py

Without CONFORMANCE_TARGETS it runs against the six families' apps in-process (ASGI). Bounded:
CONFORMANCE_EXAMPLES examples per operation and phase (default 40), no deadline per example, and
every check schemathesis has for a response (server errors, status codes, content types, headers,
response schemas, positive data accepted and negative data refused) — but a raw megaservice's
positive data: its schema is any object, and its entry node may refuse one (a 422 naming the node),
and dataprep's: a multipart form's schema cannot say which files hold text or which strings are URL lists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import schemathesis
from families import FAMILIES, create_app
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("CONFORMANCE_EXAMPLES", "40"))
TARGETS = json.loads(os.environ.get("CONFORMANCE_TARGETS", "{}"))
ROOT = Path(os.environ.get("CONFORMANCE_TMP", "/tmp")) / f"conformance-{os.getpid()}"


def load(name: str):
    if TARGETS:
        return schemathesis.openapi.from_url(f"{TARGETS[name]}/openapi.json")
    family = next(family for family in FAMILIES if family.name == name)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(family, ROOT))


NAMES = list(TARGETS) or [family.name for family in FAMILIES]


def raw_megaservice(document: dict) -> bool:
    bodies = [operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
              for path in document["paths"].values() for operation in path.values()]
    return {"type": "object"} in bodies


def takes_files(document: dict) -> bool:
    return any("multipart/form-data" in operation.get("requestBody", {}).get("content", {})
               for path in document["paths"].values() for operation in path.values())


def conformance(name: str):
    schema = load(name)
    excluded = []
    if raw_megaservice(schema.raw_schema) or takes_files(schema.raw_schema):
        # raw: any object is valid to its schema, yet its entry node may refuse it (a 422 naming the node);
        # dataprep: a form's schema cannot say "a document with text in it" nor "a JSON list of URLs"
        excluded.append(schemathesis.checks.positive_data_acceptance)

    @schema.parametrize()
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        if TARGETS:
            case.call_and_validate(timeout=30, excluded_checks=excluded)
        else:
            case.call_and_validate(excluded_checks=excluded)

    return run


for _name in NAMES:
    globals()[f"test_conformance_of_{_name}"] = conformance(_name)
