"""Fixtures of the docker tier: one private engine per session, projects torn down after each test.

Tests here need root (the engine is installed and started on demand, see
engine.py) and skip, saying why, when no engine can be had. Select or
deselect them with `-m docker` / `-m "not docker"`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from engine import ComposeProject, Engine, EngineUnavailable, format_timings, start_engine

_engine_timings: dict[str, float] = {}
_notes: list[str] = []


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """A running private dockerd with the stand-in python:3.11-slim; stopped at the end of the session."""
    try:
        engine = start_engine()
    except EngineUnavailable as reason:
        pytest.skip(f"no Docker engine: {reason}")
    _engine_timings.update(engine.timings)
    try:
        yield engine
    finally:
        _notes.extend(engine.notes)
        try:
            engine.prune_dangling_images()
        finally:
            engine.stop()


@pytest.fixture
def compose_project(docker_engine: Engine,
                    request: pytest.FixtureRequest) -> Iterator[Callable[[Path], ComposeProject]]:
    """compose_project(directory) -> ComposeProject on the session engine.

    The seam for project tests: render or write a project into a directory,
    hand it over, drive it (`build`, `up`, requests on 127.0.0.1, its own
    tests/test_compose.sh with `script_environment()`). Every project is
    brought down with its volumes after the test, whatever happened.
    """
    projects: list[ComposeProject] = []

    def attach(directory: Path) -> ComposeProject:
        name = f"t-{_slug(request.node.name)}-{len(projects)}"
        project = ComposeProject(docker_engine, Path(directory), name)
        projects.append(project)
        return project

    yield attach
    for project in projects:
        project.down()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def pytest_terminal_summary(terminalreporter) -> None:
    if _engine_timings:
        terminalreporter.write_line(f"docker engine start: {format_timings(_engine_timings)}")
    for note in _notes:
        terminalreporter.write_line(f"docker: {note}")
