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

Bounds, so that parsing any text is quick and can only raise ConditionError:
a condition has at most MAX_LENGTH (1,000) characters; a literal nests lists and
objects at most MAX_DEPTH (32) deep; whole numbers and list indexes have at most
MAX_DIGITS (100) digits; numbers are finite (`NaN`, `Infinity` and `1e999` are not JSON).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "MAX_LENGTH", "Condition", "ConditionError", "parse"]

MAX_LENGTH = 1_000  # characters in a condition
MAX_DEPTH = 32  # lists and objects nested in a literal
MAX_DIGITS = 100  # digits of a whole number in a literal, or of a list index

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"[0-9]+")
_MISSING = None
_SHOWN = 80  # characters of the condition quoted in an error


class ConditionError(ValueError):
    """A condition that does not parse; `position` is the 0-based offset of the problem."""

    def __init__(self, message: str, text: str, position: int):
        shown = repr(text) if len(text) <= _SHOWN else f"{text[:_SHOWN]!r}… ({len(text):,} characters)"
        super().__init__(f"{message} at position {position + 1} of {shown}")
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
    text = str(text)
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"a condition has at most {MAX_LENGTH:,} characters; this one has {len(text):,}",
                             text, MAX_LENGTH)
    return _Parser(text).condition()


class _Refused(ValueError):
    """A JSON literal past a bound (raised from inside the JSON decoder)."""


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"a whole number has at most {MAX_DIGITS} digits; this one has {len(text.lstrip('-')):,}")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"{text} is too large for a number")
    return value


def _constant(text: str) -> Any:
    raise _Refused(f"{text} is not JSON")


_DECODER = json.JSONDecoder(parse_int=_whole_number, parse_float=_finite, parse_constant=_constant)


def _too_deep(text: str, start: int) -> int:
    """Where, from `start` on, lists and objects first nest deeper than MAX_DEPTH; -1 if they never do."""
    depth = 0
    in_string = escaped = False
    for position in range(start, len(text)):
        char = text[position]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return position
        elif char in "]}":
            depth -= 1
    return -1


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
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                raise self._error("unterminated quoted key") from None
            self.pos = end
            return value
        for pattern, convert in ((_INDEX, int), (_IDENTIFIER, str)):
            match = pattern.match(self.text, self.pos)
            if match and not _IDENTIFIER.match(self.text, match.end()):
                if pattern is _INDEX and len(match.group()) > MAX_DIGITS:
                    raise self._error(f"a list index has at most {MAX_DIGITS} digits")
                self.pos = match.end()
                return convert(match.group())
        raise self._error("expected a field name, a list index or a quoted key")

    def _literal(self) -> Any:
        if self._at_end():
            raise self._error("expected a JSON literal such as true, 3 or \"text\"")
        too_deep = _too_deep(self.text, self.pos)
        if too_deep >= 0:
            raise ConditionError(f"a literal nests lists and objects at most {MAX_DEPTH} deep", self.text, too_deep)
        try:
            value, end = _DECODER.raw_decode(self.text, self.pos)
        except _Refused as error:
            raise self._error(str(error)) from None
        except (ValueError, RecursionError):  # JSONDecodeError, and anything the bounds above did not foresee
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
