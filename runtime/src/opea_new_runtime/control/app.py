"""The control service's app: its policy (`Control`) and its HTTP API (`create_app`), and `serve()`.

`Control` decides what the engine is asked: only the services of CONTROL_SERVICES, each
from its own image, never past its ceiling (every active instance counts, compose's
too; one launch at a time, so two requests cannot both take the last place), and only
instances control launched may be stopped. `create_app(settings or environ, engine)` is
the FastAPI app over it; what each path answers is in this package's docstring.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import __version__, access, jsonbody, settings
from .engine import LAUNCHED_BY, ControlError, DockerEngine, Engine, Instance
from .settings import ControlSettings, Launchable, load_settings

logger = logging.getLogger("opea_new_runtime.control")

INSTANCE_ID = re.compile(r"[0-9a-f]{12,64}")
MAX_BODY_BYTES = 64 * 1024  # POST takes no options: anything this large is not {}
HEALTH_PATHS = ("/v1/health_check", "/v1/health")
NO_KEY = ("API_KEYS (or API_KEYS_FILE) holds no key: the control service starts and stops containers, so it "
          "never runs without one (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")


class UnknownService(ControlError):
    status = 404


class TooManyInstances(ControlError):
    status = 409


class NotLaunchedByControl(ControlError):
    """A compose-managed container: 409, not 403. The caller holds a valid key, so it is not a matter of
    permission; the container's state (compose owns it, and would start it again) conflicts with the request."""

    status = 409


class BadRequest(ControlError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- the policy


class Control:
    """What the control service may do with a project's containers, and the engine that does it."""

    def __init__(self, config: ControlSettings, engine: Engine) -> None:
        self.project = config.project
        self.services: dict[str, Launchable] = config.launchable()
        self.engine = engine
        self._launching = {name: threading.Lock() for name in self.services}  # one launch at a time per service

    def service(self, name: str) -> Launchable:
        if name not in self.services:
            raise UnknownService(f"control does not launch a service named {name} in project {self.project} "
                                 f"(it launches: {', '.join(self.services)}; CONTROL_SERVICES names them)")
        return self.services[name]

    def available(self) -> dict[str, Any]:
        listed = []
        for service in self.services.values():
            active = [instance for instance in self.engine.instances(service.service) if instance.active]
            listed.append({"name": service.service, "image": service.image, "max_instances": service.max_instances,
                           "instances": len(active),
                           "launched": sum(instance.launched_by == LAUNCHED_BY for instance in active)})
        return {"project": self.project, "services": listed}

    def instances(self, name: str) -> list[Instance]:
        self.service(name)
        return self.engine.instances(name)

    def launch(self, name: str) -> Instance:
        service = self.service(name)
        with self._launching[name]:
            active = [instance for instance in self.engine.instances(name) if instance.active]
            if len(active) >= service.max_instances:
                raise TooManyInstances(
                    f"{name} already has {len(active)} instance(s) in project {self.project}, its maximum "
                    f"(CONTROL_MAX_INSTANCES={service.max_instances}): stop one first "
                    f"(DELETE /v1/instances/<id>)")
            instance = self.engine.launch(name, service.image)
        logger.info("launched %s (%s) of %s from %s", instance.name, instance.id[:12], name, service.image)
        return instance

    def stop(self, instance_id: str) -> Instance:
        instance = self.engine.get(instance_id)
        if instance.launched_by != LAUNCHED_BY:
            raise NotLaunchedByControl(
                f"{instance.name} ({instance.service}) was started by compose, not by control: control stops "
                f"only the instances it launched (compose's own: docker compose up --scale "
                f"{instance.service}=N, or docker compose stop)")
        stopped = self.engine.stop(instance.id)
        logger.info("stopped and removed %s (%s) of %s", stopped.name, stopped.id[:12], stopped.service)
        return stopped


# ---------------------------------------------------------------- the app


def error_body(status: int, detail: str) -> dict[str, Any]:
    """The runtime's error document, as the megaservice and the UI answer: {"error": {"node", "status", "detail"}}."""
    return {"error": {"node": None, "status": status, "detail": detail}}


def key_refusal(message: str) -> dict[str, Any]:
    """A 401's body: the error document with OpenAI's fields, as the megaservice's and the UI's 401s."""
    body = error_body(401, message)
    body["error"] = {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key",
                     **body["error"]}
    return body


def failure(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, detail), status_code=status, headers=dict(headers or {}))


