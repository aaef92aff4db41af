"""A generated project on disk: its parts (one per rendered template) and their versions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .render import COMPOSE_ANSWERS, ROOT_ANSWERS, SERVICES_DIR

if TYPE_CHECKING:
    from .spec import Pipeline


class ProjectError(UsageError):
    """The directory is not a usable generated project (exit 2)."""


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
                               "template here or above)",
                               hint="run this inside a generated project, or pass --project DIR")
        parts = [_part(root, "megaservice", ".", ROOT_ANSWERS)]
        if (root / COMPOSE_ANSWERS).is_file() or (root / COMPOSE_ANSWERS).is_symlink():
            parts.append(_part(root, "compose", ".", COMPOSE_ANSWERS))
        services = root / SERVICES_DIR
        # The project's own files only: a linked services folder, or a linked folder in it, is not followed.
        if services.is_dir() and not services.is_symlink():
            for folder in sorted(services.iterdir()):
                answers = folder / ROOT_ANSWERS
                if folder.is_dir() and not folder.is_symlink() and (answers.is_file() or answers.is_symlink()):
                    parts.append(_part(root, "microservice", folder.relative_to(root).as_posix(), ROOT_ANSWERS))
        return cls(root, tuple(parts))

    @property
    def root_part(self) -> Part:
        return self.parts[0]

    def services(self) -> dict[str, Part]:
        """Generated microservice parts by service name."""
        return {part.answers["service_name"]: part for part in self.parts if part.template == "microservice"}


def read_answers(location: Path, shown: str | None = None) -> tuple[dict[str, Any], dict]:
    """An answers file as a mapping, read within the spec layer's bounds (size, depth, values, UTF-8),
    never through a symbolic link; ProjectError naming the file (and the line) otherwise. Also returns the
    line of every value (location tuple -> line)."""
    from .spec import SpecError
    from .spec.load import read_document

    shown = shown or str(location)
    if location.is_symlink():
        raise ProjectError(f"{shown} is a symbolic link (to {os.readlink(location)}); opea-new reads a project's "
                           "answers files only from the project itself")
    try:
        document = read_document(location, source=shown)
    except SpecError as error:
        raise ProjectError(f"{shown}: cannot read the answers file: "
                           + "; ".join(str(problem) for problem in error.problems)) from None
    return document.data, document.lines


def _part(root: Path, template: str, path: str, answers_file: str) -> Part:
    location = root / path / answers_file
    shown = (Path(path) / answers_file).as_posix()
    answers, _ = read_answers(location, shown)
    if "_src_path" not in answers:
        raise ProjectError(f"{shown}: not a copier answers file (no _src_path)")
    return Part(template, path, answers_file, answers)


def _is_root(folder: Path) -> bool:
    """A folder holding the answers file of the megaservice (root) template."""
    answers = folder / ROOT_ANSWERS
    if not (answers.is_file() or answers.is_symlink()):
        return False
    try:
        data, _ = read_answers(answers)
    except ProjectError:
        return True  # let _part report what is wrong with it
    return str(data.get("_src_path", "")).endswith("/megaservice.bundle") or "service_name" not in data


# ---------------------------------------------------------------- what the answers files must hold

_PIPELINE_KEYS = ("name", "description", "runtime", "megaservice", "services", "flow")
_RECORDED = {  # what opea-new always writes, so what rendering the recorded version needs
    "megaservice": ("runtime", "megaservice", "services", "flow"),
    "compose": ("runtime", "megaservice", "services"),
}
_SERVICE_KEYS = {"service_name": "name", "service_type": "type", "port": "port", "endpoint": "endpoint"}


def recorded_pipeline(project: Project) -> Pipeline:
    """The pipeline of the root answers file; ProjectError with every problem located (file:line: key: what)."""
    pipeline, problems = _pipeline_of(project.root, project.root_part)
    if problems:
        raise ProjectError(f"{ROOT_ANSWERS} does not hold a valid pipeline (edited by hand?)", details=problems,
                           hint="restore it from git (git log -p -- .copier-answers.yml), or fix the keys named")
    return pipeline


def check_parts(project: Project, pipeline: Pipeline) -> None:
    """Every part's answers usable for rendering its recorded version, and each service folder its own.

    ProjectError (exit 2) naming the file and the key: a compose or service answers file edited into
    something that cannot be rendered, a `service_name` that does not match its folder or the pipeline,
    two folders claiming one service.
    """
    from .render import service_dir

    problems: list[str] = []
    for part in project.parts[1:]:
        if part.template == "compose":
            problems += _pipeline_of(project.root, part)[1]
    generated = {service.name for service in pipeline.generated_services}
    for part in project.parts:
        if part.template != "microservice":
            continue
        where = f"{part.path}/{part.answers_file}"
        found = _service_problems(part, where)
        problems += found
        if found:
            continue
        name = part.answers["service_name"]
        if part.path != service_dir(name):
            problems.append(f"{where}: service_name: {name!r} does not match its folder {part.path}/ "
                            f"(the folder of {name!r} is {service_dir(name)}/)")
        elif name not in generated:
            problems.append(f"{where}: service_name: {name!r} is not a generated service of the pipeline in "
                            f"{ROOT_ANSWERS} ({', '.join(sorted(generated)) or 'none'})")
    if problems:
        raise ProjectError("the project's answers files do not match what opea-new generated (edited by hand?)",
                           details=problems, hint="restore them from git, or fix the keys named")


def _pipeline_of(root: Path, part: Part) -> tuple[Pipeline | None, list[str]]:
    from .spec import Pipeline, SpecError
    from .spec.load import Document
    from .spec.validate import validate

    where = (Path(part.path) / part.answers_file).as_posix()
    answers = part.answers
    _, lines = read_answers(root / part.path / part.answers_file, where)
    problems = [f"{where}:{lines.get((key,), 1)}: {key}: is required (opea-new always records it)"
                if key not in answers else f"{where}:{lines.get((key,), 1)}: {key}: must not be empty"
                for key in _RECORDED[part.template] if answers.get(key) is None]
    if "description" in answers and answers["description"] is None:  # other types: the spec's own check
        # opea-new writes "" when there is none; copier refuses anything but a string when it renders the base
        problems.append(f"{where}:{lines.get(('description',), 1)}: description: must be a string "
                        "(\"\" for none), not null")
    for key, fields in (("megaservice", ("port", "endpoint", "protocol")),):
        value = answers.get(key)
        if isinstance(value, dict):
            problems += [f"{where}:{lines.get((key,), 1)}: {key}.{field}: is required" for field in fields
                         if value.get(field) is None]
    spec = {key: answers[key] for key in _PIPELINE_KEYS if key in answers and answers[key] is not None}
    if spec.get("description") == "":  # what opea-new writes for none; any other non-string is refused below
        spec.pop("description")
    if isinstance(spec.get("services"), list):
        spec["services"] = [{k: v for k, v in service.items() if v is not None} if isinstance(service, dict)
                            else service for service in spec["services"]]
    try:
        pipeline = Pipeline.from_spec(validate(Document(spec, where, lines)))
    except SpecError as error:
        problems += [_located(where, problem) for problem in error.problems]
        pipeline = None
    if pipeline is not None and "documents" in answers:  # compose: the dataprep services beside the flow
        beside = [service.name for service in pipeline.documents]
        if answers["documents"] != beside:
            problems.append(f"{where}:{lines.get(('documents',), 1)}: documents: must be {beside!r}, the dataprep "
                            f"services beside the flow of its services and flow, not {answers['documents']!r}")
    return (None if problems else pipeline), problems


def _service_problems(part: Part, where: str) -> list[str]:
    from .spec import SpecError, pipeline_from_data

    answers = part.answers
    problems = [f"{where}: {key}: is required" for key in (*_SERVICE_KEYS, "project_name", "stub")
                if answers.get(key) is None]
    problems += [f"{where}: {key}: must be a string, not {type(answers[key]).__name__}"
                 for key in ("project_name", "stub") if key in answers and not isinstance(answers[key], str)]
    if "stores" in answers and not isinstance(answers["stores"], bool):  # a retriever beside a dataprep service
        problems.append(f"{where}: stores: must be true or false, not {answers['stores']!r}")
    if problems:
        return problems
    service = {field: answers[key] for key, field in _SERVICE_KEYS.items()}
    port = service["port"]
    other = 2 if port == 1 else 1  # a megaservice port that cannot collide: only the service is checked here
    try:
        pipeline_from_data({"name": "project", "megaservice": {"port": other}, "services": [service]}, source=where)
    except SpecError as error:
        keys = {field: key for key, field in _SERVICE_KEYS.items()}
        for problem in error.problems:
            if not problem.location.startswith("services[0]"):
                continue  # the one-service pipeline's, not this service's (a dataprep alone has nothing to call)
            field = problem.location.removeprefix("services[0]").lstrip(".").split(".")[0]
            problems.append(f"{where}: {keys.get(field, field or 'service')}: {problem.message}")
    return problems


def _located(where: str, problem) -> str:
    line = f":{problem.line}" if problem.line else ""
    return f"{where}{line}: {problem.location}: {problem.message}" if problem.location else \
        f"{where}{line}: {problem.message}"
