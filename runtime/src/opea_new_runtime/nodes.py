"""A node of the pipeline as its spec describes it, and how the megaservice finds it.

`remote_service("llm", ServiceType.LLM, port=9000, endpoint="/v1/chat/completions")`
is comps' `MicroService(..., use_remote_service=True)` at <LLM>_SERVICE_HOST_IP /
<LLM>_SERVICE_PORT (default 127.0.0.1 and the spec's port), or at every instance
<LLM>_SERVICE_INSTANCES lists (instances.py), carrying its `Node`:
what the local runner, the tests and the statistics read, so the flow is written
once, in the project's pipeline module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Node:
    """A node of the flow: its spec name, type (lower-case ServiceType member), default port, endpoint, image."""

    name: str
    type: str
    port: int
    endpoint: str
    image: str | None = None  # a published image runs it; None: generated in services/<dns_name>
    server: str | None = None  # the node is this model server (tei | vllm | tgi): align speaks its API
    model: str | None = None  # the model the server loads (<NODE>_MODEL_ID overrides it)

    @property
    def dns_name(self) -> str:
        return self.name.replace("_", "-")

    @property
    def env_prefix(self) -> str:
        return self.name.replace("-", "_").upper()

    @property
    def host_variable(self) -> str:
        return f"{self.env_prefix}_SERVICE_HOST_IP"

    @property
    def port_variable(self) -> str:
        return f"{self.env_prefix}_SERVICE_PORT"

    @property
    def instances_variable(self) -> str:
        return f"{self.env_prefix}_SERVICE_INSTANCES"

    def instances(self, environ: Mapping[str, str] = os.environ) -> tuple[tuple[str, int], ...] | None:
        """Every instance <NODE>_SERVICE_INSTANCES lists (`host:port,host:port`, `[v6]:port`); None: unset."""
        text = environ.get(self.instances_variable, "").strip()
        if not text:
            return None
        found: dict[tuple[str, int], None] = {}
        for entry in text.replace(",", " ").split():
            host, _, port = entry.rpartition(":")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            elif ":" in host:
                host = ""  # an IPv6 address needs its brackets
            if (not host or not port.isdigit() or not 1 <= int(port) <= 65535
                    or any(character in host for character in "/@?#[] ")):
                from .settings import SettingsError

                raise SettingsError(f"{self.instances_variable}: {entry!r} is not host:port "
                                    "(e.g. llm-1:9000,llm-2:9000; [::1]:9000 for IPv6)")
            found[(host, int(port))] = None
        return tuple(found)

    @property
    def health_path(self) -> str:
        """Where the node says it is healthy: TEI's and vLLM's /health for a model server, else OPEA's route."""
        return "/health" if self.server else "/v1/health_check"

    @property
    def model_variable(self) -> str:
        return f"{self.env_prefix}_MODEL_ID"

    def model_id(self, environ: Mapping[str, str] = os.environ) -> str | None:
        return environ.get(self.model_variable, "").strip() or self.model

    @property
    def generated(self) -> bool:
        return self.image is None

    @property
    def folder(self) -> str:
        return f"services/{self.dns_name}"

    def address(self, environ: Mapping[str, str] = os.environ) -> tuple[str, int]:
        """(host, port) where the megaservice calls this node."""
        text = environ.get(self.port_variable, "").strip()
        if not text:
            return environ.get(self.host_variable, "127.0.0.1"), self.port
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            # imported here, so this module stays stdlib-only: the generator's tests load it from source
            from .settings import SettingsError

            raise SettingsError(f"{self.port_variable}: {text!r} is not a port (1-65535)")
        return environ.get(self.host_variable, "127.0.0.1"), int(text)


def remote_service_factory(micro_service: type) -> Callable[..., Any]:
    """`remote_service` for a runtime's MicroService class (comps' or lite's)."""

    def remote_service(name: str, service_type: Any, *, port: int, endpoint: str, image: str | None = None,
                       server: str | None = None, model: str | None = None,
                       environ: Mapping[str, str] = os.environ) -> Any:
        node = Node(name, service_type.name.lower(), port, endpoint, image, server, model)
        host, actual_port = node.address(environ)
        service = micro_service(name=name, host=host, port=actual_port, endpoint=endpoint, use_remote_service=True,
                                service_type=service_type)
        service.node = node
        service.static_instances = node.instances(environ)  # checked now: a bad list stops the start
        return service

    return remote_service


def node_of(service: Any) -> Node:
    """The Node of a MicroService (one made without `remote_service` gets one from its own fields), or a Node."""
    if isinstance(service, Node):
        return service
    node = getattr(service, "node", None)
    if isinstance(node, Node):
        return node
    name = service.name.removesuffix("/MicroService")
    return Node(name, service.service_type.name.lower(), int(service.port), service.endpoint)
