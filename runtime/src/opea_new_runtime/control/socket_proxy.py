"""The Docker socket proxy: the only holder of the socket, forwarding the few calls control needs, refusing the rest.

    python -m opea_new_runtime.control.socket_proxy

A mounted Docker socket is root on the host, and mounting it `:ro` does not make the API
read-only. So the control service (public: it faces the network, API keys in front) never
gets it: this proxy does, in its own container on an internal network that only the control
service shares, and control reaches it at DOCKER_HOST=tcp://docker-proxy:2375.

What it forwards (ROUTES; each path with or without Docker's `/v1.NN` version prefix):

    GET|HEAD /_ping, GET /version                  the SDK's handshake
    GET  /containers/json, /containers/{id}/json   list and inspect
    GET  /images/{name}/json                       is the image there (never a pull)
    POST /containers/create                        checked: see `check_create`
    POST /containers/{id}/start, /containers/{id}/stop, DELETE /containers/{id}
    POST /networks/{id}/connect                    join one more project network, with an alias

and it refuses everything else with 403 and Docker's own error shape, `{"message": "socket
proxy: ..."}` (what the Docker SDK and CLI show): exec, attach, build, pull, push, volumes,
networks other than connect, swarm, plugins, system, events... `decide(method, path, body)`
is that rule, pure (None: forward it; otherwise why not). A create must carry the label
`opea-new.launched-by=control` and no option that reaches the host: in HostConfig only
NetworkMode (not host, not another container's), restart policy, init, auto-remove and
resource limits may be set; Privileged, Binds, Mounts, CapAdd, Devices, PidMode, IpcMode,
SecurityOpt, PortBindings, ... are refused by name. Start, stop, remove and connect are
forwarded only for a container labelled `opea-new.launched-by=control` (the proxy inspects
it first): not even a compromised control service can stop compose's containers or start
a stopped one with other settings. The path must be plain (no `%`, `..`, `//`); a body is
at most 1 MiB.

    PROXY_HOST      where it listens (default 0.0.0.0: it runs in a container, on an internal network)
    PROXY_PORT      default 2375, Docker's plain-TCP port
    DOCKER_SOCKET   the engine's socket (default /var/run/docker.sock): it must exist at the start
    PROXY_PROJECT   a compose project (set it): only that project's containers are listed, inspected,
                    created, started, stopped, removed or connected (com.docker.compose.project=<project>);
                    another's are not there (404), so neither their names nor their environment show
    LOG_LEVEL       default info: every refusal is logged (method and path, never a body)

A bad value is one line on stderr and exit status 2. Needs aiohttp (the `control` extra).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .. import settings
from .engine import LAUNCHED_BY, LAUNCHED_BY_LABEL, PROJECT_LABEL

logger = logging.getLogger("opea_new_runtime.control.socket_proxy")

MAX_BODY_BYTES = 1024 * 1024
PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_.:@-]+)+/?")
VERSION_PREFIX = re.compile(r"/v1\.\d{1,3}(?=/)")
NAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}"  # a container or network id, or name
IMAGE = r"[a-zA-Z0-9][a-zA-Z0-9_./:@-]{0,255}"  # a reference: registry/path:tag@digest
# In a create's HostConfig, the only keys that may hold a value (any other must be unset, empty or zero).
HOST_CONFIG_ALLOWED = frozenset({"NetworkMode", "RestartPolicy", "Init", "AutoRemove", "Memory", "MemorySwap",
                                 "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
                                 "PidsLimit", "ShmSize"})
FIELD_OBJECTS = frozenset({"LogConfig"})  # objects of named fields, which the CLI sends with every field unset
# The create body's top-level keys that may hold a value (Docker's container config; no Volumes).
CREATE_ALLOWED = frozenset({"Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
                            "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
                            "ArgsEscaped", "Image", "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress",
                            "Labels", "StopSignal", "StopTimeout", "Shell", "HostConfig", "NetworkingConfig"})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length", "date", "server"})


class Refused(Exception):
    """Why a request is not forwarded (a 403 saying so)."""


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    check: Callable[[bytes], None] | None = None  # raises Refused for a body not to forward
    owned: Literal["path", "body", None] = None  # where the id of a container that must be control's is
    shows: Literal["containers", "container", None] = None  # an answer narrowed to PROXY_PROJECT's containers


def check_create(body: bytes, project: str | None = None) -> None:
    """A create of an unprivileged container labelled as control's: nothing that reaches the host."""
    config = json_object(body, "a create")
    for key, value in config.items():
        if key not in CREATE_ALLOWED and not empty(value):
            raise Refused(f"a create with {key} is not forwarded")
    labels = config.get("Labels") or {}
    if not isinstance(labels, dict) or labels.get(LAUNCHED_BY_LABEL) != LAUNCHED_BY:
        raise Refused(f"a create must carry the label {LAUNCHED_BY_LABEL}={LAUNCHED_BY}")
    if project is not None and labels.get(PROJECT_LABEL) != project:
        raise Refused(f"a create must carry the label {PROJECT_LABEL}={project}")
    host_config = config.get("HostConfig") or {}
    if not isinstance(host_config, dict):
        raise Refused("a create's HostConfig must be an object")
    for key, value in host_config.items():
        if key not in HOST_CONFIG_ALLOWED and not empty(value, fields=key in FIELD_OBJECTS):
            raise Refused(f"a create with HostConfig.{key} is not forwarded (no privileges, binds, mounts, "
                          "capabilities, devices, host namespaces or published ports)")
    mode = host_config.get("NetworkMode") or ""
    if not isinstance(mode, str) or mode == "host" or ":" in mode:
        raise Refused(f"a create with HostConfig.NetworkMode={mode} is not forwarded (only the project's networks)")
    endpoints = (config.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(endpoints, dict) or "host" in endpoints:
        raise Refused("a create on the host network is not forwarded")


def check_no_body(body: bytes) -> None:
    # Docker before API 1.24 took a HostConfig at start: a body here could smuggle one past check_create.
    if body.strip() not in (b"", b"{}", b"null"):
        raise Refused("a start with a body is not forwarded")


def check_connect(body: bytes) -> None:
    document = json_object(body, "a connect")
    if not isinstance(document.get("Container"), str):
        raise Refused("a connect must name its Container")


def json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body or b"null")
    except ValueError:
        raise Refused(f"{what} whose body is not JSON is not forwarded") from None
    if not isinstance(document, dict):
        raise Refused(f"{what} whose body is not a JSON object is not forwarded")
    return document


