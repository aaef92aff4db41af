"""`FakeEngine`: the Engine in memory, for tests (the runtime's and a project's own) without Docker.

It behaves as DockerEngine does where the control service can tell: 64-hex ids (found by a
unique prefix too), the same names and labels, compose's instances beside launched ones,
UnknownInstance for another project's or an unknown id, CannotLaunch when no instance of the
service runs (nothing to copy). `failure`, when set, is raised by every call: what a test
needs to see the service answer a Docker outage (EngineUnavailable) or refusal (EngineFailed).

    engine = FakeEngine("myproj", running={"llm": 1})     # compose started one llm: myproj-llm-1
    app = create_app(environ, engine)
    ...
    engine.failure = EngineUnavailable("cannot reach the Docker engine at tcp://docker-proxy:2375")
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import replace
from datetime import UTC, datetime

from .engine import (
    LAUNCHED_BY,
    CannotLaunch,
    ControlError,
    Instance,
    UnknownInstance,
    launched_name,
)


class FakeEngine:
    """The containers of one compose project, in memory; `running` is how many compose started per service."""

    def __init__(self, project: str, running: dict[str, int] | None = None, *,
                 images: dict[str, str] | None = None) -> None:
        self.project = project
        self.failure: ControlError | None = None
        self.launched: list[tuple[str, str]] = []  # (service, image) of every launch, in order
        self.stopped: list[str] = []  # the ids stopped, in order
        self._containers: dict[str, Instance] = {}
        self._lock = threading.Lock()
        for service, count in (running or {}).items():
            for number in range(1, count + 1):
                image = (images or {}).get(service, f"{project}/{project}-{service}:latest")
                self.add(Instance(id=secrets.token_hex(32), name=f"{project}-{service}-{number}", service=service,
                                  image=image, state="running", health=None, launched_by="compose",
                                  created=now()))

    def add(self, instance: Instance) -> Instance:
        """Put a container there as if someone had started it (any state, any `launched_by`)."""
        with self._lock:
            self._containers[instance.id] = instance
        return instance

    def instances(self, service: str) -> list[Instance]:
        self._fail()
        with self._lock:
            return [instance for instance in self._containers.values() if instance.service == service]

    def launch(self, service: str, image: str) -> Instance:
        self._fail()
        if not any(instance.state == "running" for instance in self.instances(service)):
            raise CannotLaunch(f"no instance of {service} is running in project {self.project} to copy its "
                               "network and environment from: start the project first (docker compose up -d)")
        self.launched.append((service, image))
        return self.add(Instance(id=secrets.token_hex(32), name=launched_name(self.project, service),
                                 service=service, image=image, state="running", health=None,
                                 launched_by=LAUNCHED_BY, created=now()))

    def get(self, instance_id: str) -> Instance:
        self._fail()
        with self._lock:
            found = [instance for key, instance in self._containers.items() if key.startswith(instance_id)]
        if len(found) != 1:
            raise UnknownInstance(f"there is no container {instance_id} in project {self.project}")
        return found[0]

    def stop(self, instance_id: str) -> Instance:
        instance = self.get(instance_id)
        with self._lock:
            del self._containers[instance.id]
        self.stopped.append(instance.id)
        return replace(instance, state="removed")

    def _fail(self) -> None:
        if self.failure is not None:
            raise self.failure


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
