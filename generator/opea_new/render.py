"""Render a pipeline into a project: answers for each template, copier, git, atomic move.

A project is rendered whole into a staging directory next to its destination,
committed there, and only then moved into place, so an error or Ctrl-C never
leaves a half-written project behind.
"""

from __future__ import annotations

import contextlib
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
from .errors import UsageError, WorkError, discard_scratch, log, set_outcome
from .spec.names import dns_name
from .template_store import CACHE_LOCATION, TemplateSource, ensure_templates

if TYPE_CHECKING:
    from .spec import Pipeline, Service

ROOT_ANSWERS = ".copier-answers.yml"
COMPOSE_ANSWERS = ".copier-answers.compose.yml"
SERVICES_DIR = "services"


class RenderError(WorkError):
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
    compose = {key: answers[key] for key in ("name", "runtime", "megaservice", "services")}
    if pipeline.documents:  # only then: the answers of a project without keep the shape of earlier releases
        compose["documents"] = [service.name for service in pipeline.documents]
    return compose


def microservice_answers(pipeline: Pipeline, service: Service) -> dict[str, Any]:
    """A service's answers; a dataprep service beside the flow also names the node it embeds with, and the
    retrievers of its pipeline install the stores it fills."""
    answers = {
        "project_name": pipeline.name,
        "service_name": service.name,
        "service_type": service.type,
        "stub": catalog.get(service.type).stub,
        "port": service.port,
        "endpoint": service.endpoint,
    }
    if pipeline.documents and answers["stub"] == "retriever":  # only then: numpy and psycopg in its image
        answers["stores"] = True
    if service in pipeline.documents:
        node = pipeline.embedding_node
        answers["stub"] = "dataprep"
        answers["embedding"] = node and {"name": node.name, "port": node.port, "endpoint": node.endpoint,
                                         "server": node.server}
    return answers


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
        self.failed = False

    def tree(self, template: str, ref: str) -> Path:
        key = (template, ref)
        if key not in self._trees:
            folder = self._root / f"{template}-{len(self._trees)}"
            self.sources[template].export(ref, folder)
            self._trees[key] = folder
        return self._trees[key]

    def close(self) -> None:
        discard_scratch(self._root, failed=self.failed)

    def __enter__(self) -> TemplateTrees:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.failed = kind is not None
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
    log.info("rendering the %s template %s into %s", job.template, job.ref, job.destination)
    try:
        worker = run_copy(str(tree), job.destination, data=job.answers, answers_file=job.answers_file,
                          defaults=True, overwrite=True, quiet=True)
    except (OSError, KeyboardInterrupt):
        raise
    except Exception as error:  # copier's, and Jinja's from inside a template: the work failed
        raise RenderError(f"rendering the {job.template} template {job.ref} failed: {type(error).__name__}: "
                          f"{error}") from error
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


class OutputRefused(UsageError):
    """The output cannot take the project (exit 2); nothing was written."""


def check_output(output: Path, *, force: bool) -> Path:
    """The absolute output path if a project can be written there; OutputRefused saying why not.

    Checked before anything is rendered: every component within the file system's name limit, no file
    on the way, a writable folder to create it in (or itself, when it exists), empty unless `force`.
    `--force` is checked file by file once the project is rendered (`_force_plan`).
    """
    try:
        output = Path(os.path.abspath(output))
    except OSError as error:  # the current directory was deleted under the shell
        raise OutputRefused(f"the current directory is unusable ({error.strerror}); nothing was written",
                            hint="cd to an existing folder, or pass an absolute --output") from None
    anchor = next(folder for folder in (output, *output.parents) if os.path.lexists(folder))
    name_max = _pathconf(anchor, "PC_NAME_MAX", 255)
    for part in output.parts[1:]:
        if len(os.fsencode(part)) > name_max:
            raise OutputRefused(f"cannot create the output: its name {part[:40]!r}… ({len(os.fsencode(part))} "
                                f"bytes) is longer than the file system's limit of {name_max} bytes for one "
                                "name; nothing was written")
    if len(os.fsencode(str(output))) + 64 > _pathconf(anchor, "PC_PATH_MAX", 4096):
        raise OutputRefused(f"cannot create the output: its path ({len(os.fsencode(str(output)))} bytes) is too "
                            "long for the file system; nothing was written")
    if anchor != output:
        if not anchor.is_dir():
            raise OutputRefused(f"cannot create {output}: {anchor} is a file, not a folder; nothing was written")
        if not os.access(anchor, os.W_OK | os.X_OK):
            raise OutputRefused(f"cannot create {output}: {anchor} is not writable; nothing was written")
        return output
    if not output.is_dir():
        raise OutputRefused(f"{output} exists and is not a directory; nothing was written")
    try:
        entries = os.listdir(output)
    except OSError as error:
        raise OutputRefused(f"cannot read {output}: {error.strerror}; nothing was written") from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise OutputRefused(f"{output} is not writable; nothing was written")
    if entries and not force:
        raise OutputRefused(f"{output} is not empty; nothing was written",
                            hint="choose another --output, or pass --force to add the generated files to it "
                                 "(it refuses, writing nothing, if that would change any existing file)")
    return output


