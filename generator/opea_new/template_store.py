"""Templates as git history, so `copier update` can always re-render the old version.

copier updates a project by rendering the template version recorded in the
answers file (`_src_path` + `_commit`), diffing it against the new version and
applying that diff to the project. A plain folder has no versions, so every
template is kept as a git repository with one tag per opea-new release and
handed to copier as a git bundle at a path that is the same on every machine:

    ~/.cache/opea-new/templates/<template>.bundle   (stored with a literal `~`)

Each release's commit is built from the packaged template files with fixed
author, date and no parent, so the same templates give the same commit id on
every machine. Older releases travel with the package: `template_history/`
(next to this module) holds one bundle per template with a tag for every
released version, added by `python -m opea_new.template_store record-release`
when a version is cut. On every run opea-new imports those tags and the
current version into the cache repository and (re)writes the bundle, so a
project made by any earlier release can be updated on any machine, offline.
Plain `copier update` needs the bundle to exist: any opea-new command that
renders or updates (or `opea-new update --dry-run`) creates it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .paths import templates_root

TEMPLATE_NAMES = ("megaservice", "compose", "microservice")
CACHE_LOCATION = "~/.cache/opea-new/templates"
VENDOR_DIR = "vendor"  # in a project: the runtime library's wheel, for offline installs

# Test and release hooks: render from another template folder / under another version.
TEMPLATES_DIR_ENV = "OPEA_NEW_TEMPLATES_DIR"
TEMPLATE_VERSION_ENV = "OPEA_NEW_TEMPLATE_VERSION"
TEMPLATE_HISTORY_ENV = "OPEA_NEW_TEMPLATE_HISTORY"

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

    @property
    def repository(self) -> Path:
        """The bare repository the bundle is written from (same folder, `.git` instead of `.bundle`)."""
        return self.bundle_path.with_suffix(".git")

    def has_version(self, ref: str) -> bool:
        return bool(_git(self.repository, "rev-parse", "--verify", "--quiet", f"refs/tags/{ref}^{{commit}}",
                         check=False))

    def export(self, ref: str, destination: Path) -> None:
        """Write the template files of version `ref` into `destination` (a plain folder, no git)."""
        archive = subprocess.run(["git", f"--git-dir={self.repository}", "archive", "--format=tar",
                                  f"refs/tags/{ref}"], capture_output=True)
        if archive.returncode != 0:
            raise TemplateStoreError(f"cannot read version {ref} of the {self.name} template from "
                                     f"{self.repository}: {archive.stderr.decode(errors='replace').strip()}")
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, filter="data")
            else:  # Python < 3.11.4; the archive is our own
                tar.extractall(destination)  # noqa: S202


def template_version() -> str:
    return os.environ.get(TEMPLATE_VERSION_ENV) or __version__


def version_tag(version: str) -> str:
    return f"v{version}"


def source_dir() -> Path:
    override = os.environ.get(TEMPLATES_DIR_ENV)
    return Path(override) if override else templates_root()


def history_dir() -> Path:
    """The packaged bundles of released template versions."""
    override = os.environ.get(TEMPLATE_HISTORY_ENV)
    return Path(override) if override else Path(__file__).resolve().parent / "template_history"


def ensure_templates() -> dict[str, TemplateSource]:
    """Make sure every template's bundle holds the current version; return their sources."""
    version = template_version()
    cache = Path(CACHE_LOCATION).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    sources = {}
    history = history_dir()
    with _locked(cache / ".lock"):
        for name in TEMPLATE_NAMES:
            repo = cache / f"{name}.git"
            template = source_dir() / name
            if not (template / "copier.yml").is_file():
                raise TemplateStoreError(f"{template} is not a copier template (no copier.yml)")
            if not repo.exists():
                _git(repo, "init", "--quiet", "--bare")
            imported = _import_history(repo, history / f"{name}.bundle", version_tag(version))
            _materialise(template, repo, cache / f"{name}.bundle", version, rebundle=imported)
            sources[name] = TemplateSource(name, f"{CACHE_LOCATION}/{name}.bundle", version_tag(version))
    return sources


