"""Running a project change and reporting it the same way for update, add-service and remove-service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EXIT_FAILURE, to_user_error

if TYPE_CHECKING:
    from ..updater import ChangeReport

_STYLE = {"new": "green", "updated": "cyan", "conflict": "bold red", "deleted": "yellow", "unchanged": "dim"}


def run_change(change: Callable[[], ChangeReport], *, project: Path, dry_run: bool, nothing: str,
               summary: list[str] | None = None) -> None:
    """Run `change`, print every file it touches (all files on --dry-run), exit 1 on conflicts.

    Refusals (not a project, dirty tree, damaged answers, newer templates…) exit 2; a failure while
    working exits 1 (cli/errors.py maps them). Either way the project itself was not touched: the work
    happens in a scratch clone and reaches the project in one `git apply` at the very end.
    """
    import typer

    with nothing_changed():
        report = change()
    _print_report(report, project, dry_run, nothing, summary or [])
    if report.conflicts:
        raise typer.Exit(EXIT_FAILURE)


@contextmanager
def nothing_changed() -> Iterator[None]:
    """Errors of a project change say that the project was not changed (it was not: the work is in a scratch clone)."""
    try:
        yield
    except Exception as error:
        user_error = to_user_error(error)
        if user_error is None:
            raise
        message = str(user_error)
        if "nothing was changed" not in message and "nothing was written" not in message:
            message += "; nothing was changed"
        raise type(user_error)(message, details=user_error.details, hint=user_error.hint) from error


def _print_report(report: ChangeReport, project: Path, dry_run: bool, nothing: str, summary: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    if not report.changes:
        console.print(f"[green]✓[/] {escape(str(project))}: {nothing}")
        return
    for step in report.steps:
        console.print(f"• {escape(step)}")
    for line in summary:
        console.print(f"  {escape(line)}")
    rows = [(change.status, change.path, " (merged with your edits)" if change.merged else "")
            for change in report.changes]
    if dry_run:
        rows += [("unchanged", path, "") for path in report.unchanged]
    width = max(len(status) for status, _, _ in rows)
    for status, path, note in sorted(rows, key=lambda row: (list(_STYLE).index(row[0]), row[1])):
        console.print(f"  [{_STYLE[status]}]{status:<{width}}[/]  {escape(path)}{note}")
    for path in report.kept:
        console.print(f"  [yellow]kept[/]  {escape(path)} (yours or edited by you; --force deletes it)")
    for folder in report.leftovers:
        console.print(f"  [yellow]note[/]  {escape(folder)} still exists: it holds files git ignores or you kept")
    counts = {status: sum(1 for change in report.changes if change.status == status) for status in _STYLE}
    if dry_run:
        counts["unchanged"] = len(report.unchanged)
    text = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    if dry_run:
        verdict = f"; {len(report.conflicts)} would conflict" if report.conflicts else ""
        console.print(f"[bold]Dry run:[/] {text}{verdict}. Nothing was written.")
    elif report.conflicts:
        console.print(f"[bold red]{len(report.conflicts)} conflict(s)[/] left as inline markers "
                      "(<<<<<<< before updating … >>>>>>> after updating) in:")
        for path in report.conflicts:
            console.print(f"  {escape(path)}")
        console.print("Resolve them, then review with `git diff` and commit.")
    else:
        console.print(f"[green]✓[/] {text}. Changes are left uncommitted: review with `git diff`, then commit.")
