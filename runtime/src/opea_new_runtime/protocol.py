"""The megaservice's protocols: what a client sends, what it gets back, and how failures look.

chat  An OpenAI-style chat request in: {"messages": str | [{"role", "content"}],
      "stream": false, "max_tokens"?, "temperature"?, ...}. Out: a ChatCompletion, or
      (stream: true) an SSE stream ending `data: [DONE]` of `chat.completion.chunk` events,
      or of OPEA's `data: b'token'` events (MEGA_SERVICE_STREAM_FORMAT=opea).
raw   Any JSON object in, used as the initial inputs of the flow. Out: the output of
      the terminal node that ran, or {node name: output} when several ran.

A failing node answers 502 (504 when it timed out), a bad request 4xx, both with
the body {"error": {"node", "status", "detail"}}: `node` is the failing node's spec
name (null for a bad request), `status` the HTTP status the node answered (null
when it did not answer at all). On the OpenAI-compatible path
(/v1/chat/completions) the same error also carries OpenAI's fields (`message`,
`type`, `param`, `code`), so OpenAI's SDKs raise it with its message.

A chat answer's `usage` is the llm node's own when it reports one, else counted
(`words`, the pieces a synthesised stream is cut into); its `finish_reason` is
the node's (`length` when max_tokens cut it short), else `stop`. A streamed
answer ends with a usage chunk when the request asks for it
(`stream_options: {"include_usage": true}`).

Streams from llm/lvm nodes are read whatever their format (`StreamDecoder`):
OpenAI chat or completion chunks, OPEA's `data: b'...'`, TGI's {"token": {"text"}},
plain `data: text`, or a single JSON document, and re-emitted as OpenAI chunks.
"""

from __future__ import annotations

import ast
import codecs
import json
import re
import time
import uuid
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, ValidationError, model_validator

from .jsonbody import PositiveInteger as PositiveInt

MAX_DETAIL = 2000
DONE = "data: [DONE]\n\n"
SSE_FIELDS = ("data:", "event:", "id:", "retry:", ":")
RUNTIME_SUFFIX = "/MicroService"


def spec_name(node: str) -> str:
    """A node's name as written in the spec: comps calls it `name/MicroService`."""
    return node[: -len(RUNTIME_SUFFIX)] if node.endswith(RUNTIME_SUFFIX) else node


# ---------------------------------------------------------------- errors


class NodeError(Exception):
    """A node failed: it answered an error status, timed out or could not be reached."""

    def __init__(self, node: str | None, status: int | None, detail: str, *, timeout: bool = False) -> None:
        super().__init__(f"{node}: {detail}" if node else detail)
        self.node = node
        self.status = status
        self.detail = detail[:MAX_DETAIL]
        self.timeout = timeout

    @property
    def http_status(self) -> int:
        """What the megaservice answers: 504 for a timeout, else 502."""
        return 504 if self.timeout else 502

    def body(self) -> dict[str, Any]:
        return {"error": {"node": self.node, "status": self.status, "detail": self.detail}}

    @classmethod
    def from_exception(cls, node: str, error: BaseException) -> NodeError:
        """Name the node and keep what its failure says, whatever raised it (aiohttp, lite, requests, ...)."""
        if isinstance(error, NodeError):
            return error
        if isinstance(error, TimeoutError):  # asyncio's, aiohttp's and lite's timeouts all are
            return cls(node, None, f"no answer in time ({str(error) or type(error).__name__})", timeout=True)
        status = getattr(error, "status", None)
        if isinstance(status, int):  # ServiceError, aiohttp.ClientResponseError, lite's ResponseError
            message = getattr(error, "detail", None) or getattr(error, "message", None)
            return cls(node, status, str(message or f"HTTP {status}"))
        if isinstance(error, (aiohttp.ClientConnectionError, OSError)):  # refused, reset, closed mid-answer
            return cls(node, None, f"connection failed: {error}")
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError, aiohttp.ContentTypeError)):
            return cls(node, None, f"the answer is not JSON: {error}")
        return cls(node, None, f"{type(error).__name__}: {error}")


