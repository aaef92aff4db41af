"""The JSON Schema of the pipeline spec, for editors and CI checks."""

from __future__ import annotations

from typing import Any

from .model import PipelineSpec

SCHEMA_ID = "https://opea-new.invalid/schemas/pipeline-spec.json"


def spec_json_schema() -> dict[str, Any]:
    schema = PipelineSpec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
