"""Validate a spec document and report every problem at once, each with where it is.

Shapes and single fields are checked by the pydantic models (model.py); the
checks here span fields: duplicate names (also after normalisation), ports in
use twice, edges to unknown services, self-loops, duplicate edges, conditions,
cycles and entry nodes. They read the raw data defensively so they still run
when some fields have the wrong type — the user sees everything in one go.

Before any of that, the data itself is checked against the bounds of load.py
(depth, values, digits, services), whatever it came from (a file, prompts, code),
and every string — keys included — must be writable as UTF-8: a lone surrogate
such as "\\ud800" can be read from JSON but no file can hold it, so rendering
would fail after validation said yes.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from .. import catalog, conditions
from .graph import Edge, Graph
from .load import MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, MAX_PROBLEMS, MAX_SERVICES, Document
from .model import PipelineSpec
from .names import dns_name, name_problem, python_name
from .problems import Problem, SpecError, format_location, shown

DEFAULT_MEGASERVICE_PORT = 8888
DEFAULT_UI_PORT = 5173  # OPEA's UI port (GenAIExamples' chatqna-ui)
_SUGGESTIONS = 50  # unknown names given a "did you mean" (difflib is slow; a hostile spec has thousands)


def validate(document: Document) -> PipelineSpec:
    """The validated spec; raises SpecError with every problem found."""
    problems, fatal = _data_problems(document.data)
    spec = None
    if not fatal:  # past a bound, the data is not looked at any further
        try:
            spec = PipelineSpec.model_validate(document.data)
        except ValidationError as error:
            problems += [_from_pydantic(item, document.data) for item in error.errors()]
        problems += _cross_field_problems(document.data)
    if problems:
        found = sorted((Problem(format_location(loc), message, document.line_of(loc))
                        for loc, message in dict.fromkeys(problems)), key=lambda problem: problem.line or 0)
        total = len(found)
        if total > MAX_PROBLEMS:
            more = total - MAX_PROBLEMS
            found = [*found[:MAX_PROBLEMS], Problem("", f"… and {more:,} more problem{'s' if more != 1 else ''} "
                                                        f"({total:,} in all; the first {MAX_PROBLEMS} are listed)")]
        raise SpecError(found, total=total)
    return spec


# ---------------------------------------------------------------- the data itself


def _data_problems(data: Any) -> tuple[list[tuple[tuple, str]], bool]:
    """Strings that cannot be written, numbers too long, and the bounds; (problems, whether a bound was crossed).

    Iterative: the data may come from code or prompts, not only from a file read within bounds.
    """
    problems: list[tuple[tuple, str]] = []
    on_path: set[int] = set()
    count = 0
    stack: list[tuple[Any, tuple, bool]] = [(data, (), False)]
    while stack:
        value, location, leaving = stack.pop()
        if leaving:
            on_path.discard(id(value))
            continue
        count += 1
        if count > MAX_NODES:
            return [(location, f"the spec has more than {MAX_NODES:,} values, the limit for a spec")], True
        if len(location) >= MAX_DEPTH:
            return [(location, f"nested more than {MAX_DEPTH} levels deep, the limit for a spec")], True
        if isinstance(value, str):
            if (problem := _unwritable(value)) is not None:
                problems.append((location, problem))
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > MAX_INT_DIGITS * 3.33:  # about MAX_INT_DIGITS decimal digits
                problems.append((location, f"a whole number of more than {MAX_INT_DIGITS} digits; "
                                           f"the limit for a spec is {MAX_INT_DIGITS}"))
        elif isinstance(value, (dict, list)):
            if id(value) in on_path:
                return [(location, "the data contains itself (a recursive structure)")], True
            on_path.add(id(value))
            stack.append((value, location, True))
            if isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(key, str) and (problem := _unwritable(key)) is not None:
                        problems.append(((*location, key), f"the key {problem}"))
                    stack.append((item, (*location, key), False))
            else:
                stack.extend((item, (*location, index), False) for index, item in enumerate(value))
    services = data.get("services") if isinstance(data, dict) else None
    if isinstance(services, list) and len(services) > MAX_SERVICES:
        return [(("services",), f"{len(services):,} services; the limit for a pipeline is {MAX_SERVICES:,}")], True
    return problems, False


def _unwritable(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        char = text[error.start]
        return (f"contains {char!r} at position {error.start + 1}: a lone surrogate, which cannot be written as "
                "UTF-8 (write the character itself, or both halves of its \\uXXXX\\uXXXX pair)")
    return None


# ---------------------------------------------------------------- pydantic errors


_FIELDS = {
    (): PipelineSpec.model_fields,
    ("megaservice",): {"port", "endpoint", "protocol", "ui", "ui_port", "control"},
    ("services", int): {"name", "type", "port", "endpoint", "image", "server", "model"},
    ("flow", int): {"service", "next"},
    ("flow", int, "next", int): {"service", "condition"},
}


def _from_pydantic(item: dict[str, Any], data: Any) -> tuple[tuple, str]:
    location = _data_location(item["loc"], data)
    kind, message = item["type"], item["msg"]
    value = item.get("input")
    if kind == "extra_forbidden" and location:
        key = location[-1]
        allowed = _FIELDS.get(tuple(int if isinstance(p, int) else p for p in location[:-1]), ())
        close = difflib.get_close_matches(str(key), list(allowed), n=1) if len(str(key)) <= 100 else []
        hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed: {', '.join(sorted(allowed))}"
                                                               if allowed else "")
        return location, f"unknown key {shown(key)}{hint}"
    if kind == "missing":
        return location, "is required"
    if kind == "value_error":
        return location, str(item["ctx"]["error"])
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return location, f"must be a whole number, not {shown(value)}"
    if kind == "string_type":
        return location, f"must be a string, not {shown(value)}"
    if kind == "list_type":
        return location, f"must be a list, not {type(value).__name__}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return location, f"must be a mapping, not {shown(value)}"
    if kind == "literal_error":
        return location, f"{shown(value)} is not one of {item['ctx']['expected']}"
    if kind == "too_short" and location == ("services",):
        return location, "at least one service is required"
    return location, message


def _data_location(loc: tuple, data: Any) -> tuple:
    """pydantic's location as a path into the data: the keys and indexes that are there, and a missing last field.

    pydantic may add parts of its own (a validator's or a union member's tag such as
    `function-after[...]`); those are dropped — but a key of the data is kept whatever it
    contains, `[`, `]` and `.` included.
    """
    path: list[Any] = []
    current = data
    for position, part in enumerate(loc):
        in_dict = isinstance(current, dict) and part in current
        if in_dict or isinstance(current, list) and isinstance(part, int) and -len(current) <= part < len(current):
            current = current[part]
        elif isinstance(current, dict) and position == len(loc) - 1:
            current = None  # a missing field, or a key pydantic names after converting it (None → 'None')
        else:
            continue  # pydantic's own tag, not a place in the data
        path.append(part)
    return tuple(path)


# ---------------------------------------------------------------- cross-field checks


def _cross_field_problems(data: Any) -> list[tuple[tuple, str]]:
    if not isinstance(data, dict):
        return []
    services = data.get("services") if isinstance(data.get("services"), list) else []
    named = {index: service["name"] for index, service in enumerate(services)
             if isinstance(service, dict) and isinstance(service.get("name"), str)}
    problems = _duplicate_names(named)
    problems += _port_collisions(data, services)
    problems += _server_problems(services)
    problems += _flow_problems(data.get("flow"), set(named.values()), list(named.values()))
    problems += _nothing_in_the_flow(services, data.get("flow"))
    return problems


def _nothing_in_the_flow(services: list[Any], flow: Any) -> list[tuple[tuple, str]]:
    """Every service beside the flow (dataprep services no edge names) leaves the megaservice nothing to call."""
    from .pipeline import beside_the_flow

    typed = [(service["name"], str(service["type"]).strip().lower()) for service in services
             if isinstance(service, dict) and isinstance(service.get("name"), str)
             and isinstance(service.get("type"), str)]
    if not typed or len(typed) != len(services) or not (flow is None or isinstance(flow, list)):
        return []  # the schema's problems say what is wrong with these
    edges = None if flow is None else [
        (entry.get("service"), target if isinstance(target, str) else target.get("service"))
        for entry in flow if isinstance(entry, dict)
        for target in (entry.get("next") if isinstance(entry.get("next"), list) else [])
        if isinstance(target, (str, dict))]
    if edges and not all(isinstance(name, str) for edge in edges for name in edge):
        return []
    if len(beside_the_flow(typed, edges)) < len(typed):
        return []
    return [(("services",), "every service is a dataprep service beside the flow, so the megaservice has nothing "
                            "to call: add the services it runs (a dataprep service is a step of the flow only "
                            "when an edge names it)")]


def _duplicate_names(named: dict[int, str]) -> list[tuple[tuple, str]]:
    problems = []
    first_by_form: dict[tuple[str, str], int] = {}
    for index, name in named.items():
        for form, normalise in (("name", str), ("DNS name", dns_name), ("Python name", python_name)):
            key = (form, normalise(name))
            if key in first_by_form:
                other = first_by_form[key]
                if form == "name":
                    message = f"{shown(name)} is already the name of services[{other}]"
                else:
                    message = (f"{shown(name)} collides with services[{other}] ({shown(named[other])}): both are "
                               f"{shown(normalise(name))} as a {form}")
                problems.append((("services", index, "name"), message))
                break
            first_by_form[key] = index
    return problems


def _server_problems(services: list[Any]) -> list[tuple[tuple, str]]:
    """A `server` must serve the node's type; `model` is only for a server node."""
    problems = []
    for index, service in enumerate(services):
        if not isinstance(service, dict):
            continue
        server, service_type = service.get("server"), service.get("type")
        if isinstance(server, str) and catalog.find_server(server) and isinstance(service_type, str):
            info = catalog.find(service_type)
            if info is not None and (problem := catalog.server_problem(server, info.name)):
                problems.append((("services", index, "server"), problem))
        if service.get("model") is not None and server is None:
            problems.append((("services", index, "model"), "a model is loaded by a model server: set `server` "
                                                           f"({' | '.join(catalog.server_names())}) too"))
    return problems