class ServiceError(Exception):
    """A node answered an error status; `detail` is the start of its answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class RequestError(Exception):
    """The client's request is not valid (answered 4xx)."""

    def __init__(self, detail: str, status: int = 422, node: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail[:MAX_DETAIL]
        self.status = status
        self.node = node  # raw protocol: the entry node that refused the request as it came

    def body(self) -> dict[str, Any]:
        return {"error": {"node": self.node, "status": self.status, "detail": self.detail}}


async def raise_for_status(response: Any) -> None:
    """Raise ServiceError for an error status, with the start of the service's answer as detail.

    `response` is an aiohttp or a lite answer: both have `status`, `reason` and `text()`.
    """
    if response.status < 400:
        return
    try:
        detail = (await response.text(errors="replace"))[:MAX_DETAIL]
    except Exception:  # the answer broke off: the status says enough
        detail = ""
    raise ServiceError(response.status, detail.strip() or response.reason or f"HTTP {response.status}")


def validation_detail(error: ValidationError) -> str:
    """`messages: Field required; stream: Input should be a valid boolean`."""
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        problems.append(f"{where}: {problem['msg']}" if where else problem["msg"])
    return "; ".join(problems)


# ---------------------------------------------------------------- chat requests

# LLMParams fields a chat request may set (the others keep the runtime's defaults).
LLM_PARAMETERS = (
    "model",
    "max_tokens",
    "max_new_tokens",
    "top_k",
    "top_p",
    "typical_p",
    "temperature",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "language",
    "chat_template",
)


NONBLANK = r"\S"  # text with something in it (Python's \s; the OpenAPI pattern is checked with Python's re too)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: str = "user"
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: [{"type": "text", "text": ...}]
            return " ".join(part["text"] for part in self.content
                            if part.get("type", "text") == "text" and isinstance(part.get("text"), str))
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ChatRequest(BaseModel):
    """An OpenAI-style chat request; unknown OpenAI fields (n, user, ...) are accepted and ignored.

    Strict (no "1" for a number, no 0 for a boolean): what its OpenAPI schema says is what it takes,
    the rule below included (`openapi_schema`).
    """

    model_config = ConfigDict(extra="allow", strict=True)

    messages: str | list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    model: str | None = None
    max_tokens: PositiveInt | None = None
    max_new_tokens: PositiveInt | None = None
    top_k: PositiveInt | None = None
    top_p: NonNegativeFloat | None = None
    typical_p: NonNegativeFloat | None = None
    temperature: NonNegativeFloat | None = None
    frequency_penalty: NonNegativeFloat | None = None
    presence_penalty: NonNegativeFloat | None = None
    repetition_penalty: NonNegativeFloat | None = None
    language: str | None = None
    chat_template: str | None = None
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _has_a_prompt(self) -> ChatRequest:
        if not re.search(NONBLANK, self.prompt()):
            raise ValueError("messages: the request has no user message with text")
        return self

    def prompt(self) -> str:
        """The text the flow starts from: the last user message with text (or the whole string)."""
        if isinstance(self.messages, str):
            return self.messages
        for message in reversed(self.messages):
            if message.role == "user" and re.search(NONBLANK, message.text()):
                return message.text()
        return ""

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def llm_parameters(self) -> dict[str, Any]:
        """Keyword arguments for LLMParams: what the client set, plus `stream`."""
        values = {key: getattr(self, key) for key in LLM_PARAMETERS if getattr(self, key) is not None}
        values["stream"] = self.stream
        return values

    @classmethod
    def openapi_schema(cls) -> dict[str, Any]:
        """The request's JSON schema, self-contained, with the rule `_has_a_prompt` checks written out."""
        schema = _inline(cls.model_json_schema())
        part = {"type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string",
                "pattern": NONBLANK}}, "required": ["text"]}
        prompt = {"type": "object", "properties": {"role": {"const": "user"}, "content": {"anyOf": [
            {"type": "string", "pattern": NONBLANK}, {"type": "array", "contains": part}]}}, "required": ["content"]}
        schema["properties"]["messages"] = {"anyOf": [
            {"type": "string", "pattern": NONBLANK},
            {"type": "array", "items": _inline(ChatMessage.model_json_schema()), "contains": prompt},
        ]}
        return schema


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema without $defs: each reference replaced by what it names (no cycles here)."""
    definitions = schema.pop("$defs", {})

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            if "$ref" in value:
                return resolve(definitions[value["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    return resolve(schema)


def parse_chat_request(body: Any) -> ChatRequest:
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as error:
        raise RequestError(validation_detail(error)) from None


def parse_raw_request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, not {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- answers


def text_of(output: Any) -> str:
    """The answer text in a node's output: GeneratedDoc/TextDoc `text`, a ChatCompletion, ..."""
    if isinstance(output, str):
        return output
    if not isinstance(output, dict):
        return ""
    text = output.get("text")
    if isinstance(text, str):
        return text
    if isinstance(text, list) and all(isinstance(item, str) for item in text):
        return "\n".join(text)
    choices = output.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message") or choice.get("delta") or {}
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
        if isinstance(choice.get("text"), str):
            return choice["text"]
    for key in ("answer", "content", "response", "generated_text"):
        if isinstance(output.get(key), str):
            return output[key]
    return ""


