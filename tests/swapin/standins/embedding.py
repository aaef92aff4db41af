"""Stand-in for opea/embedding:1.5: its handler's signature, its endpoint, the generated stub's vectors.

Run with the comps venv's Python: `python embedding.py` (PORT from the environment).
"""

from __future__ import annotations

import os

from comps import ServiceType, opea_microservices, register_microservice
from comps.cores.proto.api_protocol import EmbeddingRequest, EmbeddingResponse, EmbeddingResponseData
from fake_models import embed, refusing
from fastapi import HTTPException


@register_microservice(
    name="opea_service@embedding",
    service_type=ServiceType.EMBEDDING,
    endpoint="/v1/embeddings",
    host="127.0.0.1",
    port=int(os.environ["PORT"]),
)
async def embedding(input: EmbeddingRequest) -> EmbeddingResponse:
    if refusing():
        raise HTTPException(status_code=400, detail="the stand-in embedding refuses (SWAPIN_REFUSE)")
    texts = [input.input] if isinstance(input.input, str) else input.input
    return EmbeddingResponse(data=[EmbeddingResponseData(index=index, embedding=embed(text))
                                   for index, text in enumerate(texts)])


if __name__ == "__main__":
    opea_microservices["opea_service@embedding"].start()
