"""The web UI's app: its pages, its JSON API, its health check and the proxy to the pipeline's services.

`create_app(project, environ)` is the FastAPI app; `serve()` is `python -m opea_new_runtime.ui`.
What each path answers is in this package's docstring (opea_new_runtime.ui).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import Field, PositiveFloat, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException

from .. import __version__, access, settings
from ..megaservice import OPENAI_ROUTE, READY_ROUTE, key_refusal
from ..nodes import Node
from ..run import Project, StackError
from .proxy import MAX_BODY_BYTES, MAX_UPLOAD_BYTES, Proxy, Upstream, error_body

HERE = Path(__file__).parent
STATIC = "/ui/static"
DEFAULT_PORT = 5173
HEALTH_PATHS = ("/v1/health", "/v1/health_check")
DATAPREP_PATHS = ("/v1/dataprep/ingest", "/v1/dataprep/get", "/v1/dataprep/delete")
JSON_PREFIXES = ("/ui/api/", "/v1/", STATIC + "/")  # a 404 there is JSON; elsewhere the error page


class UISettings(BaseSettings):
    """The UI's environment, each field read from the variable its alias names (and from nothing else)."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field("127.0.0.1", min_length=1, validation_alias="UI_HOST")
    port: int | None = Field(None, ge=1, le=65535, validation_alias="UI_PORT")
    timeout: PositiveFloat = Field(300.0, validation_alias="UI_TIMEOUT")
    connect_timeout: PositiveFloat = Field(10.0, validation_alias="UI_CONNECT_TIMEOUT")
    graceful_timeout: float = Field(10.0, ge=0, validation_alias="UI_GRACEFUL_TIMEOUT")
    mega_host: str = Field("127.0.0.1", min_length=1, validation_alias="MEGA_SERVICE_HOST_IP")
    mega_port: int | None = Field(None, ge=1, le=65535, validation_alias="MEGA_SERVICE_PORT")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", validation_alias="LOG_LEVEL")
    logflag: bool = Field(False, validation_alias="LOGFLAG")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   **other_sources: Any) -> tuple[Any, ...]:
        return (init_settings,)  # only the mapping load_settings() passes: create_app's `environ`

    @field_validator("port", "mega_port", "logflag", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: Any) -> Any:
        # compose passes VARIABLE=${VARIABLE} through: unset arrives as an empty string
        if isinstance(value, str) and not value.strip():
            return False if info.field_name == "logflag" else None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _logflag_means_debug(self) -> UISettings:
        if self.logflag and "log_level" not in self.model_fields_set:
            self.log_level = "debug"
        return self


def load_settings(environ: Mapping[str, str]) -> UISettings:
    """The UI's settings from `environ`; settings.SettingsError naming the variable when a value is bad."""
    names = [field.validation_alias for field in UISettings.model_fields.values()]
    return settings.load(UISettings, **{name: environ[name] for name in names if name in environ})


# ---------------------------------------------------------------- what the pages show


def describe(project: Project, environ: Mapping[str, str]) -> dict[str, Any]:
    """GET /ui/api/pipeline: the project as the pages draw it (also the pages' `project`)."""
    megaservice = project.megaservice
    sources = {source for source, _, _ in project.edges}
    try:
        required = bool(access.load_keys(environ))
    except access.KeysError:
        required = True  # the app is closed (503) anyway
    return {
        "name": megaservice.name,
        "description": megaservice.description,
        "endpoint": megaservice.endpoint,
        "protocol": megaservice.protocol,
        "ui_port": megaservice.ui_port,
        "runtime_version": __version__,
        "nodes": [node_dict(node, beside=node in project.beside) for node in project.services],
        "edges": [{"source": source, "target": target, "condition": condition}
                  for source, target, condition in project.edges],
        "terminals": [node.name for node in project.nodes if node.name not in sources],
        "dataprep": dataprep_of(project),
        "access": {"required": required},
    }


def node_dict(node: Node, *, beside: bool) -> dict[str, Any]:
    return {"name": node.name, "type": node.type, "port": node.port, "endpoint": node.endpoint,
            "image": node.image, "server": node.server, "model": node.model, "beside": beside,
            "health_path": node.health_path}


def dataprep_of(project: Project) -> str | None:
    """The dataprep service beside the flow (the first), whose API the documents page uses."""
    return next((node.name for node in project.beside if node.type == "dataprep"), None)


# ---------------------------------------------------------------- the app


