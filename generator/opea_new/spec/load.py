"""Read a spec file (YAML or JSON) into plain data, remembering the line of every value."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .problems import Problem, SpecError

Location = tuple[str | int, ...]


@dataclass
class Document:
    data: Any
    source: str
    lines: dict[Location, int] = field(default_factory=dict)  # 1-based line of each value

    def line_of(self, location: Location) -> int | None:
        while location:
            if location in self.lines:
                return self.lines[location]
            location = location[:-1]
        return self.lines.get(())


def read_document(path_or_text: Path | str, source: str | None = None) -> Document:
    """Parse a spec from a path, or from text when given a str."""
    if isinstance(path_or_text, Path):
        source = source or str(path_or_text)
        try:
            text = path_or_text.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SpecError([Problem("", f"cannot read {source}: {error}")]) from error
        is_json = path_or_text.suffix.lower() == ".json"
    else:
        text, source, is_json = path_or_text, source or "<spec>", False
    document = _parse_json(text, source) if is_json else _parse_yaml(text, source)
    if not isinstance(document.data, dict):
        kind = "empty" if document.data is None else f"a {type(document.data).__name__}"
        raise SpecError([Problem("", f"{source}: a spec is a mapping with `name` and `services`; this one is {kind}")])
    return document


def _parse_json(text: str, source: str) -> Document:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError([Problem("", f"{source}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}")]) from None
    # JSON is YAML: a second pass with the YAML composer finds the lines.
    try:
        return Document(data, source, _lines(yaml.compose(text, Loader=_Loader)))
    except yaml.YAMLError:
        return Document(data, source)


def _parse_yaml(text: str, source: str) -> Document:
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        reason = " ".join(filter(None, (error.context, error.problem)))
        raise SpecError([Problem("", f"{where}: invalid YAML: {reason}")]) from None
    except yaml.YAMLError as error:
        raise SpecError([Problem("", f"{source}: invalid YAML: {error}")]) from None
    return Document(data, source, _lines(node) if node is not None else {})


class _Loader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark)
            if isinstance(key, str):
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _lines(node: yaml.Node, location: Location = ()) -> dict[Location, int]:
    lines = {location: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*location, key_node.value)
                lines.update(_lines(value_node, child))
                lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_lines(item, (*location, index)))
    return lines
