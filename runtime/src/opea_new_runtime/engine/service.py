"""A remote service: where a node of the flow is and what type it is."""

from __future__ import annotations

from typing import Any

from .constants import ServiceRoleType, ServiceType


class MicroService:
    """A node of the flow: the address of a running service (comps' `MicroService`, remote only).

    comps can also serve a local function through a `MicroService`; lite only
    calls services that run elsewhere, so `use_remote_service` must be True.
    """

    def __init__(
        self,
        name: str = "",
        service_role: ServiceRoleType = ServiceRoleType.MICROSERVICE,
        service_type: ServiceType = ServiceType.LLM,
        protocol: str = "http",
        host: str = "localhost",
        port: int = 8080,
        api_key: str | None = None,
        endpoint: str | None = "/",
        use_remote_service: bool | None = False,
        description: str | None = None,
        **_unused: Any,
    ) -> None:
        if not use_remote_service:
            raise ValueError(
                f"MicroService {name!r}: lite calls remote services only; pass use_remote_service=True"
            )
        self.service_role = service_role
        self.service_type = service_type
        self.protocol = protocol
        self.host = host
        self.port = port
        self.api_key = api_key
        self.endpoint = endpoint
        self.use_remote_service = use_remote_service
        self.description = description
        self.name = f"{name}/{self.__class__.__name__}" if name else self.__class__.__name__

    def endpoint_path(self, model: str | None = None) -> str:
        """The URL the orchestrator posts to (with an API key, `host` is a base URL, as in comps)."""
        if self.api_key:
            return f"{self.host}{self.endpoint}"
        return f"{self.protocol}://{self.host}:{self.port}{self.endpoint}"

    @property
    def api_key_value(self) -> str | None:
        return self.api_key

    def __repr__(self) -> str:
        return f"MicroService({self.name!r}, {self.service_type.name}, {self.endpoint_path()!r})"
