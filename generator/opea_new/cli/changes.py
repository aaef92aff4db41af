"""Running a project change and reporting it the same way for update, add-service and remove-service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EXIT_FAILURE, fail, fail_usage

if TYPE_CHECKING:
    from ..updater import ChangeReport

_STYLE = {"new": "green", "updated": "cyan", "conflict": "bold red", "deleted": "yellow", "unchanged": "dim"}


def run_change(change: Callable[[], ChangeReport], *, project: Path, dry_run: bool, nothing: str,
               show_unchanged: bool | None = None) -> None:
    import subprocess

    import typer
    from copier.errors import CopierError
    from plumbum import ProcessExecutionError

    from ..gitutil import GitError
    from ..project import ProjectError
    from ..template_store import TemplateStoreError
    from ..updater import UpdateRefused

    try:
        report = change()
    except (ProjectError, UpdateRefused) as error:
        fail_usage(f"{error}; nothing was changed")
    except (TemplateStoreError, CopierError, GitError, ProcessExecutionError,
            subprocess.CalledProcessError) as error:
        # Failures inside the scratch clone: the project itself was not touched.
        fail(f"{error}; nothing was changed")
    _print_report(report, project, dry_run, nothing, dry_run if show_unchanged is None else show_unchanged)
    if report.conflicts:
        raise typer.Exit(EXIT_FAILURE)


def _print_report(report: ChangeReport, project: Path, dry_run: bool, nothing: str, show_unchanged: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    for step in report.steps:
        console.print(f"• {escape(step)}")
    if not report.changes:
        console.print(f"[green]✓[/] {escape(str(project))}: {nothing}")
        return
    rows = [(change.status, change.path) for change in report.changes]
    if show_unchanged:
        rows += [("unchanged", path) for path in report.unchanged]
    width = max(len(status) for status, _ in rows)
    for status, path in sorted(rows, key=lambda row: (list(_STYLE).index(row[0]), row[1])):
        console.print(f"  [{_STYLE[status]}]{status:<{width}}[/]  {escape(path)}")
    for path in report.kept:
        console.print(f"  [yellow]kept[/]  {escape(path)} (yours; --force deletes it)")
    counts = {status: sum(1 for change in report.changes if change.status == status) for status in _STYLE}
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    if dry_run:
        console.print(f"[bold]Dry run:[/] {summary}; nothing was written.")
    elif report.conflicts:
        console.print(f"[bold red]{len(report.conflicts)} conflict(s)[/] left as inline markers "
                      "(<<<<<<< before updating … >>>>>>> after updating): resolve them, then commit.")
    else:
        console.print(f"[green]✓[/] {summary}. Changes are left uncommitted: review with `git diff`, then commit.")
