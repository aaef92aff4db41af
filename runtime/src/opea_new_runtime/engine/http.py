"""A small pooled HTTP/1.1 client: how lite calls the nodes.

aiohttp's client spends about 0.2 ms of CPU on each call here, most of what a
megaservice costs per request; this one, asyncio protocols around httptools'
parser (llhttp, Node.js' parser), spends about a third of that. It does what a
megaservice needs and nothing more: JSON or bytes bodies; keep-alive
connections pooled per host (a connection the server closed while idle is
retried once on a new one); bodies read whole or streamed as they arrive; a
connect timeout and a read timeout (the longest silence). No proxies, cookies
or redirects: nodes are called directly.
"""

from __future__ import annotations

import asyncio
import json as json_module
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

KEEPALIVE_SECONDS = 4.0  # below uvicorn's 5 s, so the server rarely closes a connection we are about to reuse
HIGH_WATER = 256 * 1024  # bytes of an unread streamed body before reading from the socket pauses


class HTTPError(Exception):
    """Base of this client's errors."""


class ConnectError(HTTPError, ConnectionError):
    """The service could not be reached."""


class ServerDisconnectedError(HTTPError, ConnectionError):
    """The connection closed before the answer was complete; `answered`: after a byte of it arrived."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class ConnectTimeoutError(HTTPError, TimeoutError):
    """Connecting to the service took longer than the connect timeout (nothing was sent)."""


class ResponseError(HTTPError):
    """An error status (raise_for_status); `message` is the start of the service's answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}, message={message!r}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Timeout:
    connect: float | None = None
    read: float | None = None  # the longest silence: before the answer, or between two chunks of it

    @classmethod
    def of(cls, timeout: Any) -> Timeout:
        """A Timeout from this class, aiohttp's ClientTimeout (sock_connect / sock_read / total) or seconds."""
        if timeout is None or isinstance(timeout, Timeout):
            return timeout or cls()
        if isinstance(timeout, (int, float)):
            return cls(timeout, timeout)
        total = getattr(timeout, "total", None)
        connect = getattr(timeout, "sock_connect", None) or getattr(timeout, "connect", None) or total
        return cls(connect, getattr(timeout, "sock_read", None) or total)


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    path: bytes
    host_header: bytes
    tls: bool


class Client:
    """One per process: a pool of keep-alive connections per host, at most `limit_per_host` at once."""

    def __init__(self, *, limit_per_host: int = 512, timeout: Any = None) -> None:
        self.limit_per_host = limit_per_host
        self.timeout = Timeout.of(timeout)
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._slots: dict[tuple[str, int, bool], asyncio.Semaphore] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self.closed = False

    async def post(self, url: str, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Any = None,
    ) -> Response:
        """Send a request; the answer is returned once its headers arrived (read its body, then release it)."""
        if self.closed:
            raise HTTPError("the client is closed")
        target = self._target(url)
        body = _encode(json, data)
        head = _head(method, target, headers, len(body), json is not None)
        timeout = self.timeout if timeout is None else Timeout.of(timeout)
        key = (target.host, target.port, target.tls)
        slots = self._slots.get(key) or self._slots.setdefault(key, asyncio.Semaphore(self.limit_per_host))
        await slots.acquire()
        try:
            connection, reused = await self._connection(key, target, timeout)
            try:
                return await self._send(key, connection, slots, head + body, timeout)
            except ServerDisconnectedError as error:
                if not reused or error.answered:
                    raise
            # A kept-alive connection the server closed before reading the request: once more, on a new one.
            connection, _ = await self._connection(key, target, timeout, fresh=True)
            return await self._send(key, connection, slots, head + body, timeout)
        except BaseException:
            slots.release()
            raise

    async def _send(self, key: tuple, connection: _Connection, slots: asyncio.Semaphore, data: bytes,
                    timeout: Timeout) -> Response:
        try:
            return await connection.send(data, timeout, lambda: self._release(key, connection, slots))
        except BaseException:  # failed, timed out or cancelled half-way: this connection is done for
            connection.close()
            raise

    async def close(self) -> None:
        self.closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    # ------------------------------------------------------------ the pool

    async def _connection(self, key: tuple, target: _Target, timeout: Timeout,
                          fresh: bool = False) -> tuple[_Connection, bool]:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle and not fresh:
            connection = idle.pop()
            if connection.reusable(now):
                return connection, True
            connection.close()
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if target.tls else None
        try:
            async with asyncio.timeout(timeout.connect):
                _, connection = await loop.create_connection(
                    _Connection, target.host, target.port, ssl=tls, server_hostname=target.host if tls else None
                )
        except TimeoutError:
            raise ConnectTimeoutError(
                f"connecting to {target.host}:{target.port} took over {timeout.connect:g} s") from None
        except OSError as error:
            raise ConnectError(f"cannot connect to {target.host}:{target.port}: {error.strerror or error}") from error
        return connection, False

    def _release(self, key: tuple, connection: _Connection, slots: asyncio.Semaphore) -> None:
        slots.release()
        if connection.reusable(time.monotonic()) and not self.closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(connection)
        else:
            connection.close()

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HTTPError(f"not an http(s) URL: {url!r}")
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            default_port = port == (443 if tls else 80)
            host_header = parts.hostname if default_port else f"{parts.hostname}:{port}"
            target = _Target(parts.hostname, port, path.encode(), host_header.encode("idna"), tls)
            if len(self._targets) < 1024:  # the nodes are a fixed set; anything else is not cached
                self._targets[url] = target
        return target

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


