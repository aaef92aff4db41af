"""Stand-in for opea/llm-textgen:1.5: its handler's signature, its endpoint, the generated stub's answer.

An LLMParamsDoc gets what the published component answers it (it calls the server's
/v1/completions): an OpenAI text completion, or its `text_completion` chunks as SSE then
`data: [DONE]` when `stream` is set.
"""

# ruff: noqa: UP007  (the published handler's signature, verbatim)

from __future__ import annotations

import json
import os
import time
from typing import Union

from comps import LLMParamsDoc, SearchedDoc, ServiceType, opea_microservices, register_microservice
from comps.cores.proto.api_protocol import ChatCompletionRequest
from fake_models import answer_tokens, refusing
from fastapi import HTTPException
from fastapi.responses import StreamingResponse


@register_microservice(
    name="opea_service@llm",
    service_type=ServiceType.LLM,
    endpoint="/v1/chat/completions",
    host="127.0.0.1",
    port=int(os.environ["PORT"]),
)
async def llm_generate(input: Union[LLMParamsDoc, ChatCompletionRequest, SearchedDoc]):
    if refusing():
        raise HTTPException(status_code=400, detail="the stand-in llm refuses (SWAPIN_REFUSE)")
    if not isinstance(input, LLMParamsDoc):
        raise HTTPException(status_code=400, detail=f"the stand-in takes an LLMParamsDoc, not {type(input).__name__}")
    pieces = answer_tokens(input.query, list(input.documents), input.max_tokens)
    created = int(time.time())

    def completion(text: str, finish_reason: str | None) -> dict:
        return {"id": "cmpl-standin", "object": "text_completion", "created": created, "model": "standin",
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}]}

    if input.stream:
        def events():
            for piece in pieces:
                yield f"data: {json.dumps(completion(piece, None))}\n\n"
            yield f"data: {json.dumps(completion('', 'stop'))}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    return completion("".join(pieces), "stop")


if __name__ == "__main__":
    opea_microservices["opea_service@llm"].start()
