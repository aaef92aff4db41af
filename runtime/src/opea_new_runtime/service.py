"""A microservice of an opea-new project: its FastAPI app and its server.

A generated service holds what is its own (its `Service` description, routes,
schemas, stub and backend) and gets the rest from here, the same in every service:

    create_app(service, router, create_model)   the app: the model is created at startup and closed at
                                                shutdown; GET /v1/health_check and /health (liveness, and
                                                which model answers); GET /metrics (Prometheus: requests
                                                and latency per route); BackendError → 502, or 504;
                                                Refused → its status with {"detail"}
    serve(app)                                  `python -m app`: uvicorn until Ctrl-C or SIGTERM, gracefully

Request bodies are strict JSON (opea_new_runtime.jsonbody, the middleware `StrictJSONBodies`
in front of every route): NaN, Infinity, numbers out of float range, lone surrogates,
nesting deeper than 64 levels and integers of more than 100 digits are a 422 in FastAPI's
validation-error shape ({"detail": [{"type": "json_invalid", "loc", "msg", "ctx": {"error"}}]}),
bodies over 16 MiB a 413, before any route runs. Every route of the service's router
declares in its OpenAPI what it may answer besides its own result: 413, 422 (FastAPI's),
and 502/504 `{"detail", "backend_status"}` (BackendError).

Environment (read by `load_settings`, checked before the server starts):

    HOST / PORT          where it listens (default 127.0.0.1 / the service's port; images set HOST=0.0.0.0)
    LOG_LEVEL            uvicorn's log level (default info)
    LOGFLAG              OPEA's switch: `true` means LOG_LEVEL=debug unless LOG_LEVEL is set
    GRACEFUL_TIMEOUT     seconds requests in flight may take to finish on SIGTERM (default 10)
    BACKEND_TIMEOUT      seconds a real backend may stay silent before the request is a 504 (default 300)
    MAX_REQUEST_BYTES    the largest request body, such as a dataprep upload (default 100 MiB; JSON: 16 MiB)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import access
from .jsonbody import MAX_BODY_BYTES, StrictJSONBodies

MAX_REQUEST_BYTES = 100 * 1024 * 1024

__all__ = ["BackendError", "Refused", "Service", "Settings", "SettingsError", "create_app", "load_settings", "serve"]


@dataclass(frozen=True)
class Service:
    """What a microservice is, as the pipeline spec fixed it."""

    name: str  # its name in the spec
    project: str
    type: str  # its comps ServiceType member, lower-case
    port: int  # where it listens unless PORT says otherwise
    endpoint: str  # the route of its typed endpoint


class BackendError(Exception):
    """The model behind the service failed; `status` is its HTTP status, if it answered at all.

    The app answers it as `{"detail", "backend_status"}` with status 502, or 504
    when it timed out, so the megaservice can name this service in its own error.
    Raise it from your own backend too.
    """

    def __init__(self, detail: str, *, status: int | None = None, timed_out: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.timed_out = timed_out

    @property
    def http_status(self) -> int:
        return 504 if self.timed_out else 502


class Refused(Exception):
    """A request the service will not serve as it is: answered `{"detail": message}` with `status`.

    A 4xx says what is wrong with the request (a file of an unknown format: 415, a
    name already taken: 409); 503 says that something the service needs (its
    vector store) is down, and the service stays up to answer once it is back.
    """

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


# ---------------------------------------------------------------- settings


class SettingsError(ValueError):
    """The environment has a value the service cannot use; the message is one line naming each."""


class Settings(BaseSettings):
    """The environment a microservice reads (see the module docstring). `port` None: the service's own."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    host: str = Field("127.0.0.1", min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    graceful_timeout: float = Field(10.0, ge=0)
    backend_timeout: float = Field(300.0, gt=0)
    logflag: bool = False
    max_request_bytes: int = Field(MAX_REQUEST_BYTES, ge=1)

    @field_validator("logflag", mode="before")
    @classmethod
    def _empty_logflag_is_off(cls, value: Any) -> Any:
        # OPEA's compose files pass LOGFLAG=${LOGFLAG} through: unset arrives as an empty string.
        return False if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _logflag_means_debug(self) -> Settings:
        if self.logflag and "log_level" not in self.model_fields_set:
            self.log_level = "debug"
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


def load_settings(default_port: int | None = None) -> Settings:
    """The settings from the environment, `port` defaulting to `default_port`; SettingsError if a value is bad."""
    try:
        settings = Settings()
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, problem['loc'])).upper()}={problem.get('input')!r}: {problem['msg']}"
                    for problem in error.errors()]
        raise SettingsError("bad environment: " + "; ".join(problems)) from None
    if settings.port is None and default_port is not None:
        settings = settings.model_copy(update={"port": default_port})
    return settings