class Response:
    """An answer: status and headers at once, the body read whole (`read`, `json`) or as it arrives."""

    def __init__(self, connection: _Connection, on_release: Callable[[], None]) -> None:
        self._connection = connection
        self._on_release: Callable[[], None] | None = on_release
        self.status: int = connection.parser.get_status_code()
        self.reason: str = connection.reason
        self.headers: dict[str, str] = connection.headers

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/octet-stream").split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        connection = self._connection
        if connection.complete and self._on_release is not None:  # the whole body is here (a small answer)
            chunks, connection._chunks, connection._buffered = connection._chunks, [], 0
            self.release()
        else:
            chunks = [chunk async for chunk in self.iter_chunks()]
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return (await self.read()).decode(encoding, errors)

    async def json(self, *, content_type: str | None = None, loads: Callable[[bytes], Any] = json_module.loads) -> Any:
        """The body as JSON, whatever its content type (`content_type` is accepted for aiohttp's signature)."""
        return loads(await self.read())

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives; the connection goes back to the pool at its end."""
        try:
            async for chunk in self._connection.body():
                yield chunk
        finally:
            self.release()

    def release(self) -> None:
        """Done with this answer: its connection is pooled if the body was read to the end, else closed."""
        if self._on_release is not None:
            on_release, self._on_release = self._on_release, None
            if not self._connection.complete:
                self._connection.close()
            on_release()

    close = release

    def __del__(self) -> None:
        if self._on_release is not None:  # never released (an abandoned stream): free its slot
            self.release()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.idle_since = time.monotonic()
        self.lost = False
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.complete = False
        self._keep_alive = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._started = False  # a byte of the answer arrived
        self._headers_done = False
        self._failure: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self._timeout = Timeout()

    # ------------------------------------------------------------ used by the client

    def reusable(self, now: float) -> bool:
        return (not self.lost and self.complete and self._keep_alive
                and now - self.idle_since < KEEPALIVE_SECONDS and not self.transport.is_closing())

    async def send(self, data: bytes, timeout: Timeout, on_release: Callable[[], None]) -> Response:
        self.reason, self.headers, self.complete, self._keep_alive = "", {}, False, False
        self._chunks, self._buffered, self._started, self._headers_done = [], 0, False, False
        self._failure, self._timeout = None, timeout
        if self.lost:
            raise ServerDisconnectedError("the connection was closed")
        self.transport.write(data)
        while not self._headers_done:
            await self._wait()
        return Response(self, on_release)

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunks, self._chunks, self._buffered = self._chunks, [], 0
                if self._paused:
                    self._paused = False
                    self.transport.resume_reading()
                for chunk in chunks:
                    yield chunk
            elif self.complete:
                return
            else:
                await self._wait()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    async def _wait(self) -> None:
        if self._failure is not None:
            raise self._failure
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._timeout.read):
                await self._waiter
        except TimeoutError:
            self.close()
            raise TimeoutError(f"no answer for {self._timeout.read:g} s") from None
        finally:
            self._waiter = None
        if self._failure is not None:
            raise self._failure

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._failure = ServerDisconnectedError(f"the answer is not valid HTTP: {error}", answered=True)
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.complete and self._failure is None:
            if self._headers_done and self._until_close():
                self.complete = True  # a body delimited by the end of the connection
            else:
                where = "while sending its answer" if self._started else "before answering"
                self._failure = ServerDisconnectedError(f"the server closed the connection {where}",
                                                        answered=self._started)
        self._wake()

    # ------------------------------------------------------------ httptools callbacks

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True
        self._keep_alive = self.parser.should_keep_alive()  # the parser forgets it once the message is done

    def _until_close(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")


def _encode(json: Any, data: bytes | str | None) -> bytes:
    if json is not None:
        return json_module.dumps(json, ensure_ascii=False).encode("utf-8")
    if data is None:
        return b""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _head(method: str, target: _Target, headers: Mapping[str, str] | None, length: int, is_json: bool) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), target.path), b"Host: " + target.host_header]
    names = set()
    for name, value in (headers or {}).items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise HTTPError(f"header {name!r} contains a line break")
        names.add(name.lower())
        lines.append(f"{name}: {value}".encode("latin-1"))
    if is_json and "content-type" not in names:
        lines.append(b"Content-Type: application/json")
    lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"
