"""What an LLM service's routes exchange with its model, whichever model it is (the stub, a server, yours)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prompt:
    """One generation: what a chat model is sent (`messages`), and the question and documents behind it."""

    query: str
    documents: list[str]
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    model: str | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str = "stop"  # stop | length
    prompt_tokens: int = 0
    completion_tokens: int = 0
