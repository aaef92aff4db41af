"""Mermaid diagrams, rendered by the same Jinja include the generated README uses."""

from __future__ import annotations

from functools import cache
from typing import Any

from ..paths import templates_root

INCLUDE = "includes/mermaid.jinja"


@cache
def _template():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(loader=FileSystemLoader(templates_root() / "megaservice"), undefined=StrictUndefined,
                              keep_trailing_newline=False)
    return environment.get_template(INCLUDE)


def render_mermaid(services: list[dict[str, Any]], flow: list[dict[str, Any]]) -> str:
    return _template().render(services=services, flow=flow).strip("\n")
