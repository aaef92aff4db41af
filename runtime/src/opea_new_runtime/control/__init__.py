"""Instance control, opt-in: one instance more or less of a project's service (`python -m opea_new_runtime.control`).

The megaservice spreads its calls over every instance a node's DNS name resolves to
(instances.py); this service changes how many there are while the project runs. It
launches a container of a service from the project's own image, on the project's network
under the service's name, and stops the ones it launched. It speaks to Docker through the
Docker SDK at DOCKER_HOST, which is the socket proxy (socket_proxy.py), never the raw
socket: the proxy holds the socket on an internal network and forwards only the calls
this service makes. API keys are required: without one it does not start.

    GET    /v1/health_check, /v1/health   the process itself: 200 {"status": "ok"} (no key needed)
    GET    /v1/models/available           200 {"project", "services": [{"name", "image", "max_instances",
                                          "instances" (active, compose's and control's), "launched" (control's)}]}
    GET    /v1/instances/{service}        200 {"service", "instances": [{"id", "name", "service", "image",
                                          "state", "health", "launched_by": "control" | "compose", "created"}]}
    POST   /v1/instances/{service}        201 the new instance (no body, or {}: 422 for anything else, 400 not JSON,
                                          413 too large); 409 at the maximum, or when no instance of the
                                          service runs to copy, or its image is not built
    DELETE /v1/instances/{id}             200 the instance, "state": "removed" (stopped, then removed); 404 no
                                          such container in the project; 409 one compose started (control stops
                                          only its own); 422 an id that is not 12-64 hex characters

Every path but the health checks needs `Authorization: Bearer <key>` (401 otherwise, in
the megaservice's shape, opea_new_runtime.access). An unknown service is a 404 naming the
ones it launches; Docker out of reach is a 503, Docker (or the proxy) refusing a 502, each
`{"error": {"node": null, "status", "detail"}}` with Docker's message, never a traceback.

    CONTROL_PROJECT        the compose project (com.docker.compose.project=<project>); required
    CONTROL_SERVICES       the services it may launch and their images; required. Either a comma list
                           of service=image:
                               llm=myproj/myproj-llm:latest,embedding=myproj/myproj-embedding:latest
                           or a JSON object, whose entries may give their own maximum:
                               {"llm": {"image": "myproj/myproj-llm:1.0", "max_instances": 3},
                                "embedding": "myproj/myproj-embedding:1.0"}
    CONTROL_MAX_INSTANCES  per service (default 5): every active container of it counts, compose's too
    CONTROL_HOST / CONTROL_PORT   where it listens (default 127.0.0.1 / 9900)
    CONTROL_STOP_TIMEOUT   seconds an instance has to stop before it is killed (default 10)
    CONTROL_GRACEFUL_TIMEOUT      seconds requests in flight may take to finish on SIGTERM (default 10)
    DOCKER_HOST            the engine, read by the Docker SDK: tcp://docker-proxy:2375 (the socket proxy)
    API_KEYS / API_KEYS_FILE      as opea_new_runtime.access; at least one key, or it does not start
    LOG_LEVEL / LOGFLAG    uvicorn's log level, as the megaservice reads them

A bad value, no key, or no Docker SDK: one line on stderr and exit status 2. Needs the
`control` extra (the Docker SDK; aiohttp for the proxy).

A launched instance copies from a running instance of the service its command, entrypoint, environment,
user, working folder and healthcheck, and nothing of its host configuration: no privileges,
volumes, binds, published ports, capabilities or devices (engine.py). It is labelled
with the compose project and service, `com.docker.compose.oneoff=True` (so `docker compose
up` leaves it be, and `docker compose down` removes it) and `opea-new.launched-by=control`.

    from opea_new_runtime.control.app import create_app
    from opea_new_runtime.control.fake import FakeEngine      # tests: the engine in memory
"""

from .engine import (
    CannotLaunch,
    ControlError,
    DockerEngine,
    Engine,
    EngineFailed,
    EngineUnavailable,
    Instance,
    UnknownInstance,
)
from .fake import FakeEngine

__all__ = ["CannotLaunch", "ControlError", "DockerEngine", "Engine", "EngineFailed", "EngineUnavailable",
           "FakeEngine", "Instance", "UnknownInstance"]
