"""The working fake models behind the stand-ins: they compute what opea-new's generated stubs compute.

Built on opea_new_runtime.text, as the stubs are, so a pipeline answers the same whether a
node is the generated service or a stand-in: hashed-bag-of-words embeddings, a corpus
searched by cosine similarity (the file SWAPIN_CORPUS names, one document per blank-line
separated block, as the generated retriever reads RETRIEVER_CORPUS), BM25 reranking and
the extractive answer of the generated LLM stub.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from opea_new_runtime.text import best_sentence, bm25_scores, hashed_embedding

DIMENSION = 128  # the generated embedding stub's default
TOKEN = re.compile(r"\s*\S+")


def embed(text: str) -> list[float]:
    return hashed_embedding(text, DIMENSION)


def corpus() -> list[str]:
    text = Path(os.environ["SWAPIN_CORPUS"]).read_text(encoding="utf-8")
    return [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


def cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=False)) / norm if norm else 0.0


def search(vector: list[float], k: int) -> list[tuple[str, float]]:
    """The k documents of the corpus closest to `vector`, with their cosine similarity."""
    documents = corpus()
    scores = [cosine(vector, hashed_embedding(document, len(vector))) for document in documents]
    ranked = sorted(range(len(documents)), key=lambda index: -scores[index])[:k]
    return [(documents[index], round(scores[index], 6)) for index in ranked]


def bm25_order(query: str, documents: list[str]) -> list[int]:
    """Document indexes by BM25 score, ties in their given order."""
    scores = bm25_scores(query, documents)
    return sorted(range(len(documents)), key=lambda index: -scores[index])


def answer_tokens(query: str, documents: list[str], max_tokens: int | None) -> list[str]:
    """The sentence of `documents` sharing the most words with `query`, cut into tokens."""
    sentence = best_sentence(query, documents)
    pieces = TOKEN.findall(sentence if sentence is not None else f"No documents were given to answer {query!r} from.")
    return pieces[:max_tokens] if max_tokens is not None else pieces


def refusing() -> bool:
    """SWAPIN_REFUSE=1: the stand-in answers every request 400, as a component whose backend is down does."""
    return os.environ.get("SWAPIN_REFUSE") == "1"
