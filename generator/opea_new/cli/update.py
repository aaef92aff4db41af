"""`opea-new update`: take the installed templates' improvements into a project."""

from __future__ import annotations

from pathlib import Path

import typer

from .changes import run_change


def command(
    project: Path = typer.Option(Path("."), "--project", "-p", help="The generated project.", file_okay=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Update every part of a project (root, compose, each service) to the installed templates.

    Your edits are kept: files you own (megaservice/hooks.py, services/*/app/backend.py, files you
    added) are never written over; template files you edited are 3-way merged, and real conflicts
    are left as inline markers, listed, and exit 1. Changes are left uncommitted for review.
    --dry-run lists every file (new, updated, conflict, deleted, unchanged) and writes nothing.
    Plain `copier update` at the project root (or in services/NAME) works too.
    """
    from ..updater import update

    run_change(lambda: update(project, dry_run=dry_run), project=project, dry_run=dry_run,
               nothing="already up to date with the installed templates")
