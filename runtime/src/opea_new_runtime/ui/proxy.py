"""The web UI's same-origin proxy: a browser's request passed to the megaservice or a node, its answer streamed back.

The page calls the UI's own origin on the real services' paths (so it works the same
behind compose's front door, which routes those paths to the services themselves);
`Proxy.forward` sends the method, the query, the body (read whole, at most `limit`
bytes: larger is a 413 before anything is sent) and the Content-Type, Accept and
Authorization headers, and answers the upstream's status, headers (less hop-by-hop
ones) and body as the upstream sends it, chunk by chunk: a chat answer streams
through token by token. The upstream response is closed when the stream ends,
fails or the browser goes away.

Failures are JSON in the megaservice's error shape, naming the node (or "megaservice"):
    502 {"error": {"node", "status": 502, "detail": "the UI cannot reach <node> at host:port (<reason>)"}}
    504 the same when it does not answer in time; 413 for a body past the limit.
A failure after the answer started cannot change its status: an event stream gets an
error event (`data: {"error": ...}`, as the megaservice sends one), any other is cut short.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

logger = logging.getLogger("opea_new_runtime.ui")

MIB = 1024 * 1024
MAX_BODY_BYTES = 16 * MIB  # what the megaservice and the services accept (jsonbody.MAX_BODY_BYTES)
MAX_UPLOAD_BYTES = 64 * MIB  # dataprep's uploads
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "authorization")
# Hop-by-hop (RFC 9110 7.6.1) and what this server sets itself: never passed back.
DROPPED_RESPONSE_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "date", "server",
})


def error_body(node: str | None, status: int, detail: str) -> dict[str, Any]:
    """The megaservice's error document: {"error": {"node", "status", "detail"}}."""
    return {"error": {"node": node, "status": status, "detail": detail}}


def failure(node: str | None, status: int, detail: str) -> JSONResponse:
    return JSONResponse(error_body(node, status, detail), status_code=status)


@dataclass(frozen=True)
class Upstream:
    """Where a proxied request goes: the node's spec name (or "megaservice"), its host and port."""

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, path: str, query: str = "") -> httpx.URL:
        # Built from parts: whatever the path holds, the request goes to this host and port.
        return httpx.URL(scheme="http", host=self.host, port=self.port, path="/" + path.lstrip("/"),
                         query=query.encode("latin-1"))


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, whole; BodyTooLarge past `limit` bytes (a declared length is checked first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class Proxy:
    """Forwards requests on one httpx.AsyncClient (its lifetime is the app's)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def forward(self, request: Request, upstream: Upstream, path: str, *,
                      limit: int = MAX_BODY_BYTES) -> Response:
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return failure(upstream.name, 413, f"the body is larger than {limit} bytes (what the UI passes "
                                               f"to {upstream.name})")
        headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
        headers["accept-encoding"] = "identity"  # passed through as it comes: nothing to decode or re-encode
        outgoing = self.client.build_request(request.method, upstream.url(path, request.url.query),
                                             headers=headers, content=body)
        try:
            answer = await self.client.send(outgoing, stream=True)
        except httpx.TimeoutException as error:
            return self._failed(upstream, 504, f"{upstream.name} did not answer the UI in time at "
                                               f"{upstream.address} ({reason(error)})")
        except httpx.HTTPError as error:
            return self._failed(upstream, 502, f"the UI cannot reach {upstream.name} at {upstream.address} "
                                               f"({reason(error)})")
        kept = {name: value for name, value in answer.headers.multi_items()
                if name.lower() not in DROPPED_RESPONSE_HEADERS}
        return StreamingResponse(self._relay(upstream, answer), status_code=answer.status_code, headers=kept)

    @staticmethod
    def _failed(upstream: Upstream, status: int, detail: str) -> JSONResponse:
        logger.warning("%s", detail)
        return failure(upstream.name, status, detail)

    @staticmethod
    async def _relay(upstream: Upstream, answer: httpx.Response) -> AsyncIterator[bytes]:
        """The upstream's body as it arrives; closed however the stream ends (also when the browser left)."""
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        except httpx.HTTPError as error:
            timeout = isinstance(error, httpx.TimeoutException)
            detail = (f"{upstream.name} stopped answering the UI in time at {upstream.address}" if timeout
                      else f"the UI lost {upstream.name} at {upstream.address}") + f" ({reason(error)})"
            logger.warning("%s", detail)
            if answer.headers.get("content-type", "").startswith("text/event-stream"):
                event = error_body(upstream.name, 504 if timeout else 502, detail)
                yield f"\n\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
        finally:
            with anyio.CancelScope(shield=True):  # also when the browser went away and the task is cancelled
                await answer.aclose()


def reason(error: httpx.HTTPError) -> str:
    """What went wrong, in a few words: the exception's message, else its type."""
    text = str(error).strip()
    return text or type(error).__name__