def create_app(config: ControlSettings | Mapping[str, str] = os.environ, engine: Engine | None = None, *,
               environ: Mapping[str, str] | None = None) -> FastAPI:
    """The control service of `config` (its settings, or the environment to read them from) over `engine`.

    The keys come from `environ` (default: `config` when it is the environment, else os.environ).
    Without an engine, a DockerEngine at DOCKER_HOST. A bad value raises settings.SettingsError.
    Without a key the app answers nothing but 503 saying so: it must not run open, however it is served.
    """
    if environ is None:
        environ = config if isinstance(config, Mapping) else os.environ
    if isinstance(config, Mapping):
        config = load_settings(config)
    if engine is None:
        engine = DockerEngine(config.project, environ=environ, stop_timeout=config.stop_timeout)
    control = Control(config, engine)

    app = FastAPI(title=f"{config.project} (instance control)", version=__version__,
                  description="Launches and stops instances of the project's services (opea_new_runtime.control).")
    app.state.control = control

    @app.exception_handler(ControlError)
    async def refused(request: Request, error: ControlError) -> Response:
        return failure(error.status, error.message)

    @app.exception_handler(Exception)
    async def broken(request: Request, error: Exception) -> Response:
        # a bug, not the caller's fault: the traceback goes to the log (uvicorn's), never in the answer
        return failure(500, f"the control service failed on {request.method} {request.url.path}: "
                            f"{type(error).__name__} (see its log)")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        detail = f"there is no {request.method} {request.url.path}" if error.status_code in (404, 405) \
            else str(error.detail)
        return failure(error.status_code, detail, getattr(error, "headers", None))

    async def health() -> dict[str, str]:
        """The control process itself answers (whether Docker does: GET /v1/models/available)."""
        return {"status": "ok"}

    for path in HEALTH_PATHS:
        app.add_api_route(path, health, methods=["GET"])

    @app.get("/v1/models/available")
    async def available() -> dict[str, Any]:
        """The services this project may launch: image, maximum, active instances (all) and launched (control's)."""
        return await run_in_threadpool(control.available)

    @app.get("/v1/instances/{service}")
    async def instances(service: str) -> dict[str, Any]:
        """Every container of the service in the project, compose's and control's, in any state."""
        listed = await run_in_threadpool(control.instances, service)
        return {"service": service, "instances": [instance.to_dict() for instance in listed]}

    @app.post("/v1/instances/{service}", status_code=201)
    async def launch(service: str, request: Request) -> dict[str, Any]:
        """One more instance of the service, on the project's network under the service's DNS name."""
        await no_options(request)
        return (await run_in_threadpool(control.launch, service)).to_dict()

    @app.delete("/v1/instances/{instance_id}")
    async def stop(instance_id: str) -> dict[str, Any]:
        """Stop and remove an instance control launched (compose's own: 409)."""
        return (await run_in_threadpool(control.stop, checked_id(instance_id))).to_dict()

    if has_keys(environ):
        access.protect(app, environ, refusal=key_refusal)
    else:
        app.add_middleware(access.Closed, message=NO_KEY, refusal=lambda message: error_body(503, message))
    return app


def has_keys(environ: Mapping[str, str]) -> bool:
    """True when a key is set; unusable keys count as set, so that access.protect closes the app saying why."""
    try:
        return bool(access.load_keys(environ))
    except access.KeysError:
        return True


def checked_id(instance_id: str) -> str:
    instance_id = instance_id.lower()
    if not INSTANCE_ID.fullmatch(instance_id):
        raise BadRequest(f"{instance_id[:80]!r} is not an instance id: 12 to 64 hexadecimal characters, "
                         "as GET /v1/instances/<service> lists them", 422)
    return instance_id


async def no_options(request: Request) -> None:
    """POST /v1/instances/<service> takes no body, or an empty JSON object: what to run comes from the project."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes (this endpoint takes none)", 413)
    if not bytes(body).strip():
        return
    try:
        document = jsonbody.loads(bytes(body))
    except jsonbody.BodyError as error:
        raise BadRequest(f"the body is not JSON: {error}", 400) from None
    if document != {}:
        raise BadRequest("this endpoint takes no options (send no body, or {}): the image comes from "
                         "CONTROL_SERVICES, the network and environment from the service's running instance", 422)


# ---------------------------------------------------------------- python -m opea_new_runtime.control


def serve(environ: Mapping[str, str] = os.environ) -> None:
    """Serve the control service with uvicorn on CONTROL_HOST:CONTROL_PORT until Ctrl-C or SIGTERM, then exit 0.

    A bad setting, no API key (or an unusable one), or no `docker` package: one line on stderr, exit status 2.
    """
    import uvicorn

    try:
        config = load_settings(environ)
        if not access.load_keys(environ):
            raise access.KeysError(NO_KEY)
        try:
            import docker  # noqa: F401  (the control extra)
        except ImportError:
            raise settings.SettingsError("the control service needs the Docker SDK: "
                                         "pip install 'opea-new-runtime[control]'") from None
        app = create_app(config, environ=environ)
    except (settings.SettingsError, access.KeysError) as error:
        print(f"control: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     control: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if config.log_level in ("debug", "trace") else logging.INFO)
    if not (config.docker_host or "").startswith(("tcp://", "http://", "https://", "ssh://")):
        logger.warning("DOCKER_HOST is %s: in a container, reach Docker through the socket proxy "
                       "(python -m opea_new_runtime.control.socket_proxy), never the raw socket",
                       config.docker_host or "unset (the local socket)")
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level,
                timeout_graceful_shutdown=config.graceful_timeout, proxy_headers=False)


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