def render_project(pipeline: Pipeline, output: Path, *, force: bool = False) -> RenderResult:
    """Render `pipeline` as a git repository at `output`.

    `output` must not exist or be empty, unless `force`: then the generated files are added to it — only
    where no file is, or where an identical one is — and nothing is written if any generated path would
    change an existing file, replace a folder, or go through a symbolic link (OutputRefused lists them all).
    A new output is renamed into place in one step; an existing folder (`.` included) is kept and filled.
    """
    output = check_output(output, force=force)
    existing = output.exists()
    populated = existing and any(not _is_staging(name) for name in os.listdir(output))
    sources = templates()
    anchor = output if existing else next(folder for folder in output.parents if folder.exists())
    log.info("rendering %s into a staging folder in %s", pipeline.name, anchor)
    with _staging(anchor) as staging, TemplateTrees(sources) as trees:
        render_tree(pipeline, staging, trees, sources["megaservice"].ref)
        message = f"Generate {pipeline.name} with opea-new"
        if populated:
            committed = _merge_into(staging, output, message)
        else:
            gitutil.init_and_commit(staging, message)
            _move_into_place(staging, output)
            committed = True
    return RenderResult(output, _count_files(output), committed)


def templates() -> dict[str, TemplateSource]:
    """The template sources, with an unusable HOME (where they are cached) said as such (exit 2)."""
    home = os.environ.get("HOME")
    problem = None
    if home is not None and not os.path.isabs(home):
        problem = f"HOME is {home!r}, not an absolute path"
    elif home is not None and not os.path.isdir(home):
        problem = f"HOME ({home}) is not an existing folder"
    if problem is None:
        try:
            cache = Path(CACHE_LOCATION).expanduser()
        except RuntimeError as error:
            problem = f"there is no home folder ({error})"
        else:
            anchor = next(folder for folder in (cache, *cache.parents) if os.path.lexists(folder))
            if not anchor.is_dir():
                problem = f"{anchor} is a file, where opea-new keeps its template cache ({CACHE_LOCATION})"
            elif not os.access(anchor, os.W_OK | os.X_OK):
                problem = f"{anchor} is not writable, and opea-new keeps its template cache there ({CACHE_LOCATION})"
    if problem is None:
        try:
            return ensure_templates()
        except OSError as error:
            problem = f"cannot prepare the template cache in {CACHE_LOCATION}: {error.strerror or error}"
    raise UsageError(f"{problem}; nothing was written", hint="set HOME to a writable folder of yours")


def _move_into_place(staging: Path, output: Path) -> None:
    """The finished project to `output`: one rename of the staging folder, or its entries into an empty folder."""
    with signals_deferred(), _locked(output if output.exists() else staging.parent):
        if output.exists() and staging.parent != output:
            raise OutputRefused(f"{output} appeared while the project was generated (another opea-new run?); "
                                "nothing was written")
        if not output.exists():
            log.info("moving the project to %s", output)
            missing = [folder for folder in output.parents if not folder.exists()]
            try:
                output.parent.mkdir(parents=True, exist_ok=True)
                os.rename(staging, output)
            except OSError as error:
                for folder in missing:  # innermost first
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                raise WorkError(f"cannot move the project to {output}: {error.strerror or error}; "
                                "nothing was written") from None
        else:
            others = [name for name in os.listdir(output) if not _is_staging(name)]
            if others:
                raise OutputRefused(f"{output} was written to while the project was generated (another opea-new "
                                    f"run?): {', '.join(sorted(others)[:5])}; nothing was written")
            log.info("moving the project's files into %s", output)
            moved: list[str] = []
            try:
                for name in sorted(os.listdir(staging)):
                    os.rename(staging / name, output / name)
                    moved.append(name)
            except OSError as error:
                for name in reversed(moved):
                    os.rename(output / name, staging / name)
                raise WorkError(f"cannot move the project into {output}: {error.strerror or error}; "
                                "nothing was written") from None
        set_outcome(f"the project is complete at {output}")


def _is_staging(name: str) -> bool:
    return name.startswith(_STAGING_PREFIX)