def _port_collisions(data: dict[str, Any], services: list[Any]) -> list[tuple[tuple, str]]:
    owners: dict[int, str] = {}
    problems = []
    megaservice = data.get("megaservice")
    mega_port = megaservice.get("port") if isinstance(megaservice, dict) else None
    if _is_port(mega_port):
        owners[mega_port] = "megaservice"
    if not isinstance(megaservice, dict) or megaservice.get("ui") is not False:
        ui_port = megaservice.get("ui_port") if isinstance(megaservice, dict) else None
        ui_port = ui_port if _is_port(ui_port) else DEFAULT_UI_PORT
        if ui_port == mega_port:
            problems.append((("megaservice", "ui_port"), f"{ui_port} is already used by the megaservice"))
        owners.setdefault(ui_port, "the UI (megaservice.ui_port; 5173 unless set, or ui: false for none)")
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
    suggest = _Suggestions(known)
    for index, entry in enumerate(flow):
        if not isinstance(entry, dict) or not isinstance(entry.get("service"), str):
            continue
        source = entry["service"]
        if source not in known:
            problems.append((("flow", index, "service"), _unknown(source, known, suggest)))
        targets = entry.get("next") if isinstance(entry.get("next"), list) else []
        for position, item in enumerate(targets):
            where = ("flow", index, "next", position)
            target, condition = (item, None) if isinstance(item, str) else (
                (item.get("service"), item.get("condition")) if isinstance(item, dict) else (None, None))
            if not isinstance(target, str):
                continue
            if target not in known:
                problems.append((where, _unknown(target, known, suggest)))
                continue
            if target == source:
                problems.append((where, f"{shown(source)} flows to itself (a self-loop)"))
                continue
            if isinstance(condition, str):
                try:
                    condition = str(conditions.parse(condition))
                except conditions.condition_error() as error:
                    problems.append(((*where, "condition"), f"cannot parse the condition: {error}"))
                    continue
                except (ValueError, RecursionError) as error:  # a parser bug must still be a located problem
                    problems.append(((*where, "condition"), f"cannot parse the condition: {shown(str(error))}"))
                    continue
            if (source, target) in seen:
                problems.append((where, f"the edge {_plain(source)} → {_plain(target)} is already in "
                                        f"{format_location(seen[(source, target)])}"))
                continue
            seen[(source, target)] = where
            if source in known:
                edges.append(Edge(source, target, condition if isinstance(condition, str) else "success"))
    graph = Graph(tuple(order), tuple(edges))
    cycle = [_plain(node) for node in graph.find_cycle() or []]
    if order and not graph.entry_nodes:
        problems.append((("flow",), "the flow has no entry node: every service has an upstream service "
                                    f"(the flow has a cycle: {' → '.join(cycle)})"))
    elif cycle:
        problems.append((("flow",), f"the flow has a cycle: {' → '.join(cycle)}"))
    return problems


class _Suggestions:
    """"Did you mean" for unknown names: remembered, and only for the first few hundred (difflib is quadratic)."""

    def __init__(self, known: set[str]):
        self.known = sorted(known)
        self.found: dict[str, str | None] = {}

    def __call__(self, name: str) -> str | None:
        if name not in self.found:
            if len(self.found) >= _SUGGESTIONS or len(name) > 100:
                return None
            close = difflib.get_close_matches(name, self.known, n=1)
            self.found[name] = close[0] if close else None
        return self.found[name]


def _unknown(name: str, known: set[str], suggest: _Suggestions) -> str:
    close = suggest(name)
    return f"unknown service {shown(name)}" + (f" (did you mean {close!r}?)" if close else "")


def _plain(name: str) -> str:
    """A service name as is when it is a valid one, else quoted and escaped (it is shown to a terminal)."""
    return name if name_problem(name) is None else shown(name)


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


__all__ = ["DEFAULT_MEGASERVICE_PORT", "DEFAULT_UI_PORT", "validate"]