def empty(value: Any, *, fields: bool = False) -> bool:
    """Unset: None, false, zero, "", [], {}, or a list of such (the CLI sends every option, unset).

    An object's keys are its content (Volumes {"/data": {}}, PortBindings {"80/tcp": [{}]}), except
    with `fields`: an object of named fields (LogConfig {"Type": "", "Config": {}}) whose values are all unset.
    """
    if isinstance(value, dict):
        return not value or (fields and all(empty(item) for item in value.values()))
    if isinstance(value, list):
        return all(not isinstance(item, dict | list) and empty(item) for item in value)
    return value in (None, False, 0, "")


def route(methods: str, path: str, check: Callable[[bytes], None] | None = None,
          owned: Literal["path", "body", None] = None,
          shows: Literal["containers", "container", None] = None) -> Route:
    return Route(frozenset(methods.split("|")), re.compile(path), check, owned, shows)


ROUTES = (
    route("GET|HEAD", r"/_ping"),
    route("GET", r"/version"),
    route("GET", r"/containers/json", shows="containers"),
    route("GET", rf"/containers/(?P<id>{NAME})/json", shows="container"),
    route("GET", rf"/images/(?P<name>{IMAGE})/json"),
    route("POST", r"/containers/create", check_create),
    route("POST", rf"/containers/(?P<id>{NAME})/start", check_no_body, owned="path"),
    route("POST", rf"/containers/(?P<id>{NAME})/stop", owned="path"),
    route("DELETE", rf"/containers/(?P<id>{NAME})", owned="path"),
    route("POST", rf"/networks/(?P<id>{NAME})/connect", check_connect, owned="body"),
)


