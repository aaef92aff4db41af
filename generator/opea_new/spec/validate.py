"""Validate a spec document and report every problem at once, each with where it is.

Shapes and single fields are checked by the pydantic models (model.py); the
checks here span fields: duplicate names (also after normalisation), ports in
use twice, edges to unknown services, self-loops, duplicate edges, conditions,
cycles and entry nodes. They read the raw data defensively so they still run
when some fields have the wrong type — the user sees everything in one go.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from .. import conditions
from .graph import Edge, Graph
from .load import Document
from .model import PipelineSpec
from .names import dns_name, python_name
from .problems import Problem, SpecError, format_location

DEFAULT_MEGASERVICE_PORT = 8888


def validate(document: Document) -> PipelineSpec:
    """The validated spec; raises SpecError with every problem found."""
    problems: list[tuple[tuple, str]] = []
    spec = None
    try:
        spec = PipelineSpec.model_validate(document.data)
    except ValidationError as error:
        problems += [_from_pydantic(item, document.data) for item in error.errors()]
    problems += _cross_field_problems(document.data)
    if problems:
        found = [Problem(format_location(loc), message, document.line_of(loc))
                 for loc, message in dict.fromkeys(problems)]
        raise SpecError(sorted(found, key=lambda problem: problem.line or 0))
    return spec


# ---------------------------------------------------------------- pydantic errors


_FIELDS = {
    (): PipelineSpec.model_fields,
    ("megaservice",): {"port", "endpoint", "protocol"},
    ("services", int): {"name", "type", "port", "endpoint", "image"},
    ("flow", int): {"service", "next"},
    ("flow", int, "next", int): {"service", "condition"},
}


def _from_pydantic(item: dict[str, Any], data: Any) -> tuple[tuple, str]:
    location = tuple(part for part in item["loc"] if not (isinstance(part, str) and "[" in part))
    kind, message = item["type"], item["msg"]
    value = item.get("input")
    if kind == "extra_forbidden":
        key = location[-1]
        allowed = _FIELDS.get(tuple(int if isinstance(p, int) else p for p in location[:-1]), ())
        close = difflib.get_close_matches(str(key), list(allowed), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed: {', '.join(sorted(allowed))}"
                                                               if allowed else "")
        return location, f"unknown key {key!r}{hint}"
    if kind == "missing":
        return location, "is required"
    if kind == "value_error":
        return location, str(item["ctx"]["error"])
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return location, f"must be a whole number, not {value!r}"
    if kind == "string_type":
        return location, f"must be a string, not {value!r}"
    if kind == "list_type":
        return location, f"must be a list, not {type(value).__name__}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return location, f"must be a mapping, not {value!r}"
    if kind == "literal_error":
        return location, f"{value!r} is not one of {item['ctx']['expected']}"
    if kind == "too_short" and location == ("services",):
        return location, "at least one service is required"
    return location, message


# ---------------------------------------------------------------- cross-field checks


def _cross_field_problems(data: Any) -> list[tuple[tuple, str]]:
    if not isinstance(data, dict):
        return []
    services = data.get("services") if isinstance(data.get("services"), list) else []
    named = {index: service["name"] for index, service in enumerate(services)
             if isinstance(service, dict) and isinstance(service.get("name"), str)}
    problems = _duplicate_names(named)
    problems += _port_collisions(data, services)
    problems += _flow_problems(data.get("flow"), set(named.values()), list(named.values()))
    return problems


def _duplicate_names(named: dict[int, str]) -> list[tuple[tuple, str]]:
    problems = []
    first_by_form: dict[tuple[str, str], int] = {}
    for index, name in named.items():
        for form, normalise in (("name", str), ("DNS name", dns_name), ("Python name", python_name)):
            key = (form, normalise(name))
            if key in first_by_form:
                other = first_by_form[key]
                if form == "name":
                    message = f"{name!r} is already the name of services[{other}]"
                else:
                    message = (f"{name!r} collides with services[{other}] ({named[other]!r}): both are "
                               f"{normalise(name)!r} as a {form}")
                problems.append((("services", index, "name"), message))
                break
            first_by_form[key] = index
    return problems


def _port_collisions(data: dict[str, Any], services: list[Any]) -> list[tuple[tuple, str]]:
    owners: dict[int, str] = {}
    problems = []
    megaservice = data.get("megaservice")
    mega_port = megaservice.get("port") if isinstance(megaservice, dict) else None
    if _is_port(mega_port):
        owners[mega_port] = "megaservice"
    for index, service in enumerate(services):
        port = service.get("port") if isinstance(service, dict) else None
        if not _is_port(port):
            continue
        if port in owners:
            problems.append((("services", index, "port"), f"{port} is already used by {owners[port]}"))
        else:
            name = service.get("name")
            owners[port] = f"services[{index}] ({name})" if isinstance(name, str) else f"services[{index}]"
    return problems


def _flow_problems(flow: Any, known: set[str], order: list[str]) -> list[tuple[tuple, str]]:
    if flow is None:
        return []
    if not isinstance(flow, list):
        return []  # a type problem, reported by the model
    problems: list[tuple[tuple, str]] = []
    edges: list[Edge] = []
    seen: dict[tuple[str, str], tuple] = {}
    for index, entry in enumerate(flow):
        if not isinstance(entry, dict) or not isinstance(entry.get("service"), str):
            continue
        source = entry["service"]
        if source not in known:
            problems.append((("flow", index, "service"), _unknown(source, known)))
        targets = entry.get("next") if isinstance(entry.get("next"), list) else []
        for position, item in enumerate(targets):
            where = ("flow", index, "next", position)
            target, condition = (item, None) if isinstance(item, str) else (
                (item.get("service"), item.get("condition")) if isinstance(item, dict) else (None, None))
            if not isinstance(target, str):
                continue
            if target not in known:
                problems.append((where, _unknown(target, known)))
                continue
            if target == source:
                problems.append((where, f"{source!r} flows to itself (a self-loop)"))
                continue
            if isinstance(condition, str):
                try:
                    condition = str(conditions.parse(condition))
                except conditions.condition_error() as error:
                    problems.append(((*where, "condition"), f"cannot parse the condition: {error}"))
                    continue
            if (source, target) in seen:
                problems.append((where, f"the edge {source} → {target} is already in "
                                        f"{format_location(seen[(source, target)])}"))
                continue
            seen[(source, target)] = where
            if source in known:
                edges.append(Edge(source, target, condition if isinstance(condition, str) else "success"))
    graph = Graph(tuple(order), tuple(edges))
    cycle = graph.find_cycle()
    if order and not graph.entry_nodes:
        problems.append((("flow",), "the flow has no entry node: every service has an upstream service "
                                    f"(the flow has a cycle: {' → '.join(cycle or [])})"))
    elif cycle:
        problems.append((("flow",), f"the flow has a cycle: {' → '.join(cycle)}"))
    return problems


def _unknown(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"unknown service {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


__all__ = ["DEFAULT_MEGASERVICE_PORT", "validate"]
