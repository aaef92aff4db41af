"""Service and pipeline names, and the forms derived from them.

A name is data: `^[a-z][a-z0-9_-]*$` keeps template syntax, path separators
and shell metacharacters out of everything generated from it.

    form       rule                       echo_service    data-pipeline
    DNS        '_' → '-'                   echo-service    data-pipeline
    Python     '-' → '_'                   echo_service    data_pipeline
    env prefix Python form, upper-case     ECHO_SERVICE    DATA_PIPELINE
"""

from __future__ import annotations

import re

from .problems import shown

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]*")
MAX_LENGTH = 63  # a DNS label
# Compose services every project has: a node of the same name would clash with them.
RESERVED = {"megaservice": "the megaservice's own service", "ui": "the web UI's service",
            "nginx": "the front door's service", "control": "the instance-management service",
            "docker-proxy": "the instance-management service's Docker socket proxy"}


def dns_name(name: str) -> str:
    return name.replace("_", "-")


def python_name(name: str) -> str:
    return name.replace("-", "_")


def env_prefix(name: str) -> str:
    return python_name(name).upper()


def name_problem(name: object, *, reserved: dict[str, str] = RESERVED) -> str | None:
    """Why `name` is not a valid name, or None."""
    if not isinstance(name, str) or not name:
        return "a name is required"
    if not NAME_PATTERN.fullmatch(name):
        return (f"{shown(name)} is not a valid name: use lower-case letters, digits, '-' or '_', "
                "starting with a letter")
    if name[-1] in "-_":
        return f"{shown(name)} must not end with {name[-1]!r}"
    if len(name) > MAX_LENGTH:
        return f"{shown(name)} is longer than {MAX_LENGTH} characters"
    if dns_name(name) in reserved:
        return f"{shown(name)} is reserved ({reserved[dns_name(name)]} is called that)"
    return None
