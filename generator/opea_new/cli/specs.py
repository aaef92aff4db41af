"""Reading specs and projects for commands, with problems turned into usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import fail_usage

if TYPE_CHECKING:
    from ..spec import Pipeline


def load_spec_or_fail(path: Path, *, writing: bool = True) -> Pipeline:
    from ..spec import SpecError, load_pipeline

    if not path.is_file():
        fail_usage(f"{path}: no such spec file")
    try:
        return load_pipeline(path)
    except SpecError as error:
        _fail_with_problems(str(path), error, writing)


def load_project_or_fail(project: Path) -> Pipeline:
    """The pipeline recorded in a generated project's root answers file (found from a subfolder too, like git)."""
    from ..project import Project, recorded_pipeline

    return recorded_pipeline(Project.open(project))


def problem_lines(error, where: str | None = None) -> list[str]:
    """One line per problem, compiler style: `FILE:LINE: LOCATION: MESSAGE`."""
    lines = []
    for problem in error.problems:
        prefix = f"{where}:{problem.line}: " if where and problem.line else ""
        lines.append(f"{prefix}{problem.location}: {problem.message}" if problem.location
                     else f"{prefix}{problem.message}")
    return lines


def _fail_with_problems(where: str, error, writing: bool = True) -> None:
    count = getattr(error, "total", None) or len(error.problems)  # the list is cut past MAX_PROBLEMS
    consequence = "; nothing was written" if writing else ""
    fail_usage(f"{where}: {count:,} problem{'s' if count != 1 else ''}{consequence}",
               details=problem_lines(error, where))
