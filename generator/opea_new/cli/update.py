"""`opea-new update`: take the installed templates' improvements into a project."""

from __future__ import annotations

from pathlib import Path

import typer

from .changes import run_change


def command(
    project: Path = typer.Option(Path("."), "--project", "-p", help="The generated project.", file_okay=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Update every part of a project (root, compose, each service) to the installed templates."""
    from ..updater import update

    run_change(lambda: update(project, dry_run=dry_run), project=project, dry_run=dry_run,
               nothing="already up to date with the installed templates")
