"""What the control service asks of a container engine (`Engine`), and `DockerEngine`, which asks Docker.

An engine sees one compose project: the containers labelled
`com.docker.compose.project=<project>`. It lists the instances of a service (compose's
and its own), launches one more from an image, finds one by id and stops one (then
removes it). What may be launched, how many and which instances may be stopped is the
app's policy (app.py); the engine only makes sure an id it is given is this project's.

`DockerEngine` speaks to Docker through the Docker SDK (the `docker` package, the
`control` extra, imported on first use) at DOCKER_HOST, which in a deployment is the
socket proxy (socket_proxy.py), never the raw socket. A launched container:

- runs the image named in CONTROL_SERVICES, which must already be on the engine (never pulled);
- copies from a running container of the same service its command, entrypoint, user, working
  folder, healthcheck and environment (so it listens on the same port, with the same settings);
- joins that container's networks with the service's name as its DNS alias, so the
  megaservice, which resolves the name to every instance, finds it;
- gets the compose labels, `opea-new.launched-by=control`, and nothing else: no privileges,
  no volumes or binds, no host network, no published ports, no capabilities, no devices.
  `launch_options` builds the only options passed, from LAUNCH_OPTIONS.

Docker's failures come back as ControlError: EngineUnavailable (503) when Docker cannot be
reached, EngineFailed (502) when it refuses, with Docker's (or the proxy's) own message.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
LAUNCHED_BY_LABEL = "opea-new.launched-by"
LAUNCHED_BY = "control"
# States in which a container holds its place among the instances (counted against the ceiling).
ACTIVE_STATES = frozenset({"created", "running", "restarting", "paused"})
# The only options DockerEngine passes to containers.create: none gives a container more than an
# unprivileged process on the project's own network (no binds, volumes, ports, host namespaces, devices).
LAUNCH_OPTIONS = frozenset({"name", "labels", "command", "entrypoint", "environment", "user", "working_dir",
                            "healthcheck", "network", "networking_config"})
# Networks a launched container never joins: the host's, none, and the default bridge (which has no DNS).
FORBIDDEN_NETWORKS = frozenset({"host", "none", "bridge"})
MAX_MESSAGE = 500


class ControlError(Exception):
    """A request control cannot carry out, with the HTTP status that says why and a message for people."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message[:MAX_MESSAGE])
        self.message = message[:MAX_MESSAGE]


class UnknownInstance(ControlError):
    status = 404


class CannotLaunch(ControlError):
    """The project is not in a state to launch one more (no running instance to copy, image not built)."""

    status = 409


class EngineFailed(ControlError):
    """The engine (or the socket proxy in front of it) refused or failed."""

    status = 502


class EngineUnavailable(ControlError):
    """The engine cannot be reached (or does not answer in time)."""

    status = 503


@dataclass(frozen=True)
class Instance:
    """One container of a service, as GET /v1/instances/<service> lists it."""

    id: str  # the full 64-hex id
    name: str
    service: str
    image: str
    state: str  # Docker's: created, running, restarting, paused, exited, dead, removing
    health: str | None  # starting, healthy, unhealthy; None without a healthcheck
    launched_by: str  # "control" or "compose"
    created: str  # ISO 8601, as the engine gives it

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Engine(Protocol):
    """The containers of one compose project."""

    project: str

    def instances(self, service: str) -> list[Instance]:
        """Every container of `service` in the project, in any state (compose's `run` one-offs left out)."""

    def launch(self, service: str, image: str) -> Instance:
        """One more instance of `service` from `image`, started; CannotLaunch when the project is not up."""

    def get(self, instance_id: str) -> Instance:
        """The project's container with this id (or unique id prefix); UnknownInstance otherwise."""

    def stop(self, instance_id: str) -> Instance:
        """Stop the project's container with this id, then remove it; what it was."""


def launched_name(project: str, service: str) -> str:
    """`<project>-<service>-control-<6 hex>`: beside compose's `<project>-<service>-<n>`, and telling who made it."""
    return f"{project}-{service}-control-{secrets.token_hex(3)}"


def launched_labels(project: str, service: str) -> dict[str, str]:
    # oneoff=True: compose's `up` reconciles only containers labelled oneoff=False, so it leaves these be;
    # `docker compose down` still removes them with the rest of the project.
    return {PROJECT_LABEL: project, SERVICE_LABEL: service, ONEOFF_LABEL: "True", LAUNCHED_BY_LABEL: LAUNCHED_BY}


