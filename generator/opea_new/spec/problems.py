"""Problems found in a spec: every one is reported, each with where it is."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
SHOWN_CHARACTERS = 80  # a value quoted in a message is cut to this many characters


@dataclass(frozen=True)
class Problem:
    location: str  # e.g. "services[2].port"; "" for the spec as a whole
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.location}: {self.message}" if self.location else f"{where}{self.message}"


class SpecError(Exception):
    """A spec with problems; nothing was generated from it."""

    def __init__(self, problems: list[Problem], *, total: int | None = None):
        self.problems = problems
        self.total = total if total is not None else len(problems)  # more than listed when the list was cut
        super().__init__("\n".join(map(str, problems)))


def format_location(location: tuple[object, ...]) -> str:
    """`services[2].port`; a key that is not a plain word is quoted: `services[0]['x[y]']`."""
    text = ""
    for part in location:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _SIMPLE_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{shown(part)}]"
    return text


def shown(value: object) -> str:
    """`repr(value)`, safe to print whatever the value: cut when long, escapes for what cannot be printed.

    repr escapes lone surrogates and other unprintable characters, so the result is always
    writable as UTF-8; an integer too long to convert to decimal is described instead.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * SHOWN_CHARACTERS:
        return f"<a whole number of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if isinstance(value, str) and len(value) > SHOWN_CHARACTERS:
        return repr(value[:SHOWN_CHARACTERS]) + f"… ({len(value)} characters)"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a huge integer inside, or nesting deeper than Python's stack
        return f"a {type(value).__name__}"
    return text if len(text) <= 2 * SHOWN_CHARACTERS else text[:2 * SHOWN_CHARACTERS] + "…"
