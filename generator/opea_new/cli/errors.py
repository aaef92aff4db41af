"""Exit codes and error printing: 0 success, 1 failure while working, 2 bad input or usage."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import typer

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error meant for the user: printed as is, no traceback."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, details: list[str] | None = None, hint: str | None = None):
        super().__init__(message)
        self.details = details or []
        self.hint = hint


class UsageError(CliError):
    """Bad input: a spec, a flag, a project state. Nothing was changed."""

    exit_code = EXIT_USAGE


def fail_usage(message: str, *, details: list[str] | None = None, hint: str | None = None) -> NoReturn:
    raise UsageError(message, details=details, hint=hint)


def fail(message: str, *, details: list[str] | None = None, hint: str | None = None) -> NoReturn:
    raise CliError(message, details=details, hint=hint)


def print_error(error: CliError) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
    for line in error.details:
        console.print(f"  {escape(line)}", soft_wrap=True)
    if error.hint:
        console.print(f"[dim]hint:[/] {escape(error.hint)}", soft_wrap=True)


def run_guarded(app: typer.Typer) -> int:
    """Run the typer app; turn our errors, click's usage errors and Ctrl-C into messages and exit codes."""
    try:
        result = app(standalone_mode=False)
    except CliError as error:
        print_error(error)
        return error.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as error:
        # click (vendored by recent typer) signals usage errors and aborts with its own exception types.
        if type(error).__name__ == "Abort":
            return _interrupted()
        if hasattr(error, "show") and hasattr(error, "exit_code"):
            error.show()
            return error.exit_code
        raise
    if result == EXIT_INTERRUPTED:  # typer >= 0.17 turns Ctrl-C into Exit(130), returned as a value here
        return _interrupted()
    return result if isinstance(result, int) else EXIT_OK


def _interrupted() -> int:
    print("\nInterrupted; nothing was changed.", file=sys.stderr)
    return EXIT_INTERRUPTED
