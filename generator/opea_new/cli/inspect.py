"""`validate`, `graph` and `schema`: look at a spec or a project without generating anything."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .errors import fail_usage
from .specs import load_project_or_fail, load_spec_or_fail


def validate(
    spec: Path = typer.Option(..., "--spec", "-s", help="Pipeline spec to check (YAML or JSON).", dir_okay=False),
) -> None:
    """Check a spec and report every problem at once (exit 2 if any)."""
    pipeline = load_spec_or_fail(spec, writing=False)
    generated = sum(1 for service in pipeline.services if not service.image)
    print(f"{spec}: valid — {len(pipeline.services)} services ({generated} generated), "
          f"{len(pipeline.graph.edges)} edges, runtime {pipeline.runtime}, "
          f"megaservice {pipeline.megaservice.protocol} on :{pipeline.megaservice.port}"
          f"{pipeline.megaservice.endpoint}")


def graph(
    spec: Path = typer.Option(None, "--spec", "-s", help="Pipeline spec (YAML or JSON).", dir_okay=False),
    project: Path = typer.Option(None, "--project", "-p", help="A generated project.", file_okay=False),
) -> None:
    """Print the pipeline's flow as a Mermaid diagram."""
    if spec and project:
        fail_usage("pass --spec or --project, not both")
    pipeline = load_spec_or_fail(spec, writing=False) if spec else load_project_or_fail(project or Path.cwd())
    print(pipeline.mermaid())


def schema() -> None:
    """Print the JSON Schema of the pipeline spec (for editor completion and CI checks)."""
    from ..spec import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=2))
