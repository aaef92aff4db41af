"""What a retriever does with candidate documents: OPEA's search types, over a corpus in memory or a vector store.

    choose(query, vectors, scores)   the indices a query's search type picks, best first
    StoreRetriever(store)            a retriever's model that searches an opea_new_runtime.stores store

Search types are those of OPEA's retrievers: `similarity` (the k closest),
`similarity_distance_threshold` (and within `distance_threshold`, 1 - cosine),
`similarity_score_threshold` (and at least `score_threshold`) and `mmr`
(maximal marginal relevance over the `fetch_k` closest, with `lambda_mult`).
A query is any object with those attributes and `query_vector` (the retriever's
EmbedDoc).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from .service import Refused


class Query(Protocol):
    query_vector: list[float]
    search_type: str
    k: int
    fetch_k: int
    lambda_mult: float
    distance_threshold: float | None
    score_threshold: float


def cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=False)) / norm if norm else 0.0


def choose(query: Query, vectors: list[list[float]], scores: list[float]) -> list[int]:
    """Indices into `vectors`/`scores` (each candidate's cosine to the query) that the search type answers."""
    ranked = sorted(range(len(scores)), key=lambda index: -scores[index])
    if query.search_type == "mmr":
        return maximal_marginal_relevance(vectors, scores, ranked[: query.fetch_k], query.k, query.lambda_mult)
    if query.search_type == "similarity_distance_threshold" and query.distance_threshold is not None:
        ranked = [index for index in ranked if 1 - scores[index] <= query.distance_threshold]
    elif query.search_type == "similarity_score_threshold":
        ranked = [index for index in ranked if scores[index] >= query.score_threshold]
    return ranked[: query.k]


def maximal_marginal_relevance(vectors: list[list[float]], scores: list[float], candidates: list[int], k: int,
                               lambda_mult: float) -> list[int]:
    """Pick k candidates, each time the one most relevant to the query and least like those picked already."""
    chosen: list[int] = []
    remaining = list(candidates)
    while remaining and len(chosen) < k:
        def value(index: int) -> float:
            redundancy = max((cosine(vectors[index], vectors[other]) for other in chosen), default=0.0)
            return lambda_mult * scores[index] - (1 - lambda_mult) * redundancy

        best = max(remaining, key=value)
        chosen.append(best)
        remaining.remove(best)
    return chosen


class StoreRetriever:
    """Searches the documents a dataprep service stored; an empty store answers no documents, honestly.

    The store answers the closest chunks (`fetch_k` of them for mmr, else `k`);
    the search type then applies to those. A store that is down is a 503 naming
    it, and the next request tries again; a query vector of another length than
    the stored ones (another embedding model) is a 400.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.name = f"vector store {store.name}"

    async def search(self, query: Query) -> list[Any]:
        from .stores import DimensionMismatch, StoreError

        wanted = query.fetch_k if query.search_type == "mmr" else query.k
        try:
            hits = await self.store.search(query.query_vector, max(wanted, query.k))
        except DimensionMismatch as error:
            raise Refused(f"{error} (the documents were embedded by another model than the question)") from None
        except StoreError as error:
            raise Refused(f"the vector store {self.store.name} is unavailable: {error}", 503) from None
        except ValueError as error:  # a query vector the store cannot search with (NaN, empty)
            raise Refused(str(error)) from None
        chosen = choose(query, [hit.vector for hit in hits], [hit.score for hit in hits])
        return [hits[index] for index in chosen]

    async def aclose(self) -> None:
        await self.store.aclose()
