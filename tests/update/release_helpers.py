"""Helpers of the release upgrade tests: real old releases, their projects, a user's edits, two updates.

Each old release (OLD_RELEASES below: a version and the commit it landed at)
is installed from this repository's own history (`git archive <commit>`) into a venv
of its own, cached by commit and Python, and always runs with a HOME of its own so its
template cache never meets the current one. The projects it generates get the
edits a user makes (a wrapper around the LLM stub, an align hook, a README
section, tests and files of their own), committed, and are then taken to the
installed release with `opea-new update` or with plain copier, part by part, as
the project README says.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from opea_new import __version__
from tests.conftest import REPO, free_ports, opea_new_command
from tests.update.helpers import append, commit_all, git


@dataclass(frozen=True)
class Release:
    version: str
    commit: str  # the commit of this repository that was released as `version`


# Every release users may hold, oldest first: each must update to the installed one.
OLD_RELEASES = (Release("0.1.0", "0dc6579"), Release("0.2.0", "38e3abc"), Release("0.3.0", "686e2d4"),
                Release("0.4.0", "defea08"), Release("0.5.0", "d98fb14"), Release("0.6.0", "dac9f0e"),
                Release("0.7.0", "7c60ca0"), Release("0.8.0", "e761b11"))
FIRST = OLD_RELEASES[0]
OLD_COMMIT = FIRST.commit
OLD_VERSION = FIRST.version
NEW_VERSION = __version__
RUNTIME_DISTRIBUTION = "opea-new-runtime"
WHEEL = f"opea_new_runtime-{NEW_VERSION}-py3-none-any.whl"

# The lite project: a guardrail that decides by a field of its output which branch runs.
GUARDED_SPEC = """\
name: guarded-chat
runtime: lite
services:
  - {name: gatekeeper, type: guardrail, port: 19101}
  - {name: writer, type: llm, port: 19102}
  - {name: apology, type: undefined, port: 19103}
flow:
  - service: gatekeeper
    next:
      - {service: writer, condition: "!blocked"}
      - {service: apology, condition: "blocked == true"}
"""

# ---------------------------------------------------------------- what the user does

SIGNATURE = "(checked by the ops team)"

# 0.1.0's llm backend.py, extended the way users extend it: the stub wrapped so every answer is signed. A
# subclass, so what the template's own tests say of create_model() (the stub is an ExtractiveLLM) stays true.
BACKEND = f'''"""Our model: the stub, wrapped so every answer says who checked it. Ours, not the template's."""

from __future__ import annotations

import dataclasses
import os

from .remote import OpenAICompatibleLLM
from .stub import ExtractiveLLM, create_stub

SIGNATURE = "{SIGNATURE}"


class SignedLLM(ExtractiveLLM):
    """The stub we were given, with our signature after everything it says."""

    def __init__(self, inner: ExtractiveLLM) -> None:
        self.__dict__.update(vars(inner))
        self.inner = inner
        self.name = f"signed {{inner.name}}"

    async def complete(self, prompt):
        completion = await self.inner.complete(prompt)
        return dataclasses.replace(completion, text=f"{{completion.text}} {{SIGNATURE}}")

    async def stream(self, prompt):
        async for piece in self.inner.stream(prompt):
            yield piece
        yield f" {{SIGNATURE}}"

    async def aclose(self) -> None:
        await self.inner.aclose()


def create_model() -> OpenAICompatibleLLM | ExtractiveLLM:
    if os.environ.get("LLM_ENDPOINT", "").strip():
        return OpenAICompatibleLLM.from_environment()
    return SignedLLM(create_stub())
'''

# Named nodes only: the template's own flow tests run this module's hooks on nodes of their own.
HOOKS = '''"""Our align hooks: our retriever and gatekeeper outputs get a `reviewed` field. Ours."""

from __future__ import annotations

from typing import Any


def align_inputs(inputs: Any, **context: Any) -> Any:
    return inputs


def align_outputs(outputs: Any, **context: Any) -> Any:
    if isinstance(outputs, dict) and context.get("node") in ("retriever", "gatekeeper"):
        return {**outputs, "reviewed": True}
    return outputs


