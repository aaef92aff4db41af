"""Access control: API keys (bearer tokens) on what faces users, off until a key is set; CORS, closed until opened.

    API_KEYS            the keys, separated by commas or white space (from the environment: .env, a Secret)
    API_KEYS_FILE       or a file holding them, one or more per line, `#` starting a comment (a mounted secret)
    CORS_ALLOW_ORIGINS  origins whose pages may call from a browser, comma-separated (`*` for any); none by default

With a key set, every request needs `Authorization: Bearer <key>`, except the
health checks (OPEN_PATHS), the paths an app opens itself (`protect(...,
open_paths=, open_prefixes=)`: the web UI's pages) and CORS preflights; any other answers 401, with a
JSON body that says what was missing and `WWW-Authenticate: Bearer`. A key is
compared in constant time with every key (hmac.compare_digest), and is never
logged nor answered. A key shorter than MIN_KEY_LENGTH stops the start: it is
too easy to guess.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

OPEN_PATHS = frozenset({"/v1/health_check", "/v1/health", "/health", "/v1/health/ready"})
MIN_KEY_LENGTH = 16
SCHEME = "bearer"


class KeysError(ValueError):
    """API_KEYS or API_KEYS_FILE cannot be used; says which and why, never the key."""


def load_keys(environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The keys API_KEYS and API_KEYS_FILE hold (none: access is open)."""
    sources = [("API_KEYS", environ.get("API_KEYS", ""))]
    path = environ.get("API_KEYS_FILE", "").strip()
    if path:
        try:
            sources.append((f"API_KEYS_FILE ({path})", Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
            raise KeysError(f"API_KEYS_FILE {path} cannot be read: {reason}") from None
    keys: list[bytes] = []
    for source, text in sources:
        for number, line in enumerate(text.splitlines(), start=1):
            for key in re.split(r"[,\s]+", line.split("#", 1)[0]):
                if not key:
                    continue
                if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable():
                    where = f"{source}, line {number}" if source != "API_KEYS" else source
                    raise KeysError(f"{where}: a key must be at least {MIN_KEY_LENGTH} printable ASCII characters "
                                    "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
                keys.append(key.encode())
    return tuple(keys)


def cors_origins(environ: Mapping[str, str]) -> list[str]:
    return [origin.strip() for origin in environ.get("CORS_ALLOW_ORIGINS", "").split(",") if origin.strip()]


def protect(app: Any, environ: Mapping[str, str], refusal: Callable[[str], dict[str, Any]], *,
            open_paths: Iterable[str] = (), open_prefixes: Iterable[str] = ()) -> None:
    """Adds the key check (when a key is set) and CORS (when origins are given) to a Starlette app, outermost.

    `refusal(message)` is the body of a 401, in the app's own error shape. Besides the health checks,
    `open_paths` (exact paths) and the paths starting with one of `open_prefixes` need no key: what
    an app shows to anyone (the web UI's pages and static files). Keys that cannot be used close
    the app (every request a 503 that says why): `serve()` refuses to start on them, but an app served some
    other way must not run open.
    """
    try:
        keys = load_keys(environ)
    except KeysError as error:
        app.add_middleware(Closed, message=str(error), refusal=refusal)
        return
    if keys:
        app.add_middleware(RequireKey, keys=keys, refusal=refusal, open_paths=open_paths,
                           open_prefixes=open_prefixes)
    origins = cors_origins(environ)
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)


def offered_key(headers: list[tuple[bytes, bytes]]) -> bytes | None | str:
    """The bearer token of a request's headers; None without an Authorization header; a message if malformed."""
    values = [value for name, value in headers if name == b"authorization"]
    if not values:
        return None
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    if len(values) > 1 or scheme.lower() != SCHEME or not token.strip():
        return "send the key as one header: Authorization: Bearer <key>"
    return token.strip().encode("latin-1")


def valid(offered: bytes, keys: tuple[bytes, ...]) -> bool:
    # Every key is compared, so the time taken does not tell which one (or how much of one) matched.
    return sum(hmac.compare_digest(offered, key) for key in keys) > 0


async def answer(send: Callable, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


class Closed:
    """ASGI middleware: the keys given cannot be used, so nothing is answered but why (503)."""

    def __init__(self, app: Any, *, message: str, refusal: Callable[[str], dict[str, Any]]) -> None:
        self.app = app
        self.body = refusal(message)

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await answer(send, 503, self.body, [])


class RequireKey:
    """ASGI middleware: a valid bearer key on every HTTP request but health checks, open paths and CORS preflights."""

    def __init__(self, app: Any, *, keys: tuple[bytes, ...], refusal: Callable[[str], dict[str, Any]],
                 open_paths: Iterable[str] = (), open_prefixes: Iterable[str] = ()) -> None:
        self.app = app
        self.keys = keys
        self.refusal = refusal
        self.open_paths = OPEN_PATHS | frozenset(open_paths)
        self.open_prefixes = tuple(open_prefixes)

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or (bool(self.open_prefixes) and path.startswith(self.open_prefixes))

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        offered = offered_key(scope["headers"])
        if isinstance(offered, bytes) and valid(offered, self.keys):
            await self.app(scope, receive, send)
            return
        message = ("this endpoint needs an API key: send Authorization: Bearer <key>" if offered is None
                   else offered if isinstance(offered, str) else "the API key is not valid")
        await answer(send, 401, self.refusal(message), [(b"www-authenticate", b'Bearer realm="opea"')])
