"""Exit codes and error printing, in one place: 0 success, 1 failure while working, 2 bad input or usage.

Every error the generator raises is an `OpeaNewError` (errors.py); `run_guarded` maps it — and the few
foreign errors that can reach the CLI (the spec layer's SpecError, TemplateStoreError, copier's errors,
OSError, click's usage errors) — to an exit code and one message. Anything else is a bug: exit 1 with a
one-line message (the traceback with --verbose).
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, NoReturn

from ..errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Interrupted,
    OpeaNewError,
    UsageError,
    WorkError,
    kept_scratch,
    outcome,
    verbose,
)

if TYPE_CHECKING:
    import typer

CliError = OpeaNewError  # the name commands used before the hierarchy moved to errors.py

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "CliError", "UsageError", "WorkError",
           "fail", "fail_usage", "print_error", "run_guarded", "to_user_error"]


def fail_usage(message: str, *, details: list[str] | None = None, hint: str | None = None) -> NoReturn:
    raise UsageError(message, details=details, hint=hint)


def fail(message: str, *, details: list[str] | None = None, hint: str | None = None) -> NoReturn:
    raise WorkError(message, details=details, hint=hint)


def print_error(error: OpeaNewError) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    label = "interrupted" if isinstance(error, Interrupted) else "error"
    console.print(f"[bold red]{label}:[/] {escape(str(error))}", soft_wrap=True)
    for line in error.details:
        console.print(f"  {escape(line)}", soft_wrap=True)
    if error.hint:
        console.print(f"[dim]hint:[/] {escape(error.hint)}", soft_wrap=True)
    for folder in kept_scratch():
        console.print(f"[dim]kept for inspection:[/] {escape(str(folder))}", soft_wrap=True)


def to_user_error(error: BaseException) -> OpeaNewError | None:
    """The user-facing form of an error that reached the CLI; None for click's own (it prints itself)."""
    from copier.errors import CopierError

    from ..spec import SpecError
    from ..template_store import TemplateStoreError

    if isinstance(error, OpeaNewError):
        return error
    if isinstance(error, SpecError):
        return UsageError(f"{error.total:,} problem{'s' if error.total != 1 else ''}; nothing was changed",
                          details=[str(problem) for problem in error.problems])
    if isinstance(error, TemplateStoreError):
        return WorkError(f"{error}; nothing was changed",
                         hint="opea-new keeps its templates in ~/.cache/opea-new: HOME must be a writable folder")
    if isinstance(error, CopierError):
        return WorkError(f"rendering a template failed: {error}; nothing was changed")
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return WorkError(f"{where}{error.strerror or error}; nothing was changed")
    if isinstance(error, (UnicodeError, RecursionError, MemoryError)):
        return WorkError(f"{type(error).__name__}: {error}")
    return None


def run_guarded(app: typer.Typer) -> int:
    """Run the typer app; every error becomes a message and an exit code (never a traceback without --verbose)."""
    import typer

    try:  # typer >= 0.22 vendors click
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older typer on click
        from click.exceptions import ClickException

    signal.signal(signal.SIGINT, _on_interrupt)
    try:
        return _run(app, typer, ClickException)
    except KeyboardInterrupt:  # one landing while an error was being reported
        return _interrupted()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run is over: a late Ctrl-C changes nothing


_received: list[int] = []


def _on_interrupt(signum: int, _frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _run(app: typer.Typer, typer, ClickException) -> int:  # noqa: N803 - a class passed in
    try:
        result = app(standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()
    except ClickException as error:
        error.show()
        return error.exit_code
    except Exception as error:  # noqa: BLE001 - the one place every error is turned into a message
        if _received:  # Ctrl-C came first; this is what it broke (e.g. a cleanup racing a stopped git)
            return _interrupted()
        user_error = to_user_error(error)
        if user_error is None:
            user_error = WorkError(f"unexpected {type(error).__name__}: {error}",
                                   hint="this is a bug in opea-new; run again with --verbose for the traceback")
            if verbose():
                import traceback

                traceback.print_exception(error)
        if isinstance(user_error, Interrupted):
            print_error(user_error)
            return EXIT_INTERRUPTED
        print_error(user_error)
        return user_error.exit_code
    if result == EXIT_INTERRUPTED:  # typer >= 0.17 turns Ctrl-C into Exit(130), returned as a value here
        return _interrupted()
    return result if isinstance(result, int) else EXIT_OK


def _interrupted() -> int:
    print(f"\nInterrupted; {outcome() or 'nothing was changed'}.", file=sys.stderr)
    return EXIT_INTERRUPTED