def _merge_into(staging: Path, output: Path, message: str) -> bool:
    """--force into a non-empty folder: add the generated files; refuse, writing nothing, if any would change."""
    plan = _force_plan(staging, output)
    log.info("--force: adding %d generated files to %s", len(plan), output)
    created: list[Path] = []
    repository = gitutil.is_repository(output)
    with signals_deferred(), _locked(output):
        try:
            for relative in plan:
                target = output / relative
                for folder in reversed([target.parent, *target.parent.parents]):
                    if output in folder.parents and not folder.exists():
                        folder.mkdir()
                        created.append(folder)
                _copy_new(staging / relative, target)
                created.append(target)
            paths = [path.as_posix() for path in _generated_files(staging)]
            if repository:
                committed = gitutil.commit_paths(output, paths, message)
            else:
                created.append(output / ".git")
                gitutil.init_and_commit(output, message, paths=paths)
                committed = True
        except BaseException:
            for path in reversed(created):  # back to exactly what was there
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            raise
        set_outcome(f"the project is complete at {output}")
    return committed


def _force_plan(staging: Path, output: Path) -> list[Path]:
    """The generated files to write into `output` (missing ones); OutputRefused listing every one that would change
    an existing file, replace a folder, or go through a symbolic link."""
    problems: list[str] = []
    writes: list[Path] = []
    git_dir = output / ".git"
    if git_dir.is_symlink() or (git_dir.exists() and not git_dir.is_dir()):
        problems.append(".git: not a plain folder (a link or a worktree file): committing would write outside "
                        f"{output}")
    on_the_way: dict[str, int] = {}  # a link or a file where a folder goes: said once, with how many files
    for relative in _generated_files(staging):
        problem, missing = _force_check(output, relative, staging / relative)
        if problem and problem.startswith("its folder "):
            on_the_way[problem.removeprefix("its folder ")] = on_the_way.get(problem.removeprefix("its folder "), 0) + 1
        elif problem:
            problems.append(f"{relative.as_posix()}: {problem}")
        elif missing:
            writes.append(relative)
    problems += [f"{problem} (on the way to {count} generated file{'s' if count != 1 else ''})"
                 for problem, count in on_the_way.items()]
    if problems:
        shown = problems[:50] + ([f"… and {len(problems) - 50} more"] if len(problems) > 50 else [])
        raise OutputRefused(
            f"--force would change {len(problems)} existing path{'s' if len(problems) != 1 else ''} in {output}; "
            "nothing was written", details=shown,
            hint="--force only adds files: move these away (or choose another --output) and run again")
    return writes


def _force_check(output: Path, relative: Path, generated: Path) -> tuple[str | None, bool]:
    """(what is wrong with writing `relative` into `output`, whether it has to be written)."""
    current = output
    for position, part in enumerate(relative.parts):
        current = current / part
        last = position == len(relative.parts) - 1
        if current.is_symlink():
            return f"{'' if last else 'its folder '}{current.relative_to(output)} is a symbolic link (to " \
                   f"{os.readlink(current)}); opea-new does not write through links", False
        if not current.exists():
            return None, True
        if not last and not current.is_dir():
            return f"its folder {current.relative_to(output)} is a file where opea-new generates a folder", False
    if current.is_dir():
        return "a folder where opea-new generates a file", False
    try:
        same = _read_nofollow(current) == generated.read_bytes()
    except OSError as error:
        return f"cannot be read ({error.strerror}) to compare it with the generated file", False
    return (None if same else "your file differs from the generated one (--force never changes a file)"), False


def _read_nofollow(path: Path) -> bytes:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read()


def _copy_new(source: Path, target: Path) -> None:
    """Create `target` (it must not exist) with `source`'s bytes and mode."""
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         source.stat().st_mode & 0o777)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(source.read_bytes())


def _generated_files(staging: Path) -> list[Path]:
    return [path.relative_to(staging) for path in sorted(staging.rglob("*"))
            if (path.is_file() or path.is_symlink()) and ".git" not in path.relative_to(staging).parts[:1]]


_STAGING_PREFIX = ".opea-new-"


@contextmanager
def _staging(parent: Path) -> Iterator[Path]:
    try:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=parent))
    except OSError as error:
        raise OutputRefused(f"cannot write in {parent}: {error.strerror}; nothing was written") from None
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a project is an ordinary directory
    failed = True
    try:
        yield staging
        failed = False
    finally:
        discard_scratch(staging, failed=failed)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on a folder (advisory: two opea-new runs moving into the same place take turns)."""
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path if path.is_dir() else path.parent, name)
    except (OSError, ValueError):
        return default


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
