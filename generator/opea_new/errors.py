"""The one error hierarchy of the generator, and what a run says about itself (--verbose, scratch folders).

    OpeaNewError            an error meant for the user: printed as one message (plus details), no traceback
      UsageError   exit 2   bad input: a spec, a flag, an output path, a project's state. Nothing was written.
      WorkError    exit 1   the work itself failed (git, copier, the disk). Nothing was written either.
      Interrupted  exit 130 Ctrl-C or SIGTERM; says what is true (nothing written, or the result is complete)

Every module raises a subclass of one of these (RenderError, ProjectError, UpdateRefused, UpdateFailed,
GitError, ...); the CLI maps them to an exit code and a message in one place (cli/errors.py), together with
the few foreign errors that can reach it (the spec layer's SpecError, TemplateStoreError, copier's, OSError).

`--verbose` logs each step to stderr (logger "opea_new") and, when something fails, keeps the scratch
clone or staging folder it was working in and says where (`discard_scratch`).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("opea_new")


class OpeaNewError(Exception):
    """An error meant for the user: printed as is (with details and a hint), no traceback."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, details: list[str] | None = None, hint: str | None = None):
        super().__init__(message)
        self.details = list(details or [])
        self.hint = hint


class UsageError(OpeaNewError):
    """Bad input or a state that refuses the command (exit 2). Nothing was changed."""

    exit_code = EXIT_USAGE


class WorkError(OpeaNewError):
    """The work failed while being done (exit 1). Nothing was changed."""

    exit_code = EXIT_FAILURE


class Interrupted(OpeaNewError):
    """Ctrl-C or SIGTERM, with what is true afterwards."""

    exit_code = EXIT_INTERRUPTED


# ---------------------------------------------------------------- what a run leaves behind

_state = {"verbose": False, "outcome": None}
_kept: list[Path] = []


def set_verbose(verbose: bool) -> None:
    """Log every step to stderr and keep scratch folders of failed runs."""
    _state["verbose"] = verbose
    if verbose and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("opea-new: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO if verbose else logging.WARNING)


def verbose() -> bool:
    return bool(_state["verbose"])


def discard_scratch(path: Path, *, failed: bool) -> None:
    """Remove a scratch folder; with --verbose, keep it when the run failed (and remember it for the message)."""
    if failed and verbose() and path.exists():
        _kept.append(path)
        log.info("keeping %s for inspection (the run failed)", path)
        return
    shutil.rmtree(path, ignore_errors=True)


def kept_scratch() -> list[Path]:
    return list(_kept)


def set_outcome(outcome: str | None) -> None:
    """What is true if the run is interrupted from now on (e.g. "the project is complete at PATH")."""
    _state["outcome"] = outcome


def outcome() -> str | None:
    return _state["outcome"]


__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Interrupted", "OpeaNewError",
           "UsageError", "WorkError", "discard_scratch", "kept_scratch", "log", "outcome", "set_outcome",
           "set_verbose", "verbose"]