# ---------------------------------------------------------------- the app


def create_app(service: Service, router: APIRouter, create_model: Callable[[], Any]) -> FastAPI:
    """The service's app; `create_model()` is called at startup, so the model reads the environment of that moment.

    A model is any object with `name: str` and `async aclose()`, plus what the
    family's routes call (`request.app.state.model`).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.model = create_model()
        try:
            yield
        finally:
            await app.state.model.aclose()

    app = FastAPI(
        title=service.name,
        description=f"The {service.type} microservice of {service.project}, generated by opea-new.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(BackendError)
    async def backend_failed(request: Request, error: BackendError) -> JSONResponse:
        return JSONResponse({"detail": error.detail, "backend_status": error.status}, status_code=error.http_status)

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.get("/v1/health_check")
    @app.get("/health")
    async def health(request: Request) -> dict[str, str]:
        return {"status": "healthy", "service": service.name, "type": service.type,
                "model": request.app.state.model.name}

    registry = CollectorRegistry(auto_describe=True)  # the app's own: apps in one process never share counts

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router, responses=ERROR_RESPONSES)
    app.add_middleware(StrictJSONBodies)
    app.add_middleware(LimitedBodies, limit=_request_limit())
    access.protect(app, os.environ, refusal=lambda message: {"detail": message})  # before a body is read
    app.add_middleware(Metrics, registry=registry)  # the outermost: refused requests are counted too
    return app


_BACKEND_FAILURE = {"application/json": {"schema": {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "backend_status": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
    "required": ["detail", "backend_status"],
}}}
_BODY_REFUSED = {"application/json": {"schema": {
    "type": "object", "properties": {"detail": {"type": "array", "items": {"type": "object"}}}, "required": ["detail"],
}}}
# What every route of a service's router may answer besides its own result (FastAPI adds its 422 itself).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": f"The request body is larger than {MAX_BODY_BYTES} bytes", "content": _BODY_REFUSED},
    502: {"description": "The model behind the service failed (BackendError)", "content": _BACKEND_FAILURE},
    504: {"description": "The model behind the service did not answer in time (BackendError)",
          "content": _BACKEND_FAILURE},
}


def _request_limit() -> int:
    try:
        return load_settings().max_request_bytes
    except SettingsError:  # serve() refuses such an environment before it listens
        return MAX_REQUEST_BYTES


class LimitedBodies:
    """ASGI middleware: a request body larger than `limit` bytes is a 413, before it is read through.

    A Content-Length over the limit is refused at once; a body sent without one is
    counted as it arrives (an upload of any size never fills the disk or memory).
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": self._too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self._too_large)  # FastAPI answers it even while parsing a form
            return message

        await self.app(scope, counted, send)

    @property
    def _too_large(self) -> str:
        return f"the request body is larger than {self.limit} bytes (MAX_REQUEST_BYTES)"


class Metrics:
    """ASGI middleware: requests by method, route and status, and their duration (a stream's: until its end).

    Routes are labelled by their template (`/v1/items/{id}`), unknown paths as
    `unmatched`, so the number of series stays bounded.
    """

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("opea_service_requests", "Requests answered, by route and status",
                                ("method", "route", "status"), registry=registry)
        self.latency = Histogram("opea_service_request_duration_seconds", "Time to answer a request, by route",
                                 ("method", "route"), registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = _route_of(scope)
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")  # FastAPI's routes put themselves here when they match
    if route is None:
        app = scope.get("app")
        routes = getattr(getattr(app, "router", None), "routes", [])
        route = next((candidate for candidate in routes if candidate.matches(scope)[0] is Match.FULL), None)
    return getattr(route, "path", None) or "unmatched"


# ---------------------------------------------------------------- the server


def serve(app: FastAPI, service: Service | None = None) -> None:
    """Serve `app` with uvicorn until Ctrl-C or SIGTERM, then exit 0.

    uvicorn stops gracefully on either signal: it stops accepting connections,
    lets requests in flight finish (at most GRACEFUL_TIMEOUT seconds), closes the
    model's connections (the app's shutdown) and returns. A bad environment
    value is one line on stderr and exit status 2, before anything starts.
    """
    import uvicorn

    service = service or app.state.service
    try:
        settings = load_settings(service.port)
        access.load_keys(os.environ)
    except (SettingsError, access.KeysError) as error:
        print(f"{service.name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    # Once it has shut down, uvicorn raises the signal that stopped it again, under the handlers it found:
    # with these, a graceful stop exits 0 instead of dying of SIGTERM.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.graceful_timeout,
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
