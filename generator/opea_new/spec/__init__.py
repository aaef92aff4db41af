"""Pipeline specs: read, validate, resolve.

    load_pipeline(path_or_text) -> Pipeline     every problem at once, or SpecError
    pipeline_from_data(dict) -> Pipeline        the same for data built in code (prompts)
    load_answers(path) -> Pipeline              the pipeline recorded in a project
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .graph import Edge, Graph, GraphError
from .load import Document, read_document
from .pipeline import Megaservice, Pipeline, Service
from .problems import Problem, SpecError
from .schema import spec_json_schema
from .validate import validate

__all__ = [
    "Edge", "Graph", "GraphError", "Megaservice", "Pipeline", "Problem", "Service", "SpecError",
    "default_pipeline", "load_answers", "load_pipeline", "pipeline_from_data", "spec_json_schema",
]


def load_pipeline(path_or_text: Path | str, *, source: str | None = None) -> Pipeline:
    document = read_document(path_or_text, source)
    return Pipeline.from_spec(validate(document))


def pipeline_from_data(data: dict[str, Any], *, source: str = "<spec>") -> Pipeline:
    return Pipeline.from_spec(validate(Document(data, source)))


def load_answers(path: Path) -> Pipeline:
    document = read_document(path)
    return Pipeline.from_answers(document.data)


def default_pipeline() -> Pipeline:
    from .default import DEFAULT_SPEC

    return load_pipeline(DEFAULT_SPEC, source="default pipeline")
