"""The control service's settings: the environment it reads, checked before it starts (pydantic-settings).

Each field is read from the one variable its alias names, from the mapping `load_settings`
is given (the process environment for `serve()`): what the variables mean is in this
package's docstring (opea_new_runtime.control). A bad value raises settings.SettingsError
naming the variable; `serve()` turns it into one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .. import settings

DEFAULT_PORT = 9900
DEFAULT_MAX_INSTANCES = 5
# Compose's own rules: a project name is lower case; a service name starts with a letter or digit.
PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# An image reference: [registry[:port]/]path[:tag][@digest], no white space, no shell characters.
IMAGE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._/:@-]*")
DOCKER_SCHEMES = ("tcp://", "unix://", "http://", "https://", "ssh://", "npipe://")


@dataclass(frozen=True)
class Launchable:
    """A service control may start more instances of: its compose name, its image, its own ceiling."""

    service: str
    image: str
    max_instances: int


class ControlSettings(BaseSettings):
    """The control service's environment, each field read from the variable its alias names (and nothing else)."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = Field("127.0.0.1", min_length=1, validation_alias="CONTROL_HOST")
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, validation_alias="CONTROL_PORT")
    project: str = Field(validation_alias="CONTROL_PROJECT")
    services: dict[str, Any] = Field(validation_alias="CONTROL_SERVICES")
    max_instances: int = Field(DEFAULT_MAX_INSTANCES, ge=1, le=1000, validation_alias="CONTROL_MAX_INSTANCES")
    stop_timeout: float = Field(10.0, ge=0, le=600, validation_alias="CONTROL_STOP_TIMEOUT")
    graceful_timeout: float = Field(10.0, ge=0, validation_alias="CONTROL_GRACEFUL_TIMEOUT")
    docker_host: str | None = Field(None, validation_alias="DOCKER_HOST")
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", validation_alias="LOG_LEVEL")
    logflag: bool = Field(False, validation_alias="LOGFLAG")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   **other_sources: Any) -> tuple[Any, ...]:
        return (init_settings,)  # only the mapping load_settings() passes

    @field_validator("port", "max_instances", "stop_timeout", "graceful_timeout", "docker_host", "logflag",
                     "log_level", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any, info: Any) -> Any:
        # compose passes VARIABLE=${VARIABLE} through: unset arrives as an empty string
        if isinstance(value, str) and not value.strip():
            return {"logflag": False, "log_level": "info", "docker_host": None}.get(
                info.field_name, cls.model_fields[info.field_name].default)
        return value.strip().lower() if info.field_name == "log_level" and isinstance(value, str) else value

    @field_validator("project", mode="before")
    @classmethod
    def _project_name(cls, value: Any) -> Any:
        if isinstance(value, str) and not PROJECT_NAME.fullmatch(value.strip()):
            raise ValueError("the compose project name (lower-case letters, digits, - and _), "
                             "as in the labels com.docker.compose.project=<project>" if value.strip()
                             else "set it to the compose project name (com.docker.compose.project)")
        return value.strip() if isinstance(value, str) else value

    @field_validator("services", mode="before")
    @classmethod
    def _parse_services(cls, value: Any) -> Any:
        return parse_services(value) if isinstance(value, str) else value

    @field_validator("docker_host")
    @classmethod
    def _docker_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().startswith(DOCKER_SCHEMES):
            raise ValueError(f"a Docker URL such as tcp://docker-proxy:2375 (one of {', '.join(DOCKER_SCHEMES)})")
        return value.strip() if value else None

    @model_validator(mode="after")
    def _logflag_means_debug(self) -> ControlSettings:
        if self.logflag and "log_level" not in self.model_fields_set:
            self.log_level = "debug"
        return self

    def launchable(self) -> dict[str, Launchable]:
        """Every service control may launch, by name, each with its image and its ceiling."""
        found: dict[str, Launchable] = {}
        for service, entry in self.services.items():
            image, ceiling = (entry, None) if isinstance(entry, str) else (entry["image"], entry.get("max_instances"))
            found[service] = Launchable(service, image, ceiling or self.max_instances)
        return found


def parse_services(text: str) -> dict[str, Any]:
    """CONTROL_SERVICES: `llm=reg/proj-llm:1.0,embedding=...` or a JSON object (see the package docstring)."""
    text = text.strip()
    if not text:
        raise ValueError("name at least one service and its image: llm=myproj/myproj-llm:latest,...")
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as error:
            raise ValueError(f"not valid JSON ({error})") from None
        return check_services(parsed)
    entries: dict[str, Any] = {}
    for part in filter(None, (part.strip() for part in text.split(","))):
        service, equals, image = (piece.strip() for piece in part.partition("="))
        if not equals:
            raise ValueError(f"{part!r} is not service=image (e.g. llm=myproj/myproj-llm:latest)")
        if service in entries:
            raise ValueError(f"{service} is named twice")
        entries[service] = image
    return check_services(entries)


def check_services(parsed: Any) -> dict[str, Any]:
    if not isinstance(parsed, dict) or not parsed:
        raise ValueError("a JSON object of service: image (or service: {\"image\", \"max_instances\"}), "
                         "with at least one service")
    for service, entry in parsed.items():
        if not SERVICE_NAME.fullmatch(service):
            raise ValueError(f"{service!r} is not a compose service name")
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"image", "max_instances"})
            ceiling = entry.get("max_instances")
            if unknown:
                raise ValueError(f"{service}: unknown option(s) {', '.join(unknown)} (only image, max_instances)")
            if ceiling is not None and (type(ceiling) is not int or not 1 <= ceiling <= 1000):
                raise ValueError(f"{service}: max_instances must be an integer from 1 to 1000")
            entry = entry.get("image")
        if not isinstance(entry, str) or not IMAGE_NAME.fullmatch(entry):
            raise ValueError(f"{service}: {entry!r} is not an image name (e.g. myproj/myproj-{service}:latest)")
    return parsed


def load_settings(environ: Mapping[str, str]) -> ControlSettings:
    """The control service's settings from `environ`; settings.SettingsError naming the variable when one is bad."""
    names = [field.validation_alias for field in ControlSettings.model_fields.values()]
    return settings.load(ControlSettings, **{name: environ[name] for name in names if name in environ})
