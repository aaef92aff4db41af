"""`add-service` and `remove-service`: grow or shrink a generated project and rewire every artifact."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .changes import nothing_changed, run_change
from .errors import fail_usage
from .specs import problem_lines

if TYPE_CHECKING:
    from ..spec import Pipeline


def add_service(
    name: str = typer.Argument(..., help="Name of the new service (lower-case letters, digits, '-' or '_')."),
    type_: str = typer.Option(None, "--type", "-t", help="Service type (a comps ServiceType member). "
                              "Default: NAME when it is a type name."),
    port: int = typer.Option(None, "--port", help="Port [default: the type's port, or the next free one]."),
    endpoint: str = typer.Option(None, "--endpoint", help="Route of the service [default: the type's]."),
    image: str = typer.Option(None, "--image", help="Use this published image instead of generating code."),
    server: str = typer.Option(None, "--server", help="The node is this model server: tei (embedding, rerank), "
                               "vllm or tgi (llm); no generated code."),
    model: str = typer.Option(None, "--model", help="The model the server loads [default: the type's]."),
    after: list[str] = typer.Option(None, "--after", help="Insert downstream of this service (repeatable)."),
    before: list[str] = typer.Option(None, "--before", help="Insert upstream of this service (repeatable)."),
    project: Path = typer.Option(Path("."), "--project", "-p", help="The generated project.", file_okay=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Add a microservice to a project and rewire the flow, compose, env, tests and README.

    --after A --before B puts it between A and B (the A → B edge goes); --after A alone
    puts it downstream of A, --before B alone upstream of B; with neither it is appended
    to a single-chain flow. A dataprep service with neither runs beside the flow: OPEA's
    dataprep API, storing the documents the retrievers search. Changes are left
    uncommitted for review.
    """
    from .. import catalog
    from ..spec import SpecError

    pipeline = _changeable_pipeline(project)
    after, before = list(after or []), list(before or [])
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    asked = False
    if type_ is None:
        if catalog.find(name):
            type_ = catalog.find(name).name
        elif interactive:
            from .prompts import ask_type

            type_, asked = ask_type(f"Type of {name}"), True
        else:
            fail_usage(f"{name!r} is not a service type, so its type must be given; nothing was changed",
                       hint=f"pass --type, one of: {', '.join(catalog.names())}")
    beside = (type_ or "").strip().lower() == "dataprep" and not after and not before  # never asked where
    if not after and not before and not pipeline.graph.is_chain() and interactive and not beside:
        from .prompts import ask_position

        (after, before), asked = ask_position(pipeline, name), True
    if asked and port is None and image is None and server is None and catalog.find(type_):
        from .prompts import ask_service_details

        port, endpoint = ask_service_details(pipeline, name, type_, endpoint)
    try:
        grown = pipeline.add_service(name=name, type=type_, port=port, endpoint=endpoint, image=image,
                                     server=server, model=model, after=after, before=before)
    except SpecError as error:
        fail_usage(f"cannot add {name!r}; nothing was changed", details=problem_lines(error))

    from ..updater import change_pipeline

    run_change(lambda: change_pipeline(project, grown, dry_run=dry_run), project=project, dry_run=dry_run,
               nothing="nothing to change", summary=_added_summary(grown, name))


def remove_service(
    name: str = typer.Argument(..., help="The service to remove."),
    project: Path = typer.Option(Path("."), "--project", "-p", help="The generated project.", file_okay=False),
    force: bool = typer.Option(False, "--force", help="Also delete the service's files you own or edited."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Remove a microservice, reconnecting its neighbours when the flow stays valid.

    Files of the service that you own (app/backend.py), added or edited are kept unless --force.
    """
    from ..spec import SpecError

    pipeline = _changeable_pipeline(project)
    try:
        shrunk = pipeline.remove_service(name)
    except SpecError as error:
        fail_usage(f"cannot remove {name!r}; nothing was changed", details=problem_lines(error))

    from ..updater import change_pipeline

    run_change(lambda: change_pipeline(project, shrunk, dry_run=dry_run, force=force), project=project,
               dry_run=dry_run, nothing="nothing to change", summary=_flow_summary(shrunk))


def _changeable_pipeline(project: Path) -> Pipeline:
    """The project's pipeline, after every check that refuses to change it (exit 2, nothing written)."""
    from ..updater import check_project, recorded_pipeline, require_current

    with nothing_changed():
        opened = check_project(project)
        require_current(opened)
        return recorded_pipeline(opened)


def _added_summary(pipeline: Pipeline, name: str) -> list[str]:
    service = pipeline.service(name)
    runs = (f"{service.server} server ({service.model}), image {service.image}" if service.server
            else f"image {service.image}" if service.image else "generated code")
    graph = pipeline.graph
    if service in pipeline.documents:
        retrievers = [s.name for s in pipeline.services if s.type == "retriever"] or ["(none yet)"]
        return [f"{name}: dataprep on port {service.port}, {service.endpoint}, {runs}, beside the flow",
                f"it stores documents for the retrievers: {', '.join(retrievers)}", *_flow_summary(pipeline)]
    return [f"{name}: {service.type} on port {service.port}, {service.endpoint}, {runs}",
            f"upstream: {', '.join(graph.predecessors(name)) or '(the request: an entry node)'}; "
            f"downstream: {', '.join(graph.successors(name)) or '(a terminal node)'}",
            *_flow_summary(pipeline)]


def _flow_summary(pipeline: Pipeline) -> list[str]:
    edges = [f"{e.source} → {e.target}" + ("" if e.condition == "success" else f" [{e.condition}]")
             for e in pipeline.graph.edges]
    return [f"flow: {', '.join(edges) if edges else '(a single service)'}"]
