"""LLM parameters: the fields and defaults of `comps.cores.proto.docarray.LLMParams` (opea-comps 1.5)."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, NonNegativeFloat, PositiveInt


class LLMParams(BaseModel):
    """Generation parameters the orchestrator merges into the inputs of every llm/lvm node."""

    id: str = Field(default_factory=lambda: os.urandom(16).hex())
    model: str | None = None
    max_tokens: int = 1024
    max_new_tokens: PositiveInt = 1024
    top_k: PositiveInt = 10
    top_p: NonNegativeFloat = 0.95
    typical_p: NonNegativeFloat = 0.95
    temperature: NonNegativeFloat = 0.01
    frequency_penalty: NonNegativeFloat = 0.0
    presence_penalty: NonNegativeFloat = 0.0
    repetition_penalty: NonNegativeFloat = 1.03
    stream: bool = True
    language: str = "auto"  # "en", "zh", ...
    index_name: str | None = None
    chat_template: str | None = Field(
        default=None,
        description="A template for the prompt, with {context} and {question} for RAG or only {question}.",
    )
