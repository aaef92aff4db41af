"""A generated project on disk: its parts (one per rendered template) and their versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .render import COMPOSE_ANSWERS, ROOT_ANSWERS, SERVICES_DIR


class ProjectError(Exception):
    """The directory is not a usable generated project."""


@dataclass(frozen=True)
class Part:
    """One rendered template instance inside a project."""

    template: str  # megaservice | compose | microservice
    path: str  # directory relative to the project root ("." for the root parts)
    answers_file: str  # relative to `path`
    answers: dict[str, Any]

    @property
    def ref(self) -> str:
        """The template version as recorded (a git tag such as "v0.1.0")."""
        return str(self.answers.get("_commit") or "")

    @property
    def version(self) -> str | None:
        commit = str(self.answers.get("_commit") or "")
        return commit[1:] if commit.startswith("v") else commit or None

    @property
    def label(self) -> str:
        return self.template if self.path == "." else f"{self.template} {self.path}"

    def user_answers(self) -> dict[str, Any]:
        return {key: value for key, value in self.answers.items() if not key.startswith("_")}


@dataclass(frozen=True)
class Project:
    root: Path
    parts: tuple[Part, ...]

    @classmethod
    def open(cls, path: Path) -> Project:
        """The project at `path` or, like git, at the nearest folder above it (e.g. from services/NAME)."""
        path = path.absolute()
        root = next((folder for folder in (path, *path.parents) if _is_root(folder)), None)
        if root is None:
            raise ProjectError(f"{path} is not an opea-new project (no {ROOT_ANSWERS} of the megaservice "
                               "template here or above)")
        parts = [_part(root, "megaservice", ".", ROOT_ANSWERS)]
        if (root / COMPOSE_ANSWERS).is_file():
            parts.append(_part(root, "compose", ".", COMPOSE_ANSWERS))
        for answers in sorted((root / SERVICES_DIR).glob(f"*/{ROOT_ANSWERS}")):
            parts.append(_part(root, "microservice", answers.parent.relative_to(root).as_posix(), ROOT_ANSWERS))
        return cls(root, tuple(parts))

    @property
    def root_part(self) -> Part:
        return self.parts[0]

    def services(self) -> dict[str, Part]:
        """Generated microservice parts by service name."""
        return {part.answers["service_name"]: part for part in self.parts if part.template == "microservice"}


def _part(root: Path, template: str, path: str, answers_file: str) -> Part:
    location = root / path / answers_file
    try:
        answers = yaml.safe_load(location.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ProjectError(f"{location}: cannot read the answers file: {error}") from error
    if not isinstance(answers, dict) or "_src_path" not in answers:
        raise ProjectError(f"{location}: not a copier answers file (no _src_path)")
    return Part(template, path, answers_file, answers)


def _is_root(folder: Path) -> bool:
    """A folder holding the answers file of the megaservice (root) template."""
    answers = folder / ROOT_ANSWERS
    if not answers.is_file():
        return False
    try:
        data = yaml.safe_load(answers.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return True  # let _part report what is wrong with it
    if not isinstance(data, dict):
        return True
    return str(data.get("_src_path", "")).endswith("/megaservice.bundle") or "service_name" not in data