class ChatAnswer:
    """Builds the ChatCompletion and the stream events of one answer.

    Streams are OpenAI `chat.completion.chunk` events by default; with `stream_format="opea"`,
    the events OPEA's own megaservices send (`data: b'token'`, a Python bytes literal) that
    OPEA's UIs read. Both end with `data: [DONE]`.
    """

    def __init__(self, model: str, stream_format: str = "openai") -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.stream_format = stream_format

    def completion(self, content: str, *, finish_reason: str = "stop", usage: dict[str, int] | None = None
                   ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
            ],
            "usage": usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    def usage_chunk(self, usage: dict[str, int]) -> str:
        """The last event of a stream that asked for `include_usage`: no choices, the usage (none in OPEA's format)."""
        if self.stream_format == "opea":
            return ""
        event = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "choices": [], "usage": usage}
        return f"data: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"

    def chunk(self, content: str | None = None, *, first: bool = False, finish: bool = False,
              finish_reason: str = "stop") -> str:
        """One stream event; "" when the format has nothing to send for it (OPEA has no role or finish events)."""
        if self.stream_format == "opea":
            return f"data: {content.encode('utf-8')!r}\n\n" if content else ""
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if content is not None:
            delta["content"] = content
        event = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason if finish else None}],
        }
        return f"data: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls", "function_call")


