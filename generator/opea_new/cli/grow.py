"""`add-service` and `remove-service`: grow or shrink a generated project and rewire every artifact."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .changes import run_change
from .errors import fail_usage
from .specs import load_project_or_fail, problem_lines


def add_service(
    name: str = typer.Argument(..., help="Name of the new service (lower-case letters, digits, '-' or '_')."),
    type_: str = typer.Option(None, "--type", "-t", help="Service type (a comps ServiceType member). "
                              "Default: NAME when it is a type name."),
    port: int = typer.Option(None, "--port", help="Port [default: the type's port, or the next free one]."),
    endpoint: str = typer.Option(None, "--endpoint", help="Route of the service [default: the type's]."),
    image: str = typer.Option(None, "--image", help="Use this published image instead of generating code."),
    after: list[str] = typer.Option(None, "--after", help="Insert downstream of this service (repeatable)."),
    before: list[str] = typer.Option(None, "--before", help="Insert upstream of this service (repeatable)."),
    project: Path = typer.Option(Path("."), "--project", "-p", help="The generated project.", file_okay=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Add a microservice to a project and rewire the flow, compose, env, tests and README."""
    from .. import catalog
    from ..spec import SpecError

    pipeline = load_project_or_fail(project)
    after, before = list(after or []), list(before or [])
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if type_ is None:
        if catalog.find(name):
            type_ = name
        elif interactive:
            from .prompts import ask_type

            type_ = ask_type(f"Type of {name}")
        else:
            fail_usage(f"{name!r} is not a service type, so its type must be given",
                       hint=f"pass --type, one of: {', '.join(catalog.names())}")
    if not after and not before and not pipeline.graph.is_chain() and interactive:
        from .prompts import ask_position

        after, before = ask_position(pipeline, name)
    try:
        grown = pipeline.add_service(name=name, type=type_, port=port, endpoint=endpoint, image=image,
                                     after=after, before=before)
    except SpecError as error:
        fail_usage(f"cannot add {name!r}; nothing was changed",
                   details=problem_lines(error))

    from ..updater import change_pipeline

    run_change(lambda: change_pipeline(project, grown, dry_run=dry_run), project=project, dry_run=dry_run,
               nothing="nothing to change")


def remove_service(
    name: str = typer.Argument(..., help="The service to remove."),
    project: Path = typer.Option(Path("."), "--project", "-p", help="The generated project.", file_okay=False),
    force: bool = typer.Option(False, "--force", help="Also delete the service's user-owned files."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Remove a microservice, reconnecting its neighbours when the flow stays valid."""
    from ..spec import SpecError

    pipeline = load_project_or_fail(project)
    try:
        shrunk = pipeline.remove_service(name)
    except SpecError as error:
        fail_usage(f"cannot remove {name!r}; nothing was changed",
                   details=problem_lines(error))

    from ..updater import change_pipeline

    run_change(lambda: change_pipeline(project, shrunk, dry_run=dry_run, force=force), project=project,
               dry_run=dry_run, nothing="nothing to change")
