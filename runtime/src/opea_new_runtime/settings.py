"""The megaservice's settings: what the environment may change (pydantic-settings).

    MEGA_SERVICE_HOST / MEGA_SERVICE_PORT    where it listens (default 127.0.0.1 / the pipeline's port)
    MEGA_SERVICE_TIMEOUT                     seconds a node may stay silent (before its answer, or between two
                                             chunks of its stream) before it is a 504 (default 300)
    MEGA_SERVICE_CONNECT_TIMEOUT             seconds to connect to a node before it is a 504 (default 10)
    MEGA_SERVICE_REQUEST_TIMEOUT             seconds the whole flow may take until the answer starts (default 600)
    MEGA_SERVICE_GRACEFUL_TIMEOUT            seconds requests in flight may take to finish on SIGTERM (default 10)
    MEGA_SERVICE_STREAM_FORMAT               chat streams: `openai` chunks (default) or `opea` (data: b'token')
    MEGA_SERVICE_POOL_CONNECTIONS            comps runtime: `true` calls nodes on one pooled session instead of
                                             comps' new session per request (~2x the throughput); lite always pools
    MEGA_SERVICE_DISCOVERY_TTL               seconds a node's name resolves to the same instances before it is
                                             resolved again (default 5; instances.py)
    MEGA_SERVICE_SET_ASIDE                   seconds an instance that refused a connection is set aside (default 5),
                                             doubled at each failure in a row up to MEGA_SERVICE_SET_ASIDE_MAX (60)
    LOG_LEVEL                                uvicorn's log level (default info)
    LOGFLAG                                  OPEA's switch: `true` means LOG_LEVEL=debug unless LOG_LEVEL is set;
                                             empty or `false` changes nothing

Where node X is, <X>_SERVICE_HOST_IP / <X>_SERVICE_PORT, or all its instances, <X>_SERVICE_INSTANCES
(host:port,host:port), is read by `remote_service` (nodes.py).
A value that does not parse stops the start with one line naming the variable (`SettingsError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import AliasChoices, Field, PositiveFloat, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """An environment variable has a value that cannot be used."""


class MegaserviceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEGA_SERVICE_", case_sensitive=False, extra="ignore")

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535)
    timeout: PositiveFloat = 300.0
    connect_timeout: PositiveFloat = 10.0
    request_timeout: PositiveFloat = 600.0
    graceful_timeout: float = Field(10.0, ge=0)
    stream_format: Literal["openai", "opea"] = "openai"
    pool_connections: bool = False
    discovery_ttl: PositiveFloat = 5.0
    set_aside: PositiveFloat = 5.0
    set_aside_max: PositiveFloat = 60.0
    log_level: str = Field("info", validation_alias=AliasChoices("LOG_LEVEL", "MEGA_SERVICE_LOG_LEVEL"))
    logflag: bool = Field(False, validation_alias=AliasChoices("LOGFLAG", "MEGA_SERVICE_LOGFLAG"))

    @field_validator("logflag", mode="before")
    @classmethod
    def _empty_logflag_is_off(cls, value: object) -> object:
        # OPEA's compose files pass LOGFLAG=${LOGFLAG} through: unset arrives as an empty string.
        return False if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _set_aside_max_is_the_longest(self) -> MegaserviceSettings:
        if self.set_aside_max < self.set_aside:
            raise ValueError("MEGA_SERVICE_SET_ASIDE_MAX must be at least MEGA_SERVICE_SET_ASIDE")
        return self

    @model_validator(mode="after")
    def _logflag_means_debug(self) -> MegaserviceSettings:
        if self.logflag and "log_level" not in self.model_fields_set:
            self.log_level = "debug"
        return self


def load(cls: type[BaseSettings] = MegaserviceSettings, **overrides: object) -> BaseSettings:
    """The settings from the environment; a bad value raises SettingsError naming the variable."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        prefix = cls.model_config.get("env_prefix", "")
        problems = [f"{prefix}{'_'.join(str(part) for part in problem['loc']).upper()}: {problem['msg']}"
                    for problem in error.errors()]
        raise SettingsError("; ".join(problems)) from None


@dataclass(frozen=True)
class Timeouts:
    """How long the megaservice waits, in seconds (a node that exceeds them is a 504 naming it)."""

    call: float = 300.0  # a node's silence: before its answer, or between two chunks of its stream
    connect: float = 10.0
    request: float = 600.0  # the whole flow, until the answer starts

    @classmethod
    def from_settings(cls, settings: MegaserviceSettings) -> Timeouts:
        return cls(call=settings.timeout, connect=settings.connect_timeout, request=settings.request_timeout)


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def bypass_proxies(hosts: Iterable[str]) -> None:
    """Keep calls to the services off any HTTP proxy: add their hosts to no_proxy / NO_PROXY."""
    if not any(os.environ.get(variable) for variable in PROXY_VARIABLES):
        return
    for variable in ("no_proxy", "NO_PROXY"):
        entries = [entry.strip() for entry in os.environ.get(variable, "").split(",") if entry.strip()]
        for host_name in ("localhost", "127.0.0.1", *hosts):
            if host_name not in entries:
                entries.append(host_name)
        os.environ[variable] = ",".join(entries)