def align_generator(chunks: Any, **context: Any) -> Any:
    return chunks
'''

ROOT_TEST = '''"""Our own pipeline test: the hook we wrote adds its field."""

from megaservice.hooks import align_outputs


def test_our_hook_marks_outputs_as_reviewed():
    assert align_outputs({"text": "x"}, node="retriever", service_type="retriever") == {"text": "x", "reviewed": True}
    assert align_outputs({"text": "x"}, node="other", service_type="undefined") == {"text": "x"}
'''

SERVICE_TEST = f'''"""Our own test of the llm service: the model is the signed one."""

from app.backend import SIGNATURE, SignedLLM, create_model


def test_the_model_is_ours(monkeypatch):
    monkeypatch.delenv("LLM_ENDPOINT", raising=False)
    model = create_model()
    assert isinstance(model, SignedLLM)
    assert SIGNATURE == "{SIGNATURE}"
'''

README_SECTION = "\n## Our deployment\n\nThis pipeline runs behind the ops gateway; ask #ops before changing ports.\n"
OWN_FILES = {
    "docs/notes.md": "# Notes\n\n- the guard's blocklist is ours\n",
    "data/corpus.jsonl": '{"text": "OPEA is the Open Platform for Enterprise AI."}\n',
    "tests/test_ours.py": ROOT_TEST,
    "megaservice/hooks.py": HOOKS,
}


def llm_service(project: Path) -> str:
    """The folder name of the project's llm service."""
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    names = [service["name"] for service in answers["services"] if service["type"] == "llm"]
    assert len(names) == 1, names
    return names[0].replace("_", "-")


def user_files(project: Path) -> dict[str, str]:
    """Every file the user wrote or rewrote, by path: what must survive an update byte for byte."""
    service = f"services/{llm_service(project)}"
    return {**OWN_FILES, f"{service}/app/backend.py": BACKEND, f"{service}/tests/test_ours.py": SERVICE_TEST}


def edit_like_a_user(project: Path) -> None:
    """The user's work on a fresh 0.1.0 project, committed."""
    for path, text in user_files(project).items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    append(project / "README.md", README_SECTION)
    commit_all(project, "our model, hooks, tests, notes and data")


# ---------------------------------------------------------------- the old release


def full_commit(commit: str = OLD_COMMIT) -> str:
    return git(REPO, "rev-parse", "--verify", f"{commit}^{{commit}}").strip()


def old_tool_environment(home: Path) -> dict[str, str]:
    """The environment the old tool runs in: its own HOME, none of the current tool's hooks."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OPEA_NEW_")}
    return {**environment, "HOME": str(home)}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_release(cache: Path, commit: str = OLD_COMMIT, version: str = OLD_VERSION) -> Path:
    """A venv with opea-new `version` as released at `commit` (from this repository's history); reused while whole."""
    sha = full_commit(commit)
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = cache / f"opea-new-{sha[:12]}-{python}"
    done = venv / ".installed"
    with _locked(cache / f".{venv.name}.lock"):
        if done.is_file() and (venv / "bin" / "opea-new").is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        source = venv / "src"
        source.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha], capture_output=True,
                                 check=True)
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                  "--disable-pip-version-check", str(source)], capture_output=True, text=True,
                                 timeout=600)
        assert install.returncode == 0, f"pip install of opea-new at {commit} failed:\n{install.stderr[-4000:]}"
        shown = subprocess.run([str(venv / "bin" / "opea-new"), "--version"], capture_output=True, text=True,
                                 timeout=60, env=old_tool_environment(venv))
        assert version in shown.stdout, shown.stdout + shown.stderr
        done.write_text(f"{sha}\n")
    return venv


# ---------------------------------------------------------------- the two sides


def run(command: list, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def copier_command() -> str:
    beside = Path(sys.executable).parent / "copier"
    return str(beside) if beside.is_file() else shutil.which("copier") or "copier"


@dataclass
class Releases:
    """The old tool, the current one, and every project they made in this session (made once, on first use)."""

    root: Path
    old_venv: Path
    templates: Path  # a snapshot of the current templates, so edits during the run cannot move v<current>
    old_version: str = OLD_VERSION
    _origins: dict[str, Path] = field(default_factory=dict)
    _updated: dict[tuple[str, str], Path] = field(default_factory=dict)
    _fresh: dict[str, Path] = field(default_factory=dict)

    @property
    def old_home(self) -> Path:
        return self.root / f"home-{self.old_version}"

    @property
    def new_home(self) -> Path:
        return self.root / "home-current"

    def old(self, *args: str | os.PathLike, cwd: Path) -> subprocess.CompletedProcess[str]:
        self.old_home.mkdir(exist_ok=True)
        return run([self.old_venv / "bin" / "opea-new", *args], cwd, old_tool_environment(self.old_home))

    def new_environment(self) -> dict[str, str]:
        self.new_home.mkdir(exist_ok=True)
        environment = {key: value for key, value in os.environ.items() if not key.startswith("OPEA_NEW_")}
        return {**environment, "HOME": str(self.new_home), "OPEA_NEW_TEMPLATES_DIR": str(self.templates)}

    def new(self, *args: str | os.PathLike, cwd: Path) -> subprocess.CompletedProcess[str]:
        return run([*opea_new_command(), *args], cwd, self.new_environment())

    # -- projects

    def origin(self, name: str) -> Path:
        """The old release's project `name` ("chatqna": `--defaults`; "guarded": the lite spec), edited by a user."""
        if name not in self._origins:
            folder = self.root / "origins"
            folder.mkdir(exist_ok=True)
            project = folder / name
            if name == "chatqna":
                result = self.old("megaservice", "--defaults", "--output", project, cwd=folder)
            else:
                spec = folder / f"{name}.yaml"
                spec.write_text(GUARDED_SPEC)
                result = self.old("megaservice", "--spec", spec, "--output", project, cwd=folder)
            assert result.returncode == 0, result.stdout + result.stderr
            answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
            assert answers["_commit"] == f"v{self.old_version}", answers
            git(project, "tag", "generated")  # the pristine old rendering, before the user's edits
            edit_like_a_user(project)
            self._origins[name] = project
        return self._origins[name]

    def updated(self, name: str, method: str) -> Path:
        """A clone of the edited old project taken to the current release by `method` ("opea-new" | "copier")."""
        key = (name, method)
        if key not in self._updated:
            origin = self.origin(name)
            project = self.root / "updated" / f"{name}-{method}"
            project.parent.mkdir(exist_ok=True)
            git(origin.parent, "clone", "--quiet", str(origin), str(project))
            if method == "opea-new":
                result = self.new("update", "--project", project, cwd=project.parent)
                assert result.returncode == 0, f"opea-new update failed:\n{result.stdout}\n{result.stderr}"
            else:
                self.copier_update(project)
            self._updated[key] = project
        return self._updated[key]

    def copier_update(self, project: Path) -> None:
        """Plain copier, part by part, committing after each (copier wants a clean tree)."""
        prepared = self.new("update", "--dry-run", "--project", project, cwd=project)  # writes the bundles
        assert prepared.returncode in (0, 1), prepared.stdout + prepared.stderr
        parts = [(project, []), (project, ["-a", ".copier-answers.compose.yml"])]
        parts += [(folder, []) for folder in sorted((project / "services").iterdir())
                  if (folder / ".copier-answers.yml").is_file()]
        for folder, extra in parts:
            result = run([copier_command(), "update", "--defaults", "--trust", *extra], folder,
                         self.new_environment())
            where = f"{folder.relative_to(project).as_posix()} {' '.join(extra)}".strip()
            assert result.returncode == 0, f"copier update in {where} failed:\n{result.stdout}\n{result.stderr}"
            commit_all(project, f"copier update: {where}")

    def fresh(self, name: str) -> Path:
        """The same pipeline generated from scratch by the current opea-new: what an update should arrive at."""
        if name not in self._fresh:
            origin = self.origin(name)
            folder = self.root / "fresh"
            folder.mkdir(exist_ok=True)
            answers = yaml.safe_load((origin / ".copier-answers.yml").read_text())
            spec = folder / f"{name}.yaml"
            spec.write_text(yaml.safe_dump({key: value for key, value in answers.items()
                                            if not key.startswith("_")}, sort_keys=False))
            project = folder / name
            result = self.new("megaservice", "--spec", spec, "--output", project, cwd=folder)
            assert result.returncode == 0, f"opea-new megaservice failed:\n{result.stdout}\n{result.stderr}"
            self._fresh[name] = project
        return self._fresh[name]


# ---------------------------------------------------------------- looking at a project


def tracked_files(project: Path, ref: str = "HEAD") -> set[str]:
    return set(git(project, "ls-tree", "-r", "--name-only", ref).splitlines())


def files_on_disk(project: Path) -> set[str]:
    found = set()
    for path in project.rglob("*"):
        relative = path.relative_to(project)
        if relative.parts[0] in (".git", ".venv") or "__pycache__" in relative.parts or ".pytest_cache" in \
                relative.parts or not (path.is_file() or path.is_symlink()):
            continue
        found.add(relative.as_posix())
    return found


CONFLICT_LINE = re.compile(rb"^(<{7}|={7}|>{7})(\s|$)", re.MULTILINE)


def conflict_markers(project: Path) -> list[str]:
    """Files with a line that starts with a conflict marker (`<<<<<<<`, `=======` or `>>>>>>>`)."""
    return sorted(path for path in files_on_disk(project)
                  if not path.endswith(".whl") and CONFLICT_LINE.search((project / path).read_bytes()))


def answers_files(project: Path) -> list[Path]:
    return [project / ".copier-answers.yml", project / ".copier-answers.compose.yml",
            *sorted((project / "services").glob("*/.copier-answers.yml"))]


def requirements_files(project: Path) -> list[Path]:
    return sorted(path for path in (project / candidate for candidate in files_on_disk(project))
                  if re.fullmatch(r"requirements([-_.][\w.-]*)?\.txt", path.name))


RUNTIME_PIN = re.compile(r"^\s*opea[-_]new[-_]runtime(\[[\w,\s-]*\])?\s*==\s*(?P<version>[^\s;#]+)", re.MULTILINE)
RUNTIME_NAMED = re.compile(r"^\s*opea[-_]new[-_]runtime\b", re.MULTILINE)


# ---------------------------------------------------------------- a running project


def clean_environment(**extra: str) -> dict[str, str]:
    inherited = ("_SERVICE_PORT", "_SERVICE_HOST_IP")
    environment = {key: value for key, value in os.environ.items()
                   if not key.endswith(inherited) and key not in ("VENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                                                                 "MEGA_SERVICE_PORT", "MEGA_SERVICE_HOST")}
    return {**environment, **extra}


def make(project: Path, venv: Path, *targets: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", *targets, f"VENV={venv}"], cwd=project, capture_output=True, text=True,
                          timeout=timeout, env=clean_environment(), stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def make_run(project: Path, venv: Path, *, timeout: float = 180) -> Iterator[tuple[int, Path]]:
    """`make run` on free ports, in a process group of its own: (megaservice port, log file) while it serves.

    Stops it with SIGTERM to that process group (by the PID it started with), SIGKILL only if it lingers.
    """
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    names = [service["name"] for service in answers["services"] if not service.get("image")]
    *ports, mega_port = free_ports(len(names) + 1)
    environment = clean_environment(MEGA_SERVICE_PORT=str(mega_port), **{
        f"{name.replace('-', '_').upper()}_SERVICE_PORT": str(port) for name, port in zip(names, ports, strict=True)})
    log = project.parent / f"{project.name}.run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(["make", "run", f"VENV={venv}"], cwd=project, env=environment, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    group = process.pid
    try:
        _wait_healthy(process, mega_port, log, timeout)
        yield mega_port, log
    finally:
        _stop_group(process, group)


def _wait_healthy(process: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"make run exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health_check", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the megaservice did not answer on {port} in {timeout:.0f}s:\n"
                                 f"{log.read_text()[-4000:]}")
        time.sleep(0.3)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(process: subprocess.Popen, group: int) -> None:
    if _group_alive(group):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        process.poll()
        if not _group_alive(group):
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
