"""Helpers of the update tier: real generated projects in real git repositories, changed the way users change them.

Every project here is rendered from a snapshot of the templates taken when the
tier starts (`OPEA_NEW_TEMPLATES_DIR`), in a HOME of its own, so templates
edited while the tests run cannot move the version under them. A "newer
release" is a copy of that snapshot that a test edits, announced with
`OPEA_NEW_TEMPLATE_VERSION`; each test uses its own version number.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from opea_new import __version__
from tests.conftest import SHARED_SPECS, run_cli

STATUS_LINE = re.compile(r"^  (new|updated|conflict|deleted|unchanged)\s+(\S+)")
MARKERS = ("<<<<<<< before updating", ">>>>>>> after updating")

DAG_SPEC = """\
name: grow-dag
runtime: lite
megaservice: {port: 18880, protocol: raw}
services:
  - {name: source, type: undefined, port: 18801}
  - {name: left, type: undefined, port: 18802}
  - {name: right, type: undefined, port: 18803}
  - {name: sink, type: undefined, port: 18804}
flow:
  - {service: source, next: [left, right]}
  - {service: left, next: [sink]}
"""

CHAIN_SPEC = """\
name: grow-chain
runtime: lite
services:
  - {name: embedding, type: embedding, port: 16000}
  - {name: retriever, type: retriever, port: 17000}
  - {name: llm, type: llm, port: 19000}
"""

SHARED_CONDITIONAL = SHARED_SPECS / "conditional.yaml"

_versions = itertools.count(1)


def git(cwd: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}: {result.stderr}")
    return result.stdout


def commit_all(project: Path, message: str) -> None:
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "-m", message)


def porcelain(project: Path) -> str:
    return git(project, "status", "--porcelain", "--untracked-files=all")


def head(project: Path) -> str:
    return git(project, "rev-parse", "HEAD").strip()


def statuses(output: str) -> dict[str, str]:
    """`path: status` from the file list opea-new prints."""
    return {match[2]: match[1] for line in output.splitlines() if (match := STATUS_LINE.match(line))}


def files_with_markers(project: Path) -> list[str]:
    found = []
    for path in sorted(project.rglob("*")):
        if ".git" in path.relative_to(project).parts or not path.is_file():
            continue
        lines = path.read_text(errors="replace").splitlines()
        # A marker is a line that starts with one (as git and editors see it): a README that
        # mentions `<<<<<<< before updating` in a sentence has no conflict.
        if any(line.startswith(MARKERS) for line in lines):
            found.append(path.relative_to(project).as_posix())
    return found


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact piece of text (the test fails loudly if the templates no longer have it)."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected exactly one {old!r}"
    path.write_text(text.replace(old, new))


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def next_version() -> str:
    """A version above the installed one, different for every caller (one tag per scenario)."""
    major, minor, *_ = (int(part) for part in __version__.split(".")[:2])
    return f"{major}.{minor + 1}.{next(_versions)}"


def offline_prefix() -> list[str]:
    """Run a command without a network: a fresh network namespace when the kernel allows one."""
    try:
        ok = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return ["unshare", "-rn"] if ok else []


OFFLINE_ENV = {
    # Even without a namespace: every proxy is a closed port and git may only use local files.
    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": "",
    "GIT_ALLOW_PROTOCOL": "file", "GIT_TERMINAL_PROMPT": "0",
}


@dataclass
class Tier:
    """Where this tier keeps its templates and cache, and how it runs opea-new and copier."""

    root: Path
    home: Path
    templates: Path

    def env(self, *, templates: Path | None = None, version: str | None = None, home: Path | None = None,
            **extra: str) -> dict[str, str]:
        env = {"HOME": str(home or self.home), "OPEA_NEW_TEMPLATES_DIR": str(templates or self.templates)}
        if version:
            env["OPEA_NEW_TEMPLATE_VERSION"] = version
        return {**env, **extra}

    def cli(self, *args: str | os.PathLike, cwd: Path | None = None, templates: Path | None = None,
            version: str | None = None, home: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=cwd or self.root,
                       env=self.env(templates=templates, version=version, home=home, **extra))

    def generate(self, spec: str, destination: Path) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        spec_file = destination.parent / f"{destination.name}.spec.yaml"
        spec_file.write_text(spec)
        result = self.cli("megaservice", "--spec", spec_file, "--output", destination)
        assert result.returncode == 0, result.stderr
        return destination

    def newer_templates(self, name: str, change: Callable[[Path], None]) -> Path:
        """A copy of the tier's templates changed by `change`: the next release of opea-new."""
        copy = self.root / f"templates-{name}"
        shutil.copytree(self.templates, copy)
        change(copy)
        return copy


def clone(origin: Path, destination: Path) -> Path:
    git(origin.parent, "clone", "--quiet", str(origin), str(destination))
    return destination
