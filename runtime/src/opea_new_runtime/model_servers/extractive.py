"""The fake LLM of the OpenAI-compatible stand-in: it answers from its prompt, with no model.

A prompt written from ChatQnA's RAG template (opea_new_runtime.prompts: the
megaservice writes it for a vLLM or TGI node) gives the question and the
documents; the answer is the documents' sentence sharing the most words with the
question (opea_new_runtime.text.best_sentence, as the generated llm stub answers).
Any other prompt is a question without documents. A token is a word with its
leading whitespace.
"""

from __future__ import annotations

import re

from ..text import best_sentence

RAG_PROMPT = re.compile(r"### Search results: (?P<context>.*?)\n### Question: (?P<question>.*?)\n### Answer:", re.S)
TOKEN = re.compile(r"\s*\S+")


def tokens(text: str) -> list[str]:
    """`text` cut into tokens that join back into it."""
    return TOKEN.findall(text)


def question_and_documents(prompt: str) -> tuple[str, list[str]]:
    """(question, documents) of a RAG prompt; (the prompt, []) of any other."""
    found = RAG_PROMPT.search(prompt)
    if found is None:
        return prompt.strip(), []
    documents = [line for line in found["context"].split("\n") if line.strip()]
    return found["question"].strip(), documents


def answer(prompt: str) -> str:
    question, documents = question_and_documents(prompt)
    sentence = best_sentence(question, documents)
    if sentence is not None:
        return sentence
    return (f"The stand-in model has no documents to answer {question!r} from: it answers only from the "
            "search results of a RAG prompt.")


def content_text(content: object) -> str:
    """A message's content as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def last_user_prompt(messages: list[dict]) -> str:
    """The text of the last user message (the megaservice puts the RAG prompt there)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return content_text(messages[-1].get("content")) if messages else ""


def generate(prompt: str, max_tokens: int | None, stop: list[str]) -> tuple[list[str], str]:
    """The answer's tokens and finish reason: "length" when `max_tokens` cut it, else "stop"."""
    text = answer(prompt)
    for marker in stop:
        if marker and marker in text:
            text = text[: text.index(marker)]
    pieces = tokens(text)
    if max_tokens is not None and len(pieces) > max_tokens:
        return pieces[:max_tokens], "length"
    return pieces, "stop"
