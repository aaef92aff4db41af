"""The few git operations opea-new needs, with an identity fallback for fresh machines."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "opea-new",
    "GIT_AUTHOR_EMAIL": "opea-new@localhost",
    "GIT_COMMITTER_NAME": "opea-new",
    "GIT_COMMITTER_EMAIL": "opea-new@localhost",
}


class GitError(RuntimeError):
    pass


def git(cwd: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=_env(cwd))
    if check and result.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


def _env(cwd: Path) -> dict[str, str]:
    env = dict(os.environ)
    if not _configured(cwd, "user.email") or not _configured(cwd, "user.name"):
        for key, value in _FALLBACK_IDENTITY.items():
            env.setdefault(key, value)
    return env


def _configured(cwd: Path, key: str) -> bool:
    result = subprocess.run(["git", "config", "--get", key], cwd=cwd if cwd.exists() else None,
                            capture_output=True, text=True)
    return bool(result.stdout.strip())


def is_repository(path: Path) -> bool:
    result = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    return result.returncode == 0 and Path(result.stdout.strip()).resolve() == path.resolve()


def init_and_commit(path: Path, message: str, paths: list[str] | None = None) -> None:
    git(path, "init", "--quiet", "--initial-branch=main")
    git(path, "add", "--", *(paths or ["."]))
    git(path, "commit", "--quiet", "--no-verify", "-m", message)


def commit_paths(path: Path, paths: list[str], message: str) -> bool:
    """Commit exactly `paths` in an existing repository; False when nothing changed."""
    git(path, "add", "--", *paths)
    if not git(path, "diff", "--cached", "--name-only", "--", *paths).strip():
        return False
    git(path, "commit", "--quiet", "--no-verify", "-m", message, "--", *paths)
    return True


_STATES = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied", "T": "type changed",
           "U": "unmerged", "?": "untracked"}


def dirty_files(path: Path) -> list[str]:
    """Uncommitted changes as `path (what)`, e.g. `README.md (modified)`, `notes.txt (untracked)`."""
    entries = []
    for line in git(path, "status", "--porcelain", "--untracked-files=all").splitlines():
        code, name = line[:2], line[3:]
        state = next((_STATES[c] for c in (code[1], code[0]) if c in _STATES), "changed")
        entries.append(f"{name} ({state})")
    return entries
