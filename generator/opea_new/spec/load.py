"""Read a spec file (YAML or JSON) into plain data, remembering the line of every value.

A spec is read within fixed bounds, so that no input — however hostile — costs more
than a moment and a few megabytes before it is answered. Past a bound the spec is
refused (exit 2) with a message that names the bound and where it was crossed:

    MAX_FILE_BYTES   1 MiB     the file, or the text, as UTF-8
    MAX_DEPTH        64        nesting of mappings and lists (keys included); a spec needs 6
    MAX_NODES        100,000   values and keys, counted after YAML aliases are expanded
    MAX_ALIASES      1,000     alias references (`*name`) in a YAML document
    MAX_INT_DIGITS   100       characters of a whole number (a port has at most 5)
    MAX_SERVICES     1,000     services in a pipeline (checked by validate.py)
    MAX_PROBLEMS     100       problems listed; past that, the rest are counted (validate.py)

and, for conditions on flow edges (opea_new_runtime/conditions.py, which generated
projects run): at most 1,000 characters, a literal nested at most 32 deep, whole
numbers and list indexes of at most 100 digits, finite numbers only.

Why these: a real spec is a few kilobytes, 6 levels deep, a few hundred values; the
bounds leave room for machine-written specs a hundred times larger while keeping the
worst case (a 1 MiB file, an alias bomb, a 100,000-value document) well under a few
seconds. Aliases are expanded virtually while counting, so a bomb is refused before
anything is built from it; a recursive alias (`&x [*x]`) is refused as such. Nothing
here, nor in validation, recurses on the input's depth beyond MAX_DEPTH.

Duplicate keys are refused in YAML and in JSON alike, each with its line. Every
string, keys included, must be writable as UTF-8 (validate.py): JSON can spell a
lone surrogate ("\\ud800"), no file can hold one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from .problems import Problem, SpecError, format_location

try:  # libyaml's scanner and parser (in C: six times faster); the composing, bounded, stays here
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_ALIASES = 1_000
MAX_INT_DIGITS = 100
MAX_SERVICES = 1_000
MAX_PROBLEMS = 100

Location = tuple[str | int, ...]

_INT_TAG = "tag:yaml.org,2002:int"
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep, the limit for a spec"
_SURROGATE = re.compile("[\ud800-\udfff]")


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


class _Refused(Exception):
    """A bound crossed, or a value that cannot be read, at a place in the text."""

    def __init__(self, message: str, mark: yaml.Mark | None = None, location: Location | None = None,
                 line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.line = mark.line + 1 if mark else line
        self.column = mark.column + 1 if mark else column

    def problem(self, source: str) -> Problem:
        if self.location is not None:  # a value of the spec: located like every other problem
            return Problem(format_location(self.location), self.message, self.line)
        where = f"{source}:{self.line}:{self.column}" if self.line else source
        return Problem("", f"{where}: {self.message}")


def read_document(path_or_text: Path | str, source: str | None = None) -> Document:
    """Parse a spec from a path, or from text when given a str."""
    if isinstance(path_or_text, Path):
        source = source or str(path_or_text)
        try:
            with path_or_text.open("rb") as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)
        except OSError as error:
            raise SpecError([Problem("", f"cannot read {source}: {error}")]) from error
        _check_size(len(raw), source)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SpecError([Problem("", f"cannot read {source}: {error}")]) from error
        is_json = path_or_text.suffix.lower() == ".json"
    else:
        text, source, is_json = path_or_text, source or "<spec>", False
        if len(text) > MAX_FILE_BYTES:
            _check_size(len(text), source)
        try:
            _check_size(len(text.encode("utf-8")), source)
        except UnicodeEncodeError as error:
            where = _line_and_column(text, error.start)
            raise SpecError([Problem("", f"{source}:{where['line']}:{where['column']}: {text[error.start]!r} is a lone "
                                         "surrogate, which cannot be written as UTF-8")]) from None
    try:
        document = _parse_json(text, source) if is_json else _parse_yaml(text, source)
    except _Refused as refused:
        raise SpecError([refused.problem(source)]) from None
    if not isinstance(document.data, dict):
        kind = "empty" if document.data is None else f"a {type(document.data).__name__}"
        raise SpecError([Problem("", f"{source}: a spec is a mapping with `name` and `services`; this one is {kind}")])
    return document


def _check_size(size: int, source: str) -> None:
    if size > MAX_FILE_BYTES:
        raise SpecError([Problem("", f"{source}: the spec is larger than the limit of 1 MiB "
                                     f"({MAX_FILE_BYTES:,} bytes) for a spec file")])


# ---------------------------------------------------------------- YAML


def _parse_yaml(text: str, source: str) -> Document:
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        lines = _walk(node)[0] if node is not None else {}
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        reason = " ".join(filter(None, (error.context, error.problem)))
        if "maximum nesting depth" in reason:  # libyaml's own bound (1,000), met while it reads ahead of ours
            raise SpecError([Problem("", f"{where}: {_TOO_DEEP}")]) from None
        raise SpecError([Problem("", f"{where}: invalid YAML: {reason}")]) from None
    except yaml.YAMLError as error:
        raise SpecError([Problem("", f"{source}: invalid YAML: {error}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return Document(data, source, lines)


class _Bounded(Composer, SafeConstructor, Resolver):
    """A safe loader's composer and constructor: composes within the bounds, refuses duplicate keys.

    The events come from libyaml when PyYAML has it, else from PyYAML's own scanner and parser;
    either way nothing recursive runs past MAX_DEPTH, and no alias is expanded here.
    """

    def _start(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._aliases = 0

    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES:,} aliases, the limit for a spec", event.start_mark)
        else:
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise _Refused(f"more than {MAX_NODES:,} values, the limit for a spec", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(_TOO_DEEP, event.start_mark)
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged by SafeConstructor
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise ConstructorError(None, None, f"duplicate key {key!r} (first on line {seen[key]})",
                                       key_node.start_mark)
            if isinstance(key, str):
                seen[key] = key_node.start_mark.line + 1
        return SafeConstructor.construct_mapping(self, node, deep=deep)

    def construct_yaml_str(self, node):
        value = SafeConstructor.construct_yaml_str(self, node)
        if _SURROGATE.search(value):  # "\ud83d\ude00" is one character written as a pair: join the pairs
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
        return value


_Bounded.add_constructor("tag:yaml.org,2002:str", _Bounded.construct_yaml_str)

class _PythonLoader(Reader, Scanner, Parser, _Bounded):
    def __init__(self, stream: str):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        self._start()


if _CParser is not None:
    class _Loader(_CParser, _Bounded):
        def __init__(self, stream: str):
            _CParser.__init__(self, stream)
            self._start()

        get_single_node = _Bounded.get_single_node
        compose_document = _Bounded.compose_document
else:  # pragma: no cover
    _Loader = _PythonLoader


def _walk(root: yaml.Node) -> tuple[dict[Location, int], list[tuple[Location, str, yaml.Mark, int]]]:
    """The line of every value, and the duplicate keys, walking the tree as aliases expand it.

    Iterative, and within MAX_NODES and MAX_DEPTH after expansion, so an alias bomb is
    refused after at most MAX_NODES steps; a node found inside itself is a recursive alias.
    Returns (lines, duplicate keys as (location of their mapping, key, mark, line of the first)).
    """
    lines: dict[Location, int] = {}
    duplicates: list[tuple[Location, str, yaml.Mark, int]] = []
    on_path: set[int] = set()
    count = 0
    # (node, location or None for a key, depth, leaving)
    stack: list[tuple[yaml.Node, Location | None, int, bool]] = [(root, (), 1, False)]
    while stack:
        node, location, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        count += 1
        if count > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES:,} values once aliases are expanded, the limit for a spec",
                           node.start_mark)
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep once aliases are expanded, "
                           "the limit for a spec", node.start_mark)
        if location is not None:
            lines.setdefault(location, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
                raise _Refused(f"a whole number of {len(node.value):,} characters; the limit for a spec is "
                               f"{MAX_INT_DIGITS}", node.start_mark, location, node.start_mark.line + 1)
            continue
        if id(node) in on_path:
            raise _Refused("a recursive alias: this node contains itself", node.start_mark)
        on_path.add(id(node))
        stack.append((node, location, depth, True))
        children: list[tuple[yaml.Node, Location | None, int, bool]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                child = None
                if isinstance(key_node, yaml.ScalarNode) and location is not None:
                    child = (*location, key_node.value)
                    key_line = key_node.start_mark.line + 1
                    if key_node.value in first:
                        duplicates.append((location, key_node.value, key_node.start_mark, first[key_node.value]))
                    else:
                        first[key_node.value] = key_line
                    lines[child] = key_line
                children.append((key_node, None, depth + 1, False))
                children.append((value_node, child, depth + 1, False))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*location, index) if location is not None else None, depth + 1, False)
                        for index, item in enumerate(node.value)]
        stack.extend(reversed(children))
    return lines, duplicates


# ---------------------------------------------------------------- JSON

# The tokens that matter for the bounds: a string (skipped whole, even unterminated), a bracket, a number.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]|-?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?', re.DOTALL)


def _parse_json(text: str, source: str) -> Document:
    _check_json_bounds(text)
    duplicates: list[str] = []
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _object(pairs, duplicates))
    except json.JSONDecodeError as error:
        raise SpecError([Problem("", f"{source}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}")]) from None
    except (ValueError, RecursionError) as error:  # belt and braces: the bounds above keep these away
        raise SpecError([Problem("", f"{source}: invalid JSON: {error}")]) from None
    # JSON is YAML: a second pass with the YAML composer finds the lines (and where the duplicates are).
    lines: dict[Location, int] = {}
    located: list[tuple[Location, str, yaml.Mark, int]] = []
    for loader_class in dict.fromkeys((_Loader, _PythonLoader)):  # libyaml refuses some JSON ("\ud83d\ude00")
        loader = None
        try:
            loader = loader_class(text)
            node = loader.get_single_node()
            if node is not None:
                lines, located = _walk(node)
            break
        except yaml.YAMLError:
            continue
        finally:
            if loader is not None:
                loader.dispose()
    if duplicates:
        if located:
            raise SpecError([Problem("", f"{source}:{mark.line + 1}:{mark.column + 1}: invalid JSON: duplicate key "
                                         f"{key!r} (first on line {first})"
                                         + (f" in {format_location(where)}" if where else ""))
                             for where, key, mark, first in located])
        raise SpecError([Problem("", f"{source}: invalid JSON: duplicate key {key!r}") for key in duplicates])
    return Document(data, source, lines)


def _object(pairs: list[tuple[str, Any]], duplicates: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            duplicates.append(key)
        result[key] = value
    return result


def _check_json_bounds(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH and whole numbers longer than MAX_INT_DIGITS, before json parses them."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(_TOO_DEEP, **_line_and_column(text, match.start()))
        elif token in "]}":
            depth -= 1
        elif token[0] != '"' and len(token) > MAX_INT_DIGITS and not any(char in token for char in ".eE"):
            raise _Refused(f"a whole number of {len(token):,} characters; the limit for a spec is {MAX_INT_DIGITS}",
                           **_line_and_column(text, match.start()))


def _line_and_column(text: str, offset: int) -> dict[str, int]:
    return {"line": text.count("\n", 0, offset) + 1, "column": offset - (text.rfind("\n", 0, offset) + 1) + 1}