def create_app(project: Project | None = None, environ: Mapping[str, str] = os.environ, *,
               templates: Path | str | None = None, static: Path | str | None = None) -> FastAPI:
    """The UI of `project` (default: the project at UI_PROJECT, else the current folder).

    `environ` gives the settings, the keys and where the megaservice and the nodes are;
    `templates` / `static` are other folders for the pages and their assets (default: this package's).
    A bad value raises settings.SettingsError; a folder that is no project, run.StackError.
    """
    project = project or Project.load(environ.get("UI_PROJECT") or os.getcwd())
    config = load_settings(environ)
    upstreams = {node.name: Upstream(node.name, *node.address(environ)) for node in project.services}
    megaservice = Upstream("megaservice", config.mega_host, config.mega_port or project.megaservice.port)
    pipeline = describe(project, environ)
    dataprep = pipeline["dataprep"]
    pages = Jinja2Templates(directory=str(templates or HERE / "templates"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
        async with httpx.AsyncClient(trust_env=False, timeout=timeout, follow_redirects=False) as client:
            app.state.proxy = Proxy(client)
            yield

    app = FastAPI(title=f"{project.megaservice.name} (web UI)", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)  # the UI's own paths are not an API for clients
    app.state.project = project

    def page(request: Request, name: str, kind: str, title: str, *, service: dict[str, Any] | None = None,
             message: str | None = None, status: int = 200) -> Response:
        context = {"project": pipeline, "page": kind, "title": title, "service": service, "static": STATIC}
        if message is not None:
            context["message"] = message
        return pages.TemplateResponse(request, name, context, status_code=status)

    def not_found(request: Request, message: str) -> Response:
        return page(request, "error.html", "error", "Not found", message=message, status=404)

    # ------------------------------------------------------------ pages

    @app.get("/")
    async def home(request: Request) -> Response:
        return page(request, "home.html", "home", "Pipeline")

    @app.get("/chat")
    async def chat(request: Request) -> Response:
        if project.megaservice.protocol != "chat":
            return not_found(request, "This pipeline speaks the raw protocol: try it on the raw page.")
        return page(request, "chat.html", "chat", "Chat")

    @app.get("/raw")
    async def raw(request: Request) -> Response:
        if project.megaservice.protocol != "raw":
            return not_found(request, "This pipeline speaks the chat protocol: try it on the chat page.")
        return page(request, "raw.html", "raw", "Raw request")

    @app.get("/services/{name}")
    async def service(request: Request, name: str) -> Response:
        node = next((node for node in pipeline["nodes"] if node["name"] == name), None)
        if node is None:
            return not_found(request, f"There is no service named {name} in {project.megaservice.name}.")
        return page(request, "service.html", "service", name, service=node)

    @app.get("/documents")
    async def documents(request: Request) -> Response:
        if dataprep is None:
            return not_found(request, "This pipeline stores no documents (it has no dataprep service).")
        return page(request, "documents.html", "documents", "Documents")

    @app.get("/statistics")
    async def statistics(request: Request) -> Response:
        return page(request, "statistics.html", "statistics", "Statistics")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 404 and not request.url.path.startswith(JSON_PREFIXES):
            return not_found(request, f"There is no page at {request.url.path}.")
        detail = "not found" if error.status_code == 404 else str(error.detail)
        return JSONResponse(error_body(None, error.status_code, detail), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    # ------------------------------------------------------------ the UI's own API

    @app.get("/ui/api/pipeline")
    async def described() -> dict[str, Any]:
        return pipeline

    for path in HEALTH_PATHS:
        app.add_api_route(path, health, methods=["GET"])

    app.mount(STATIC, StaticFiles(directory=str(static or HERE / "static"), check_dir=False), name="static")

    # ------------------------------------------------------------ the proxy, on the services' own paths

    def to(upstream: Upstream, limit: int = MAX_BODY_BYTES) -> Any:
        async def proxied(request: Request) -> Response:
            return await request.app.state.proxy.forward(request, upstream, request.url.path, limit=limit)

        return proxied

    mega_routes = [("POST", project.megaservice.endpoint), ("GET", "/v1/statistics"), ("GET", READY_ROUTE),
                   ("GET", "/v1/services")]
    if project.megaservice.protocol == "chat":
        mega_routes += [("POST", OPENAI_ROUTE), ("GET", "/v1/models")]
    for method, path in dict.fromkeys(mega_routes):
        app.add_api_route(path, to(megaservice), methods=[method])
    if dataprep is not None:
        for path in DATAPREP_PATHS:
            limit = MAX_UPLOAD_BYTES if path.endswith("/ingest") else MAX_BODY_BYTES
            app.add_api_route(path, to(upstreams[dataprep], limit), methods=["POST"])

    @app.api_route("/ui/api/services/{name}/{path:path}", methods=["GET", "POST"])
    async def node_proxy(request: Request, name: str, path: str) -> Response:
        upstream = upstreams.get(name)
        if upstream is None:
            known = ", ".join(upstreams) or "none"
            return JSONResponse(error_body(name, 404, f"there is no service named {name} in "
                                                      f"{project.megaservice.name} (its services: {known})"),
                                status_code=404)
        limit = MAX_UPLOAD_BYTES if name == dataprep else MAX_BODY_BYTES
        return await request.app.state.proxy.forward(request, upstream, path, limit=limit)

    # The pages are anyone's; what they call needs the key (the services check it again: it is forwarded).
    open_paths = ["/", "/chat", "/raw", "/documents", "/statistics", "/ui/api/pipeline", *HEALTH_PATHS]
    access.protect(app, environ, refusal=key_refusal, open_paths=open_paths,
                   open_prefixes=["/services/", STATIC + "/"])
    return app


async def health() -> dict[str, str]:
    """The UI process itself answers (the services' health: /ui/api/services/<name>/<health path>)."""
    return {"status": "ok"}


# ---------------------------------------------------------------- python -m opea_new_runtime.ui


def serve(environ: Mapping[str, str] = os.environ) -> None:
    """Serve the UI with uvicorn on UI_HOST:UI_PORT until Ctrl-C or SIGTERM, then exit 0.

    A bad setting, unusable keys or a folder that is no project: one line on stderr, exit status 2.
    """
    import uvicorn

    try:
        project = Project.load(environ.get("UI_PROJECT") or os.getcwd())
        config = load_settings(environ)
        access.load_keys(environ)
        app = create_app(project, environ)  # checks every node's address too
    except (settings.SettingsError, access.KeysError, StackError) as error:
        print(f"ui: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    # Once it has shut down, uvicorn raises the signal that stopped it again, under the handlers it found:
    # with these, a graceful stop exits 0 instead of dying of SIGTERM.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(app, host=config.host, port=config.port or project.megaservice.ui_port or DEFAULT_PORT,
                log_level=config.log_level, timeout_graceful_shutdown=config.graceful_timeout,
                proxy_headers=False)


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
