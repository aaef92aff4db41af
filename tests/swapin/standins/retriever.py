"""Stand-in for opea/retriever:1.5: its handler's signature, its endpoint, the generated stub's search.

Searches the corpus SWAPIN_CORPUS names (the file the generated retriever is given as
RETRIEVER_CORPUS in the same test), so both answer the same documents.
"""

# ruff: noqa: UP007  (the published handler's signature, verbatim)

from __future__ import annotations

import os
from typing import Union

from comps import (
    EmbedDoc,
    EmbedMultimodalDoc,
    SearchedDoc,
    SearchedMultimodalDoc,
    ServiceType,
    TextDoc,
    opea_microservices,
    register_microservice,
)
from comps.cores.proto.api_protocol import (
    ChatCompletionRequest,
    RetrievalRequest,
    RetrievalRequestArangoDB,
    RetrievalResponse,
)
from fake_models import refusing, search
from fastapi import HTTPException


@register_microservice(
    name="opea_service@retrievers",
    service_type=ServiceType.RETRIEVER,
    endpoint="/v1/retrieval",
    host="127.0.0.1",
    port=int(os.environ["PORT"]),
)
async def retrieve_docs(
    input: Union[EmbedDoc, EmbedMultimodalDoc, RetrievalRequest, RetrievalRequestArangoDB, ChatCompletionRequest],
) -> Union[SearchedDoc, SearchedMultimodalDoc, RetrievalResponse, ChatCompletionRequest]:
    if refusing():
        raise HTTPException(status_code=400, detail="the stand-in retriever refuses (SWAPIN_REFUSE)")
    if not isinstance(input, EmbedDoc):
        raise HTTPException(status_code=400, detail=f"the stand-in takes an EmbedDoc, not {type(input).__name__}")
    hits = search(input.embedding, input.k)
    return SearchedDoc(retrieved_docs=[TextDoc(text=text) for text, _ in hits], initial_query=input.text)


if __name__ == "__main__":
    opea_microservices["opea_service@retrievers"].start()
