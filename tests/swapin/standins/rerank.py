"""Stand-in for opea/reranking:1.5: its handler's signature, its endpoint, the generated stub's BM25 order.

A SearchedDoc gets what the published TEI component answers it: an LLMParamsDoc with the
query and the top_n documents' texts.
"""

# ruff: noqa: UP007  (the published handler's signature, verbatim)

from __future__ import annotations

import os
from typing import Union

from comps import (
    LLMParamsDoc,
    LVMVideoDoc,
    RerankedDoc,
    SearchedDoc,
    SearchedMultimodalDoc,
    ServiceType,
    opea_microservices,
    register_microservice,
)
from comps.cores.proto.api_protocol import ChatCompletionRequest, RerankingRequest, RerankingResponse
from fake_models import bm25_order, refusing
from fastapi import HTTPException


@register_microservice(
    name="opea_service@reranking",
    service_type=ServiceType.RERANK,
    endpoint="/v1/reranking",
    host="127.0.0.1",
    port=int(os.environ["PORT"]),
)
async def reranking(
    input: Union[SearchedMultimodalDoc, SearchedDoc, RerankingRequest, ChatCompletionRequest],
) -> Union[RerankedDoc, LLMParamsDoc, RerankingResponse, ChatCompletionRequest, LVMVideoDoc]:
    if refusing():
        raise HTTPException(status_code=400, detail="the stand-in reranking refuses (SWAPIN_REFUSE)")
    if not isinstance(input, SearchedDoc):
        raise HTTPException(status_code=400, detail=f"the stand-in takes a SearchedDoc, not {type(input).__name__}")
    documents = [doc.text for doc in input.retrieved_docs]
    order = bm25_order(input.initial_query, documents)[: input.top_n]
    return LLMParamsDoc(query=input.initial_query, documents=[documents[index] for index in order])


if __name__ == "__main__":
    opea_microservices["opea_service@reranking"].start()
