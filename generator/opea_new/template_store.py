"""Templates as git history, so `copier update` can always re-render the old version.

copier updates a project by rendering the template version recorded in the
answers file (`_src_path` + `_commit`), diffing it against the new version and
applying that diff to the project. A plain folder has no versions, so every
template is kept as a git repository with one tag per opea-new release and
handed to copier as a git bundle at a path that is the same on every machine:

    ~/.cache/opea-new/templates/<template>.bundle   (stored with a literal `~`)

Each release's commit is built from the packaged template files with fixed
author, date and no parent, so the same templates give the same commit id on
every machine. The bundle keeps every version materialised on this machine;
opea-new (re)creates it whenever it renders or updates.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .paths import templates_root

TEMPLATE_NAMES = ("megaservice", "compose", "microservice")
CACHE_LOCATION = "~/.cache/opea-new/templates"

# Test and release hooks: render from another template folder / under another version.
TEMPLATES_DIR_ENV = "OPEA_NEW_TEMPLATES_DIR"
TEMPLATE_VERSION_ENV = "OPEA_NEW_TEMPLATE_VERSION"

_FIXED_IDENTITY = {
    "GIT_AUTHOR_NAME": "opea-new",
    "GIT_AUTHOR_EMAIL": "opea-new@localhost",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "opea-new",
    "GIT_COMMITTER_EMAIL": "opea-new@localhost",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+0000",
}
_NOT_TEMPLATE_CONTENT = (":(exclude,glob)**/__pycache__/**", ":(exclude,glob)**/*.pyc")


class TemplateStoreError(RuntimeError):
    """The template bundles could not be prepared."""


@dataclass(frozen=True)
class TemplateSource:
    """Where copier finds one template, and which version to use."""

    name: str
    url: str  # as stored in answers files: starts with a literal "~"
    ref: str  # the git tag of the version, e.g. "v0.1.0"

    @property
    def bundle_path(self) -> Path:
        return Path(self.url).expanduser()


def template_version() -> str:
    return os.environ.get(TEMPLATE_VERSION_ENV) or __version__


def version_tag(version: str) -> str:
    return f"v{version}"


def source_dir() -> Path:
    override = os.environ.get(TEMPLATES_DIR_ENV)
    return Path(override) if override else templates_root()


def ensure_templates() -> dict[str, TemplateSource]:
    """Make sure every template's bundle holds the current version; return their sources."""
    version = template_version()
    cache = Path(CACHE_LOCATION).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    sources = {}
    with _locked(cache / ".lock"):
        for name in TEMPLATE_NAMES:
            _materialise(source_dir() / name, cache / f"{name}.git", cache / f"{name}.bundle", version)
            sources[name] = TemplateSource(name, f"{CACHE_LOCATION}/{name}.bundle", version_tag(version))
    return sources


def _materialise(template: Path, repo: Path, bundle: Path, version: str) -> None:
    if not (template / "copier.yml").is_file():
        raise TemplateStoreError(f"{template} is not a copier template (no copier.yml)")
    if not repo.exists():
        _git(repo, "init", "--quiet", "--bare")
    tree = _tree_of(template, repo)
    tag = version_tag(version)
    tagged_tree = _git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{tree}}", check=False)
    if tagged_tree == tree and bundle.is_file():
        return
    if tagged_tree and tagged_tree != tree:
        # Templates changed without a version bump (a development checkout): keep the
        # superseded commit reachable, then move the tag to the new content.
        old = _git(repo, "rev-parse", f"refs/tags/{tag}")
        _git(repo, "update-ref", f"refs/superseded/{tag}/{old}", old)
    commit = _git(repo, "commit-tree", tree, "-m", f"{template.name} template of opea-new {version}",
                  env=_FIXED_IDENTITY)
    _git(repo, "tag", "--force", tag, commit)
    with tempfile.NamedTemporaryFile(dir=bundle.parent, prefix=f".{bundle.name}.", delete=False) as tmp:
        pass
    try:
        _git(repo, "bundle", "create", "--quiet", tmp.name, "--all")
        os.replace(tmp.name, bundle)
    finally:
        Path(tmp.name).unlink(missing_ok=True)


def _tree_of(template: Path, repo: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="opea-new-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(repo, f"--work-tree={template}", "add", "--all", "--force", "--", ".", *_NOT_TEMPLATE_CONTENT,
             env=env, cwd=template)
        return _git(repo, "write-tree", env=env)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
         check: bool = True) -> str:
    result = subprocess.run(
        ["git", f"--git-dir={repo}", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise TemplateStoreError(f"git {' '.join(args[:2])} failed in {repo}: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
