"""Render a pipeline into a project: answers for each template, copier, git, atomic move.

A project is rendered whole into a staging directory next to its destination,
committed there, and only then moved into place, so an error or Ctrl-C never
leaves a half-written project behind.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import catalog, gitutil
from .spec.names import dns_name
from .template_store import TemplateSource, ensure_templates

if TYPE_CHECKING:
    from .spec import Pipeline, Service

ROOT_ANSWERS = ".copier-answers.yml"
COMPOSE_ANSWERS = ".copier-answers.compose.yml"
SERVICES_DIR = "services"


class RenderError(RuntimeError):
    """Rendering failed; nothing was written to the destination."""


@dataclass(frozen=True)
class RenderResult:
    path: Path
    files: int
    committed: bool


# ---------------------------------------------------------------- answers


def root_answers(pipeline: Pipeline) -> dict[str, Any]:
    return pipeline.answers()


def compose_answers(pipeline: Pipeline) -> dict[str, Any]:
    answers = pipeline.answers()
    return {key: answers[key] for key in ("name", "runtime", "megaservice", "services")}


def microservice_answers(pipeline: Pipeline, service: Service) -> dict[str, Any]:
    return {
        "project_name": pipeline.name,
        "service_name": service.name,
        "service_type": service.type,
        "stub": catalog.get(service.type).stub,
        "port": service.port,
        "endpoint": service.endpoint,
    }


def service_dir(service_name: str) -> str:
    return f"{SERVICES_DIR}/{dns_name(service_name)}"


def generated_services(pipeline: Pipeline) -> list[Service]:
    """Services that get code (the others run a published image)."""
    return [service for service in pipeline.services if not service.image]


# ---------------------------------------------------------------- copier


class TemplateTrees:
    """Template versions exported as plain folders, once per run, for copier to render from.

    Rendering from a folder skips the git clone copier makes of a bundle on every
    call (3x faster). The answers file then names the folder, so `render_part`
    writes back the bundle's stable `~` location and the version tag: the file is
    byte for byte what copier writes when it renders the bundle itself.
    """

    def __init__(self, sources: dict[str, TemplateSource]):
        self.sources = sources
        self._root = Path(tempfile.mkdtemp(prefix="opea-new-templates-"))
        self._trees: dict[tuple[str, str], Path] = {}

    def tree(self, template: str, ref: str) -> Path:
        key = (template, ref)
        if key not in self._trees:
            folder = self._root / f"{template}-{len(self._trees)}"
            self.sources[template].export(ref, folder)
            self._trees[key] = folder
        return self._trees[key]

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> TemplateTrees:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class RenderJob:
    """One template instance to render: which template, which version, where, with which answers."""

    template: str
    ref: str
    destination: Path
    answers: dict[str, Any]
    answers_file: str = ROOT_ANSWERS


def render_part(trees: TemplateTrees, job: RenderJob) -> UserOwned:
    """Render one template instance; returns its matcher of user-owned (`_skip_if_exists`) paths."""
    from copier import run_copy

    tree = trees.tree(job.template, job.ref)
    worker = run_copy(str(tree), job.destination, data=job.answers, answers_file=job.answers_file, defaults=True,
                      overwrite=True, quiet=True)
    _record_source(job.destination / job.answers_file, tree, trees.sources[job.template].url, job.ref)
    return UserOwned(tuple(worker.all_skip_if_exists))


@dataclass(frozen=True)
class UserOwned:
    """The `_skip_if_exists` patterns of a template, matched the way copier matches them."""

    patterns: tuple[str, ...]

    def __call__(self, path: str) -> bool:
        return bool(self._spec.match_file(path))

    @cached_property
    def _spec(self):
        from unicodedata import normalize

        import pathspec

        style = "gitignore" if int(pathspec.__version__.split(".")[0]) >= 1 else "gitwildmatch"
        return pathspec.PathSpec.from_lines(style, (normalize("NFD", pattern) for pattern in self.patterns))


def _record_source(answers: Path, tree: Path, url: str, ref: str) -> None:
    import yaml

    def line(key: str, value: str) -> str:  # as copier writes it (to_nice_yaml)
        return yaml.dump({key: value}, indent=4, allow_unicode=True, default_flow_style=False)

    text = answers.read_text()
    rendered = line("_src_path", str(tree))
    if text.count(rendered) != 1 or "\n_commit:" in text:
        raise RenderError(f"{answers}: unexpected answers file; cannot record the template source")
    answers.write_text(text.replace(rendered, line("_commit", ref) + line("_src_path", url)))


def render_tree(pipeline: Pipeline, destination: Path, trees: TemplateTrees, ref: str) -> None:
    """Render every part of a project into an empty directory."""
    jobs = [RenderJob("megaservice", ref, destination, root_answers(pipeline)),
            RenderJob("compose", ref, destination, compose_answers(pipeline), COMPOSE_ANSWERS)]
    jobs += [RenderJob("microservice", ref, destination / service_dir(service.name),
                       microservice_answers(pipeline, service)) for service in generated_services(pipeline)]
    render_all(trees, jobs)


def render_all(trees: TemplateTrees, jobs: list[RenderJob]) -> list[UserOwned]:
    """Render independent jobs, in forked workers (one per core) when there are enough to pay for them."""
    for job in jobs:
        trees.tree(job.template, job.ref)  # export before any worker starts
    workers = min(os.cpu_count() or 1, len(jobs) // _JOBS_PER_WORKER)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [render_part(trees, job) for job in jobs]
    # Renders are CPU-bound (Jinja compiles every file) and independent.
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        return [future.result() for future in [pool.submit(render_part, trees, job) for job in jobs]]
    finally:  # on an error or Ctrl-C, drop the renders not started yet
        pool.shutdown(wait=True, cancel_futures=True)


_JOBS_PER_WORKER = 4  # below that, starting workers costs more than it saves


# ---------------------------------------------------------------- project


def render_project(pipeline: Pipeline, output: Path, *, force: bool = False) -> RenderResult:
    """Render `pipeline` as a git repository at `output`.

    `output` must not exist or be empty unless `force`: then generated files
    replace files of the same name and every other file is left alone.
    """
    output = output.absolute()
    existing = output.exists() and any(output.iterdir())
    if existing and not force:
        raise RenderError(f"{output} is not empty; pass --force to write into it")
    if output.exists() and not output.is_dir():
        raise RenderError(f"{output} exists and is not a directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    sources = ensure_templates()

    with _staging(output.parent) as staging, TemplateTrees(sources) as trees:
        render_tree(pipeline, staging, trees, sources["megaservice"].ref)
        if existing:
            with signals_deferred():
                committed = _merge_into(staging, output, pipeline)
        else:
            gitutil.init_and_commit(staging, f"Generate {pipeline.name} with opea-new")
            with signals_deferred():
                if output.exists():
                    output.rmdir()
                os.rename(staging, output)
            committed = True
    return RenderResult(output, _count_files(output), committed)


def _merge_into(staging: Path, output: Path, pipeline: Pipeline) -> bool:
    """--force into a non-empty directory: replace generated paths, keep everything else."""
    generated = [path.relative_to(staging) for path in sorted(staging.rglob("*")) if path.is_file()]
    for relative in generated:
        target = output / relative
        if target.is_dir():
            raise RenderError(f"{target} is a directory where opea-new generates a file; move it away first")
    for relative in generated:
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(staging / relative, target)
    message = f"Generate {pipeline.name} with opea-new"
    if gitutil.is_repository(output):
        return gitutil.commit_paths(output, [str(path) for path in generated], message)
    gitutil.init_and_commit(output, message, paths=[str(path) for path in generated])
    return True


@contextmanager
def _staging(parent: Path) -> Iterator[Path]:
    staging = Path(tempfile.mkdtemp(prefix=".opea-new-", dir=parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a project is an ordinary directory
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM while files move into place, then deliver them."""
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _count_files(root: Path) -> int:
    return sum(1 for path in root.rglob("*") if path.is_file() and ".git" not in path.relative_to(root).parts)