@dataclass(frozen=True)
class Decision:
    """A request to forward; `owner`: the container that must be control's (inspected before forwarding);
    `shows`: what its answer is, to narrow to PROXY_PROJECT's containers (`visible`)."""

    owner: str | None = None
    shows: Literal["containers", "container", None] = None


def resolve(method: str, path: str, body: bytes = b"", project: str | None = None) -> Decision:
    """The Decision for a request (its path with or without the query), or Refused saying why."""
    path = path.partition("?")[0]
    if not PLAIN_PATH.fullmatch(path) or "/../" in f"{path}/" or "/./" in f"{path}/":
        raise Refused(f"{path[:200]} is not a plain Docker API path")
    bare = VERSION_PREFIX.sub("", path, count=1).rstrip("/") or "/"
    for candidate in ROUTES:
        matched = candidate.pattern.fullmatch(bare)
        if matched is None or method.upper() not in candidate.methods:
            continue
        if candidate.check is check_create:
            check_create(body, project)
        elif candidate.check is not None:
            candidate.check(body)
        if candidate.owned == "path":
            return Decision(owner=matched["id"])
        if candidate.owned == "body":
            container = json_object(body, "a connect")["Container"]
            if not re.fullmatch(NAME, container):  # it goes into the inspect's path
                raise Refused("a connect's Container must be a container id or name")
            return Decision(owner=container)
        return Decision(shows=candidate.shows)
    raise Refused(f"{method.upper()} {bare} is not among the Docker API calls this proxy forwards "
                  "(list, inspect, create, start, stop and remove containers; connect them to a network)")


def decide(method: str, path: str, body: bytes = b"", project: str | None = None) -> str | None:
    """None when the request may be forwarded (its container's labels aside), else why not."""
    try:
        resolve(method, path, body, project)
    except Refused as refusal:
        return str(refusal)
    return None


def owner_refusal(attrs: Mapping[str, Any], project: str | None) -> str | None:
    """Why a container (its inspect) may not be started, stopped, removed or connected: None if it may."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    name = str(attrs.get("Name", "")).lstrip("/") or attrs.get("Id", "?")
    if labels.get(LAUNCHED_BY_LABEL) != LAUNCHED_BY:
        return f"{name} was not launched by control: only its own containers are started, stopped or removed"
    if project is not None and labels.get(PROJECT_LABEL) != project:
        return f"{name} is not a container of project {project}"
    return None


def visible(shows: str, document: Any, project: str) -> Any:
    """What of Docker's answer (a list, or an inspect) shows `project`'s containers: None for another's inspect.

    Another project's containers stay out of sight: their names, and above all their environment (secrets).
    """
    def ours(labels: Any) -> bool:
        return isinstance(labels, dict) and labels.get(PROJECT_LABEL) == project

    if shows == "containers":
        return [entry for entry in document if isinstance(entry, dict) and ours(entry.get("Labels"))] \
            if isinstance(document, list) else []
    return document if isinstance(document, dict) and ours((document.get("Config") or {}).get("Labels")) else None


# ---------------------------------------------------------------- the server


def create_app(socket_path: str, project: str | None = None) -> Any:
    """The proxy as an aiohttp Application forwarding to the Docker engine's socket at `socket_path`."""
    from aiohttp import ClientError, ClientSession, ClientTimeout, UnixConnector, web
    from yarl import URL

    upstream = "http://docker"  # the host is a placeholder: the connector goes to the socket
    clients: list[ClientSession] = []  # the app's one session to the socket, while it runs

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with ClientSession(connector=UnixConnector(path=socket_path), auto_decompress=False,
                                 timeout=ClientTimeout(total=660, connect=10), skip_auto_headers=("User-Agent",)
                                 ) as client:
            clients.append(client)
            yield
            clients.remove(client)

    def refuse(request: web.Request, reason: str, status: int = 403) -> web.Response:
        logger.warning("refused %s %s: %s", request.method, request.path[:200], reason)
        return web.json_response({"message": f"socket proxy: {reason}"}, status=status)

    async def read(request: web.Request) -> bytes | None:
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return None
        return bytes(body)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await read(request)
        if body is None:
            return refuse(request, f"a body larger than {MAX_BODY_BYTES} bytes is not forwarded", 413)
        try:
            decision = resolve(request.method, request.raw_path, body, project)
        except Refused as refusal:
            return refuse(request, str(refusal))
        client = clients[0]
        try:
            if decision.owner is not None:
                async with client.get(f"{upstream}/containers/{decision.owner}/json") as inspected:
                    if inspected.status == 200:
                        reason = owner_refusal(await inspected.json(content_type=None), project)
                        if reason:
                            return refuse(request, reason)
                    # any other answer (404: no such container) is the engine's to give, to the request itself
            headers = {name: value for name, value in request.headers.items()
                       if name.lower() in ("content-type", "accept")}
            async with client.request(request.method, URL(upstream + request.raw_path, encoded=True), data=body or None,
                                      headers=headers, allow_redirects=False) as answer:
                data = await answer.read()
                kept = {name: value for name, value in answer.headers.items() if name.lower() not in HOP_BY_HOP}
                if project is None or decision.shows is None or answer.status != 200:
                    return web.Response(status=answer.status, body=data, headers=kept)
                try:
                    shown = visible(decision.shows, json.loads(data or b"null"), project)
                except ValueError:
                    return web.json_response({"message": "socket proxy: the Docker engine's answer is not JSON"},
                                             status=502)
                if shown is None:  # as Docker answers an unknown id: nothing said about another project
                    return web.json_response({"message": f"No such container: {request.path.split('/')[-2]}"},
                                             status=404)
                return web.json_response(shown)
        except (ClientError, OSError, TimeoutError) as error:
            logger.warning("the Docker engine at %s failed: %s", socket_path, error)
            return web.json_response({"message": f"socket proxy: cannot reach the Docker engine at {socket_path}: "
                                                 f"{type(error).__name__}: {error}"}, status=502)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


