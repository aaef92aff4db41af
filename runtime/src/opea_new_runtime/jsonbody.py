"""Request bodies parsed strictly, in one place: what the megaservice and every microservice accept as JSON.

Python's `json` (and so FastAPI) accepts more than JSON, and some of what it accepts
breaks later, as a 500: `NaN`, `Infinity` and `1e999` (an infinite float) cannot be
answered as JSON; a lone surrogate (`"\\ud800"`) cannot be encoded as UTF-8; a body
nested thousands deep or an integer of thousands of digits exhausts the recursion or
int-conversion limits. `loads` refuses all of them with `BodyError` naming what is wrong:

    standard JSON only (RFC 8259)  no NaN / Infinity / -Infinity, no number out of float range
    UTF-8                          the body decodes as UTF-8 and no string holds a lone surrogate
    MAX_DEPTH = 64                 arrays and objects nested at most 64 deep
    MAX_INTEGER_DIGITS = 100       integers of at most 100 digits
    MAX_BODY_BYTES = 16 MiB        bodies of at most 16 MiB (the megaservice's and services' answer: 413)

An integer is any JSON number without a fraction, `10.0` too, as JSON Schema says:
schemas of strict pydantic models type their counts `Integer` / `PositiveInteger`
(from here) so that what their OpenAPI document calls an integer is what they take.

The megaservice parses its body with `loads` (a `BodyError` is its 400). A microservice's
app (service.create_app) has the ASGI middleware `StrictJSONBodies` in front of every
route: it reads a JSON request body (no content type, `application/json` or
`application/*+json`, as FastAPI decides), checks it with `loads` and answers a bad
one itself with 422 in FastAPI's own validation-error shape (`{"detail": [{"type":
"json_invalid", "loc": ["body", position], "msg", "input", "ctx": {"error"}}]}`, the
HTTPValidationError every route's OpenAPI declares), or passes the same bytes on.
"""

from __future__ import annotations

import email.message
import json
import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "MAX_INTEGER_DIGITS", "BodyError", "Integer", "PositiveInteger",
           "StrictJSONBodies", "integral", "is_json", "loads", "read_body"]

MAX_DEPTH = 64
MAX_INTEGER_DIGITS = 100
MAX_BODY_BYTES = 16 * 1024 * 1024


class BodyError(ValueError):
    """The body is not JSON this runtime accepts; `detail` says why, `position` where (a character offset)."""

    def __init__(self, detail: str, position: int = 0, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.position = position
        self.status = status


def integral(value: Any) -> Any:
    """10.0 → 10 (an integer to JSON Schema); anything else as it is, for the field's own validation."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(integral)]
PositiveInteger = Annotated[int, Field(gt=0), BeforeValidator(integral)]


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (a non-standard number)")


def _integer(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer of {digits} digits is too long (at most {MAX_INTEGER_DIGITS})")
    return int(text)


def loads(body: bytes | str) -> Any:
    """The JSON document in `body`, or BodyError (see the module docstring for what is refused)."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyError(f"the body is larger than {MAX_BODY_BYTES} bytes", status=413)
    if isinstance(body, (bytes, bytearray)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise BodyError(f"the body is not UTF-8: {error.reason} at byte {error.start}", error.start) from None
    else:
        text = body
    try:
        document = json.loads(text, parse_constant=_constant, parse_int=_integer)
    except json.JSONDecodeError as error:
        raise BodyError(f"the body is not JSON: {error.msg} (line {error.lineno} column {error.colno})",
                        error.pos) from None
    except ValueError as error:  # from the parse_* hooks
        raise BodyError(f"the body is not standard JSON: {error}") from None
    except RecursionError:  # far deeper than MAX_DEPTH: the parser's own limit (about 1000) stopped it
        raise BodyError(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    _check(document)
    return document


def _check(document: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH, numbers out of float range and strings with a lone surrogate.

    One pass, level by level (no recursion): level d holds the values inside d arrays or objects.
    """
    level = [document]
    depth = 0
    while level:
        below: list[Any] = []
        for value in level:
            if isinstance(value, str):
                _check_text(value)
            elif isinstance(value, float):
                if not math.isfinite(value):
                    raise BodyError(f"the number {value} is out of range: not a finite float, so not JSON")
            elif isinstance(value, list):
                below.extend(value)
            elif isinstance(value, dict):
                for key in value:
                    _check_text(key)
                below.extend(value.values())
            else:
                continue
            if depth >= MAX_DEPTH and isinstance(value, (list, dict)):
                raise BodyError(f"the body is nested deeper than {MAX_DEPTH} levels")
        level = below
        depth += 1


def _check_text(string: str) -> None:
    """A lone surrogate cannot be written as UTF-8 again: refuse it here rather than fail answering."""
    if not string.isascii():
        try:
            string.encode("utf-8")
        except UnicodeEncodeError as error:
            code = ord(string[error.start])
            raise BodyError(f"a string holds a lone surrogate (U+{code:04X}), which is not text") from None


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this content type as JSON (none, application/json, application/*+json)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


class StrictJSONBodies:
    """ASGI middleware: a JSON request body is checked by `loads` before the app sees it (module docstring).

    A bad body is answered 422 in FastAPI's validation-error shape (413 when too large); a good one
    reaches the app byte for byte. Requests without a body, or with a non-JSON content type, pass untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if not is_json(content_type):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
            if body is None:  # the client went away
                return
            if body:
                loads(body)
        except BodyError as error:
            await _refuse(send, error)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


async def read_body(receive: Receive) -> bytes | None:
    """An ASGI request's body, read whole; None if the client went away; BodyError 413 past MAX_BODY_BYTES.

    Reading stops at the first byte too many: an oversized body is never held in memory.
    """
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(f"the body is larger than {MAX_BODY_BYTES} bytes", status=413)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _refuse(send: Send, error: BodyError) -> None:
    status = 422 if error.status == 400 else error.status
    problem = {"type": "json_invalid", "loc": ["body", error.position], "msg": f"JSON decode error: {error.detail}",
               "input": {}, "ctx": {"error": error.detail}}
    content = json.dumps({"detail": [problem]}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
    await send({"type": "http.response.body", "body": content})
