"""A stand-in for templates/microservice, used until that template exists.

`write_stand_in(folder, ...)` writes a service folder with the contract the
megaservice template relies on (docs/architecture.md, "Data between services"):
`python -m app` listening on HOST/PORT, /v1/health_check and /health, its
endpoint answering like the stub family it belongs to, its own tests and
requirements. It exists only to test the megaservice side.
"""

from __future__ import annotations

import json
from pathlib import Path

APP = '''\
"""Stand-in service: the {kind} stub family."""

import asyncio
import hashlib
import json
import math
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

NAME = {name}
KIND = {kind_literal}
ENDPOINT = {endpoint}
CORPUS = [
    "OPEA is an open platform for enterprise AI built from microservices.",
    "Docker runs containers on a host.",
    "Bananas are yellow and rich in potassium.",
]
BLOCKLIST = ("bomb",)

app = FastAPI()


def embed(text):
    vector = [0.0] * 32
    for word in text.lower().split():
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 32] += 1
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


@app.get("/v1/health_check")
@app.get("/health")
def health():
    return {{"status": "healthy", "service": NAME}}


@app.post(ENDPOINT)
async def handle(request: Request):
    body = await request.json()
    if not isinstance(body, dict):
        return JSONResponse({{"detail": "a JSON object is required"}}, status_code=422)
    if KIND == "embedding":
        return {{"text": body["text"], "embedding": embed(body["text"]), "search_type": "similarity", "k": 2}}
    if KIND == "retriever":
        query = body["embedding"]
        ranked = sorted(CORPUS, key=lambda doc: -sum(a * b for a, b in zip(query, embed(doc))))
        docs = [{{"text": doc}} for doc in ranked[: body.get("k", 2)]]
        return {{"retrieved_docs": docs, "initial_query": body["text"], "top_n": 1}}
    if KIND == "rerank":
        words = set(body["initial_query"].lower().split())
        docs = sorted(body["retrieved_docs"], key=lambda doc: -len(words & set(doc["text"].lower().split())))
        best = [doc["text"] for doc in docs[: body.get("top_n", 1)]]
        return {{"query": body["initial_query"], "documents": best}}
    if KIND == "guardrail":
        text = body.get("text", "")
        if any(word in text.lower() for word in BLOCKLIST):
            return {{"text": "I cannot help with that.", "blocked": True, "reason": "blocklist",
                    "downstream_black_list": [".*"]}}
        return {{**body, "blocked": False}}
    if KIND == "llm":
        if not isinstance(body.get("query"), str):
            return JSONResponse({{"detail": "query is required"}}, status_code=422)
        answer = (body.get("documents") or [body["query"]])[0]
        if body.get("stream", True):
            async def tokens():
                for word in answer.split(" "):
                    chunk = {{"choices": [{{"index": 0, "delta": {{"content": word + " "}}}}]}}
                    yield "data: " + json.dumps(chunk) + "\\n\\n"
                    await asyncio.sleep(0)
                yield "data: [DONE]\\n\\n"
            return StreamingResponse(tokens(), media_type="text/event-stream")
        return {{"text": answer, "prompt": body["query"]}}
    return {{**body, "trace": [*body.get("trace", []), NAME]}}
'''

MAIN = '''\
import os

import uvicorn

from .main import app

uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]), log_level="warning")
'''

TEST = '''\
from fastapi.testclient import TestClient

from app.main import ENDPOINT, app


def test_health():
    assert TestClient(app).get("/v1/health_check").json()["status"] == "healthy"


def test_rejects_a_non_object():
    assert TestClient(app).post(ENDPOINT, json=[1]).status_code == 422
'''

REQUIREMENTS = "fastapi==0.124.0\npydantic==2.11.7\nuvicorn==0.35.0\n"


def write_stand_in(folder: Path, *, name: str, kind: str, endpoint: str) -> None:
    (folder / "app").mkdir(parents=True)
    (folder / "tests").mkdir()
    app = APP.format(name=json.dumps(name), kind=kind, kind_literal=json.dumps(kind),
                     endpoint=json.dumps(endpoint))
    (folder / "app" / "__init__.py").write_text("")
    (folder / "app" / "main.py").write_text(app)
    (folder / "app" / "__main__.py").write_text(MAIN)
    (folder / "tests" / "test_service.py").write_text(TEST)
    (folder / "requirements.txt").write_text(REQUIREMENTS)
