"""The condition language of flow edges, loaded from the file generated projects run.

The canonical implementation is the runtime library's `opea_new_runtime/conditions.py`
(plain, stdlib-only Python that every generated megaservice runs). Loading that
very file here — the runtime itself is not installed beside the generator, whose
dependencies differ — means a spec the generator accepts is a spec the runtime
can execute: there is no second parser to drift.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from types import ModuleType

from .paths import runtime_root


@cache
def language() -> ModuleType:
    path = runtime_root() / "src" / "opea_new_runtime" / "conditions.py"
    spec = importlib.util.spec_from_file_location("opea_new._conditions", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need their module registered
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # keep __pycache__ out of the runtime's source (its wheel is built from it)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


def parse(text: str | None):
    """Parse a condition; raises `ConditionError` (see `language().ConditionError`)."""
    return language().parse(text)


def condition_error() -> type[Exception]:
    return language().ConditionError