class ProxySettings(BaseSettings):
    """The proxy's environment, each field read from the variable its alias names."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field("0.0.0.0", min_length=1, validation_alias="PROXY_HOST")  # in its container
    port: int = Field(2375, ge=1, le=65535, validation_alias="PROXY_PORT")
    socket: str = Field("/var/run/docker.sock", min_length=1, validation_alias="DOCKER_SOCKET")
    project: str | None = Field(None, validation_alias="PROXY_PROJECT")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", validation_alias="LOG_LEVEL")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   **other_sources: Any) -> tuple[Any, ...]:
        return (init_settings,)

    @field_validator("host", "port", "socket", "project", "log_level", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name].default
        return value.strip().lower() if info.field_name == "log_level" and isinstance(value, str) else value


def load_settings(environ: Mapping[str, str]) -> ProxySettings:
    names = [field.validation_alias for field in ProxySettings.model_fields.values()]
    return settings.load(ProxySettings, **{name: environ[name] for name in names if name in environ})


def serve(environ: Mapping[str, str] = os.environ) -> None:
    """Serve the proxy on PROXY_HOST:PROXY_PORT until Ctrl-C or SIGTERM (exit 0); a bad setting: exit 2."""
    try:
        config = load_settings(environ)
        if not os.path.exists(config.socket):
            raise settings.SettingsError(f"DOCKER_SOCKET: {config.socket} does not exist "
                                         "(mount the engine's socket into this container)")
        from aiohttp import web
    except ImportError:
        print("socket proxy: needs aiohttp: pip install 'opea-new-runtime[control]'", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except settings.SettingsError as error:
        print(f"socket proxy: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: socket proxy: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(config.log_level.upper())
    logger.info("forwarding the allowed Docker API calls from %s:%s to %s", config.host, config.port, config.socket)
    web.run_app(create_app(config.socket, config.project), host=config.host, port=config.port, print=None,
                access_log=None, handle_signals=True)


if __name__ == "__main__":
    serve()
