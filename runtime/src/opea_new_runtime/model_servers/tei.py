"""Text Embeddings Inference's HTTP API (huggingface/text-embeddings-inference, router/src/http), with fake models.

    embedding_app   POST /embed {"inputs": str | [str], "normalize"?, "truncate"?}  → [[float]]
                    POST /v1/embeddings {"input": str | [str], "model"?}           → OpenAI's embeddings answer
    rerank_app      POST /rerank {"query", "texts": [str], "raw_scores"?, "return_text"?, "truncate"?}
                                                                                   → [{"index", "score", "text"?}],
                                                                                     best first
    both            GET /health (200 when serving), GET /info (model_id, batch limit, ...)

Vectors are opea_new_runtime.text.hashed_embedding (EMBEDDING_DIMENSION, default 768 as bge-base's), scores
BM25 (opea_new_runtime.text.bm25_scores) squashed into 0..1 unless `raw_scores`. Bad requests get TEI's
error body (422; 413 past MAX_CLIENT_BATCH_SIZE inputs, TEI's default 32).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ..text import bm25_scores, hashed_embedding
from .errors import tei_error

MAX_CLIENT_BATCH_SIZE = int(os.environ.get("MAX_CLIENT_BATCH_SIZE", 32))
DEFAULT_DIMENSION = 768


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"Failed to parse the request body as JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def texts_of(value: Any, field: str) -> list[str]:
    """A string or a non-empty list of strings, as a list; at most MAX_CLIENT_BATCH_SIZE of them."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise BadRequest(f"`{field}` must be a string or a list of strings")
    if not texts:
        raise BadRequest(f"`{field}` cannot be empty")
    if len(texts) > MAX_CLIENT_BATCH_SIZE:
        raise BadRequest(f"batch size {len(texts)} > maximum allowed batch size {MAX_CLIENT_BATCH_SIZE}", 413)
    return texts


def flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"`{name}` must be true or false")
    return value


def _app(model_id: str, model_type: dict[str, Any]) -> FastAPI:
    app = FastAPI(title=f"TEI stand-in ({model_id})", docs_url=None, redoc_url=None)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return tei_error(error.status, str(error), "Validation")

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {"model_id": model_id, "model_type": model_type, "max_client_batch_size": MAX_CLIENT_BATCH_SIZE,
                "version": "stand-in", "docker_label": "opea-new-runtime stand-in"}

    return app


def embedding_app(model_id: str = "BAAI/bge-base-en-v1.5", dimension: int | None = None) -> FastAPI:
    dimension = dimension or int(os.environ.get("EMBEDDING_DIMENSION", DEFAULT_DIMENSION))
    app = _app(model_id, {"embedding": {"pooling": "cls"}})

    @app.post("/embed")
    async def embed(request: Request) -> list[list[float]]:
        body = await json_object(request)
        texts = texts_of(body.get("inputs"), "inputs")
        flag(body, "normalize", True)
        flag(body, "truncate", False)
        return [hashed_embedding(text, dimension) for text in texts]

    @app.post("/v1/embeddings")
    async def openai_embeddings(request: Request) -> dict[str, Any]:
        body = await json_object(request)
        texts = texts_of(body.get("input"), "input")
        words = sum(len(text.split()) for text in texts)
        return {"object": "list", "model": body.get("model") or model_id,
                "data": [{"object": "embedding", "index": index, "embedding": hashed_embedding(text, dimension)}
                         for index, text in enumerate(texts)],
                "usage": {"prompt_tokens": words, "total_tokens": words}}

    return app


def rerank_app(model_id: str = "BAAI/bge-reranker-base") -> FastAPI:
    app = _app(model_id, {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}})

    @app.post("/rerank")
    async def rerank(request: Request) -> list[dict[str, Any]]:
        body = await json_object(request)
        query = body.get("query")
        if not isinstance(query, str):
            raise BadRequest("`query` must be a string")
        texts = texts_of(body.get("texts"), "texts")
        raw, return_text = flag(body, "raw_scores", False), flag(body, "return_text", False)
        flag(body, "truncate", False)
        scores = bm25_scores(query, texts)
        ranked = sorted(range(len(texts)), key=lambda index: (-scores[index], index))
        return [{"index": index, "score": scores[index] if raw else round(1 - math.exp(-scores[index]), 6),
                 **({"text": texts[index]} if return_text else {})} for index in ranked]

    return app