def _import_history(repo: Path, history: Path, current_tag: str) -> bool:
    """Copy the released versions' tags from the packaged history; True when something changed."""
    if not history.is_file():
        return False
    changed = False
    for line in _git(repo, "bundle", "list-heads", str(history)).splitlines():
        commit, _, ref = line.partition(" ")
        if not ref.startswith("refs/tags/") or ref == f"refs/tags/{current_tag}":
            continue  # the installed version always comes from the installed files
        existing = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if existing == commit:
            continue
        if existing:
            _git(repo, "update-ref", f"refs/superseded/{ref[len('refs/tags/'):]}/{existing}", existing)
        _git(repo, "fetch", "--quiet", "--no-tags", str(history), f"+{ref}:{ref}")
        changed = True
    return changed


def _materialise(template: Path, repo: Path, bundle: Path, version: str, *, rebundle: bool = False) -> None:
    tree = _tree_of(template, repo)
    tag = version_tag(version)
    tagged_tree = _git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{tree}}", check=False)
    if tagged_tree == tree and bundle.is_file() and not rebundle:
        return
    if tagged_tree == tree:
        _write_bundle(repo, bundle, ["--all"])
        return
    if tagged_tree and tagged_tree != tree:
        # Templates changed without a version bump (a development checkout): keep the
        # superseded commit reachable, then move the tag to the new content.
        old = _git(repo, "rev-parse", f"refs/tags/{tag}")
        _git(repo, "update-ref", f"refs/superseded/{tag}/{old}", old)
    commit = _git(repo, "commit-tree", tree, "-m", f"{template.name} template of opea-new {version}",
                  env=_FIXED_IDENTITY)
    _git(repo, "tag", "--force", tag, commit)
    _write_bundle(repo, bundle, ["--all"])


def _write_bundle(repo: Path, bundle: Path, refs: list[str]) -> None:
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=bundle.parent, prefix=f".{bundle.name}.", delete=False) as tmp:
        pass
    try:
        _git(repo, "bundle", "create", "--quiet", tmp.name, *refs)
        os.replace(tmp.name, bundle)
    finally:
        Path(tmp.name).unlink(missing_ok=True)


# ---------------------------------------------------------------- releases


def record_release(history: Path | None = None) -> list[Path]:
    """Add the installed templates, as the installed version, to the packaged history.

    A release step: run it once when a version is cut and commit the bundles, so every
    later opea-new can still render this version's templates (the base of a 3-way update).
    The history keeps the releases it already had plus this one; nothing else from the
    local cache (development or test versions) leaks in.
    """
    history = history or history_dir()
    history.mkdir(parents=True, exist_ok=True)
    sources = ensure_templates()
    written = []
    for name, source in sources.items():
        bundle = history / f"{name}.bundle"
        released: dict[str, str] = {}
        if bundle.is_file():
            released = {ref: commit for commit, _, ref in (line.partition(" ") for line in
                        _git(source.repository, "bundle", "list-heads", str(bundle)).splitlines())}
        recorded = released.get(f"refs/tags/{source.ref}")
        current = _git(source.repository, "rev-parse", f"refs/tags/{source.ref}^{{commit}}")
        if recorded and recorded != current:
            raise TemplateStoreError(
                f"{source.ref} of the {name} template is already recorded with other content: a released version "
                "never changes. Bump the version (pyproject.toml, opea_new/__init__.py, runtime/) and record that.")
        refs = sorted({ref for ref in released if ref.startswith("refs/tags/")} | {f"refs/tags/{source.ref}"})
        _write_bundle(source.repository, bundle, refs)
        written.append(bundle)
    return written


def _tree_of(template: Path, repo: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="opea-new-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(repo, f"--work-tree={template}", "add", "--all", "--force", "--", ".", *_NOT_TEMPLATE_CONTENT,
             env=env, cwd=template)
        for path, data in built_files(template.name).items():
            blob = subprocess.run(["git", f"--git-dir={repo}", "hash-object", "-w", "--stdin"], input=data,
                                  capture_output=True, check=True).stdout.decode().strip()
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        return _git(repo, "write-tree", env=env)


def built_files(template: str) -> dict[str, bytes]:
    """Files a template's release holds that are built, not written: the root carries the runtime's wheel."""
    if template != "megaservice":
        return {}
    from . import runtime_wheel

    name, data = runtime_wheel.build()
    return {f"{VENDOR_DIR}/{name}": data}


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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m opea_new.template_store",
                                     description="Maintain opea-new's packaged template history.")
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record-release", help="add the installed templates as the installed version")
    record.add_argument("--history", type=Path, default=None, help=f"default: {history_dir()}")
    args = parser.parse_args(argv)
    for bundle in record_release(args.history):
        print(f"{bundle}: {version_tag(template_version())} recorded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