def finish_reason_of(output: Any) -> str | None:
    """The finish_reason of a node's OpenAI-style answer (or chunk), if it gives a known one."""
    choices = output.get("choices") if isinstance(output, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        if reason in FINISH_REASONS:
            return reason
    return None


def usage_of(output: Any) -> dict[str, int] | None:
    """The token usage a node's OpenAI-style answer reports, if it reports a whole one."""
    usage = output.get("usage") if isinstance(output, dict) else None
    if not isinstance(usage, dict):
        return None
    counts = {key: usage.get(key) for key in ("prompt_tokens", "completion_tokens")}
    if not all(type(value) is int and value >= 0 for value in counts.values()):
        return None
    return {**counts, "total_tokens": counts["prompt_tokens"] + counts["completion_tokens"]}


def counted_usage(prompt: str, completion: str) -> dict[str, int]:
    """Usage counted here, for a node that reports none: words as `words` cuts them."""
    prompt_tokens, completion_tokens = len(words(prompt)), len(words(completion))
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def openai_error_body(error: NodeError | RequestError) -> dict[str, Any]:
    """The error in OpenAI's shape (what its SDKs read), still naming the node and its status."""
    body = error.body()["error"]
    if isinstance(error, RequestError):
        kind, code = "invalid_request_error", None
    elif error.timeout:
        kind, code = "timeout", "node_timeout"
    else:
        kind, code = ("upstream_error", "node_failed") if error.node else ("server_error", None)
    message = f"{error.node}: {error.detail}" if error.node else error.detail
    return {"error": {"message": message, "type": kind, "param": None, "code": code, **body}}


def error_event(error: NodeError) -> str:
    """A failure after the stream started: an SSE event with the error body (then `data: [DONE]`)."""
    return f"data: {json.dumps(error.body(), ensure_ascii=False)}\n\n"


def words(text: str) -> list[str]:
    """A text cut into tokens for a synthesised stream; joined back they give the text."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


# ---------------------------------------------------------------- reading streams


class StreamError(Exception):
    """The stream itself reported an error event."""


class StreamDecoder:
    """Text pieces from an LLM's streamed answer, whatever its format.

    `feed(chunk)` returns the pieces completed by a chunk (bytes or str, cut
    anywhere); `close()` those left at the end. `done` tells whether the stream
    sent `data: [DONE]`, `seen_data` whether it sent anything at all.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._mode: str | None = None  # sse | json | text
        self.done = False
        self.seen_data = False
        self.finish_reason: str | None = None  # the last one an OpenAI-style event gave
        self.usage: dict[str, int] | None = None  # the usage an event reported

    def feed(self, chunk: bytes | str) -> list[str]:
        text = self._utf8.decode(chunk) if isinstance(chunk, (bytes, bytearray)) else chunk
        if not text:
            return []
        self.seen_data = True
        self._buffer += text
        if self._mode is None:
            start = self._buffer.lstrip()
            if not start:
                return []
            if start[0] in "{[":
                self._mode = "json"
            elif start.startswith(SSE_FIELDS):
                self._mode = "sse"
            elif any(field.startswith(start) for field in SSE_FIELDS):
                return []  # too short to tell yet
            else:
                self._mode = "text"
        if self._mode == "json":
            return []
        if self._mode == "text":
            piece, self._buffer = self._buffer, ""
            return [piece]
        self._buffer = self._buffer.replace("\r\n", "\n").replace("\r", "\n")
        *events, self._buffer = self._buffer.split("\n\n")
        return [piece for event in events for piece in self._event(event)]

    def close(self) -> list[str]:
        rest = self._buffer + self._utf8.decode(b"", final=True)
        self._buffer = ""
        if not rest.strip():
            return []
        if self._mode == "json":
            try:
                document = json.loads(rest)
            except json.JSONDecodeError:
                return [rest]
            self._raise_if_error(document)
            self._note(document)
            self.done = True
            return [text_of(document)]
        if self._mode in ("text", None):
            return [rest]
        return self._event(rest.replace("\r\n", "\n"))

    def _event(self, event: str) -> list[str]:
        data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
        if not data:
            return []
        payload = "\n".join(data)
        if payload.strip() == "[DONE]":
            self.done = True
            return []
        piece = self._payload_text(payload)
        return [piece] if piece else []

    def _payload_text(self, payload: str) -> str:
        stripped = payload.strip()
        if stripped[:2] in ("b'", 'b"'):  # OPEA: data: b'token' (a Python bytes literal)
            try:
                value = ast.literal_eval(stripped)
            except (ValueError, SyntaxError):  # comps' own refusal stream does not escape quotes
                return stripped[2:-1] if stripped[-1:] == stripped[1] else payload
            return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else payload
        if stripped[:1] in ("{", '"'):
            try:
                document = json.loads(stripped)
            except json.JSONDecodeError:
                return payload
            if isinstance(document, str):
                return document
            self._raise_if_error(document)
            self._note(document)
            token = document.get("token") if isinstance(document, dict) else None
            if isinstance(token, dict) and isinstance(token.get("text"), str):  # TGI
                return "" if token.get("special") else token["text"]
            return text_of(document)
        return payload

    def _note(self, document: Any) -> None:
        self.finish_reason = finish_reason_of(document) or self.finish_reason
        self.usage = usage_of(document) or self.usage

    @staticmethod
    def _raise_if_error(document: Any) -> None:
        if isinstance(document, dict) and document.get("error") and not document.get("choices"):
            error = document["error"]
            detail = (error.get("detail") or error.get("message")) if isinstance(error, dict) else error
            raise StreamError(str(detail or error))