def launched_by(labels: Mapping[str, str]) -> str:
    return LAUNCHED_BY if labels.get(LAUNCHED_BY_LABEL) == LAUNCHED_BY else "compose"


def instance_of(attrs: Mapping[str, Any]) -> Instance:
    """An Instance from what Docker's inspect answers (`container.attrs`)."""
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    state = attrs.get("State") or {}
    return Instance(id=attrs["Id"], name=str(attrs.get("Name", "")).lstrip("/"),
                    service=labels.get(SERVICE_LABEL, ""), image=config.get("Image", ""),
                    state=state.get("Status", "unknown"), health=(state.get("Health") or {}).get("Status"),
                    launched_by=launched_by(labels), created=attrs.get("Created", ""))


def launch_options(project: str, service: str, template: Mapping[str, Any], networks: list[str],
                   endpoint_config: Callable[..., Any]) -> dict[str, Any]:
    """The keyword arguments of containers.create for one more `service` like `template` (its inspect).

    Only LAUNCH_OPTIONS, and nothing from the template's HostConfig: its binds, ports,
    privileges and devices stay with it.
    """
    config = template.get("Config") or {}
    options: dict[str, Any] = {
        "name": launched_name(project, service),
        "labels": launched_labels(project, service),
        "environment": list(config.get("Env") or []),
        "network": networks[0],
        "networking_config": {networks[0]: endpoint_config(aliases=[service])},
    }
    copied = {"command": config.get("Cmd"), "entrypoint": config.get("Entrypoint"), "user": config.get("User"),
              "working_dir": config.get("WorkingDir"), "healthcheck": config.get("Healthcheck")}
    options.update({name: value for name, value in copied.items() if value})
    unexpected = set(options) - LAUNCH_OPTIONS
    if unexpected:  # a programming error, never a user's: refuse rather than pass something unvetted
        raise AssertionError(f"launch options outside LAUNCH_OPTIONS: {sorted(unexpected)}")
    return options


