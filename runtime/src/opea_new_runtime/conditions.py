"""Conditions on flow edges: when does a node's output flow to the next node?

An edge of the flow may carry a condition, written in the pipeline spec:

    success            the upstream node answered (the default)
    error              the upstream node failed (an error status, a timeout or
                       unreachable); the next node receives the error as its input
    PATH == LITERAL    a field of the upstream JSON output equals a JSON literal
    PATH != LITERAL    ... differs from it
    PATH               the field is truthy (not null, false, 0, "", [] or {})
    !PATH              the field is falsy

PATH is dot-separated keys and list indexes: `label`, `scores.0`,
`result."odd key"`. A missing key reads as null. LITERAL is JSON: `true`, `3`,
`"toxic"`, `null`, `[1, 2]`. Comparisons are JSON comparisons: `true` does not
equal `1`. Comparisons and truthiness only hold when the upstream node succeeded.

The language is parsed by a small hand-written parser, never `eval`. The same
file is used by opea-new to validate specs, so a spec that validates is a spec
this module runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "ConditionError", "parse"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"[0-9]+")
_MISSING = None


class ConditionError(ValueError):
    """A condition that does not parse; `position` is the 0-based offset of the problem."""

    def __init__(self, message: str, text: str, position: int):
        super().__init__(f"{message} at position {position + 1} of {text!r}")
        self.reason = message
        self.text = text
        self.position = position


@dataclass(frozen=True)
class Condition:
    kind: str  # success | error | equals | differs | truthy | falsy
    path: tuple[str | int, ...] = ()
    literal: Any = None

    def holds(self, output: Any, *, failed: bool) -> bool:
        """Whether the edge is taken, given the upstream node's output and whether it failed."""
        if self.kind == "success":
            return not failed
        if self.kind == "error":
            return failed
        if failed:
            return False
        value = _lookup(output, self.path)
        if self.kind == "equals":
            return _json_equal(value, self.literal)
        if self.kind == "differs":
            return not _json_equal(value, self.literal)
        if self.kind == "truthy":
            return _truthy(value)
        return not _truthy(value)

    @property
    def is_default(self) -> bool:
        return self.kind == "success"

    def __str__(self) -> str:
        if self.kind in ("success", "error"):
            return self.kind
        path = ".".join(_format_segment(segment) for segment in self.path)
        if self.kind == "truthy":
            return path
        if self.kind == "falsy":
            return f"!{path}"
        operator = "==" if self.kind == "equals" else "!="
        return f"{path} {operator} {json.dumps(self.literal)}"


SUCCESS = Condition("success")


def parse(text: str | None) -> Condition:
    """Parse a condition; None or blank means `success`."""
    if text is None or not str(text).strip():
        return SUCCESS
    return _Parser(str(text)).condition()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def condition(self) -> Condition:
        self._skip_spaces()
        word = self.text.strip()
        if word in ("success", "error"):
            return Condition(word)
        if self._peek("!") and not self._peek("!="):
            self.pos += 1
            self._skip_spaces()
            path = self._path()
            self._expect_end()
            return Condition("falsy", path)
        path = self._path()
        self._skip_spaces()
        if self._at_end():
            return Condition("truthy", path)
        for operator, kind in (("==", "equals"), ("!=", "differs")):
            if self._peek(operator):
                self.pos += len(operator)
                self._skip_spaces()
                literal = self._literal()
                self._expect_end()
                return Condition(kind, path, literal)
        raise self._error("expected '==', '!=' or the end of the condition")

    def _path(self) -> tuple[str | int, ...]:
        segments: list[str | int] = [self._segment()]
        while self._peek("."):
            self.pos += 1
            segments.append(self._segment())
        return tuple(segments)

    def _segment(self) -> str | int:
        if self._peek('"'):
            try:
                value, end = json.JSONDecoder().raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                raise self._error("unterminated quoted key") from None
            self.pos = end
            return value
        for pattern, convert in ((_INDEX, int), (_IDENTIFIER, str)):
            match = pattern.match(self.text, self.pos)
            if match and not _IDENTIFIER.match(self.text, match.end()):
                self.pos = match.end()
                return convert(match.group())
        raise self._error("expected a field name, a list index or a quoted key")

    def _literal(self) -> Any:
        if self._at_end():
            raise self._error("expected a JSON literal such as true, 3 or \"text\"")
        try:
            value, end = json.JSONDecoder().raw_decode(self.text, self.pos)
        except json.JSONDecodeError:
            raise self._error("expected a JSON literal such as true, 3 or \"text\"") from None
        self.pos = end
        return value

    def _expect_end(self) -> None:
        self._skip_spaces()
        if not self._at_end():
            raise self._error("unexpected text after the condition")

    def _skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def _at_end(self) -> bool:
        return self.pos >= len(self.text)

    def _error(self, message: str) -> ConditionError:
        return ConditionError(message, self.text, min(self.pos, len(self.text)))


def _lookup(value: Any, path: tuple[str | int, ...]) -> Any:
    for segment in path:
        if isinstance(value, dict):
            value = value.get(str(segment), _MISSING)
        elif isinstance(value, list) and isinstance(segment, int) and segment < len(value):
            value = value[segment]
        else:
            return _MISSING
    return value


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[key], right[key]) for key in left)
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    return type(left) is type(right) and left == right


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value != [] and value != {}


def _format_segment(segment: str | int) -> str:
    if isinstance(segment, int) or _IDENTIFIER.fullmatch(segment):
        return str(segment)
    return json.dumps(segment)