class DockerEngine:
    """The Engine on Docker, through the Docker SDK at DOCKER_HOST (in a deployment: the socket proxy).

    `connect` makes the client (default: docker.from_env with `environ`); it is called on
    first use and again after a failure to connect, so control starts before the proxy does.
    """

    def __init__(self, project: str, *, environ: Mapping[str, str] | None = None,
                 connect: Callable[[], Any] | None = None, stop_timeout: float = 10.0) -> None:
        self.project = project
        self.stop_timeout = stop_timeout
        self.environ = dict(environ) if environ is not None else None
        self.where = (self.environ or {}).get("DOCKER_HOST") or "the local Docker socket"
        self._connect = connect or self._from_env
        self._client: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the client

    def _from_env(self) -> Any:
        import os

        import docker

        from .. import settings

        environ = self.environ if self.environ is not None else dict(os.environ)
        host = environ.get("DOCKER_HOST", "")
        if host.startswith(("tcp://", "http://", "https://")):
            # compose gives every service http_proxy: the Docker API must not go through it
            settings.bypass_proxies([host.split("://", 1)[1].rsplit(":", 1)[0]])
        return docker.from_env(environment=environ)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                with self.translated():
                    self._client = self._connect()
            return self._client

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """Docker's and the transport's exceptions as ControlError, with their message and no traceback."""
        try:
            yield
        except ControlError:
            raise
        except Exception as error:
            raise self.translate(error) from None

    def translate(self, error: Exception) -> ControlError:
        try:
            import docker.errors
            import requests.exceptions
        except ImportError:  # the client given (a test's) raised something of its own
            return EngineFailed(f"the container engine failed: {error}")
        if isinstance(error, docker.errors.NotFound):
            return UnknownInstance(explanation(error))
        if isinstance(error, requests.exceptions.Timeout):
            return EngineUnavailable(f"the Docker engine at {self.where} did not answer in time")
        if isinstance(error, requests.exceptions.ConnectionError):
            return EngineUnavailable(f"cannot reach the Docker engine at {self.where}: is the socket proxy up?")
        if isinstance(error, docker.errors.APIError):
            return EngineFailed(f"the Docker engine at {self.where} refused: {explanation(error)}")
        if isinstance(error, docker.errors.DockerException):  # from_env: no engine answered the version query
            return EngineUnavailable(f"cannot reach the Docker engine at {self.where}: {error}")
        return EngineFailed(f"the Docker engine at {self.where} failed: {type(error).__name__}: {error}")

    # ------------------------------------------------------------ Engine

    def instances(self, service: str) -> list[Instance]:
        with self.translated():
            containers = self.client().containers.list(all=True, filters={"label": [
                f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]})
            found = [instance_of(container.attrs) for container in containers
                     if not self._oneoff_of_compose(container.attrs)]
        return sorted(found, key=lambda instance: (instance.created, instance.name))

    def get(self, instance_id: str) -> Instance:
        return instance_of(self._container(instance_id).attrs)

    def launch(self, service: str, image: str) -> Instance:
        client = self.client()
        with self.translated():
            template = self._template(client, service)
            mounts = [str(mount.get("Destination", "?")) for mount in template.get("Mounts") or []]
            if mounts:  # a copy would run without them: a retriever with an empty store, say
                raise CannotLaunch(f"{template['Name'].lstrip('/')} keeps data in {', '.join(mounts)}, which a "
                                   "launched instance would not have (control copies no volumes): scale "
                                   f"{service} with compose instead (`docker compose up --scale {service}=N`)")
            networks = [name for name in (template.get("NetworkSettings") or {}).get("Networks") or {}]
            usable = [name for name in networks if name not in FORBIDDEN_NETWORKS]
            if not usable:
                raise CannotLaunch(f"{template['Name'].lstrip('/')} is on no network of the project "
                                   f"({', '.join(networks) or 'none'}): control launches instances only on "
                                   "the project's own networks")
            self._image(client, image)
            options = launch_options(self.project, service, template, usable, client.api.create_endpoint_config)
            container = client.containers.create(image, **options)
            try:
                for network in usable[1:]:
                    client.api.connect_container_to_network(container.id, network, aliases=[service])
                container.start()
                container.reload()
            except Exception:
                with contextlib.suppress(Exception):  # leave nothing half-made behind
                    container.remove(force=True)
                raise
            return instance_of(container.attrs)

    def stop(self, instance_id: str) -> Instance:
        container = self._container(instance_id)
        instance = instance_of(container.attrs)
        with self.translated():
            container.stop(timeout=int(round(self.stop_timeout)))
            container.remove()
        return replace(instance, state="removed")

    # ------------------------------------------------------------ helpers

    def _container(self, instance_id: str) -> Any:
        unknown = UnknownInstance(f"there is no container {instance_id} in project {self.project}")
        try:
            with self.translated():
                container = self.client().containers.get(instance_id)
        except UnknownInstance:
            raise unknown from None
        if ((container.attrs.get("Config") or {}).get("Labels") or {}).get(PROJECT_LABEL) != self.project:
            raise unknown  # another project's (or nobody's): not ours to show or to stop
        return container

    def _template(self, client: Any, service: str) -> Mapping[str, Any]:
        """A running instance of `service` to copy (compose's first), as Docker inspects it."""
        running = [container.attrs for container in client.containers.list(filters={
            "label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"], "status": "running"})
            if not self._oneoff_of_compose(container.attrs)]
        if not running:
            raise CannotLaunch(f"no instance of {service} is running in project {self.project} to copy its "
                               "network and environment from: start the project first (docker compose up -d)")
        return sorted(running, key=lambda attrs: (launched_by((attrs.get("Config") or {}).get("Labels") or {})
                                                  != "compose", attrs.get("Created", "")))[0]

    def _image(self, client: Any, image: str) -> None:
        import docker.errors

        try:
            client.images.get(image)
        except docker.errors.NotFound:  # ImageNotFound is one
            raise CannotLaunch(f"the image {image} is not on the Docker engine: build it first "
                               "(docker compose build); control never pulls images") from None

    @staticmethod
    def _oneoff_of_compose(attrs: Mapping[str, Any]) -> bool:
        # `docker compose run` containers are tasks, not instances; control's own are labelled oneoff too.
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        return labels.get(ONEOFF_LABEL) == "True" and launched_by(labels) != LAUNCHED_BY


def explanation(error: Exception) -> str:
    """What Docker (or the socket proxy) said, without the URL the SDK adds."""
    said = getattr(error, "explanation", None)
    if isinstance(said, bytes):
        said = said.decode("utf-8", "replace")
    return str(said or error).strip()
