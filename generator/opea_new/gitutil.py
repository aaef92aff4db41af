"""The one way opea-new runs git: every call goes through `run`, with an identity fallback for fresh machines.

A failing git call raises GitError (a WorkError: exit 1) naming the command, the folder and git's message;
git missing from PATH is a GitError too, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .errors import WorkError, log

_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "opea-new",
    "GIT_AUTHOR_EMAIL": "opea-new@localhost",
    "GIT_COMMITTER_NAME": "opea-new",
    "GIT_COMMITTER_EMAIL": "opea-new@localhost",
}
_identity: dict[str, bool] = {}  # folder -> whether git has a user name and email there


class GitError(WorkError):
    """A git command failed."""


def run(cwd: Path | None, *args: str, input: bytes | str | None = None, check: bool = True, text: bool = True,
        new_session: bool = False, identity: bool = False) -> subprocess.CompletedProcess:
    """Run `git ARGS` in `cwd`; GitError when it fails and `check` (or when git cannot be run at all).

    `identity`: add opea-new's author and committer when git has none configured (for commits).
    `new_session`: git runs in a session of its own, so the terminal's Ctrl-C does not stop it half-way.
    """
    env = _env(cwd) if identity else None
    log.info("git %s (in %s)", " ".join(args), cwd or Path.cwd())
    try:
        result = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, text=text, env=env,
                                start_new_session=new_session)
    except FileNotFoundError as error:
        missing = "git is not installed (or not on PATH)" if error.filename == "git" else f"{cwd}: {error.strerror}"
        raise GitError(f"cannot run git: {missing}") from None
    except OSError as error:
        raise GitError(f"cannot run git in {cwd}: {error.strerror or error}") from None
    if check and result.returncode != 0:
        stderr = result.stderr if text else result.stderr.decode(errors="replace")
        raise GitError(f"git {' '.join(args[:3])} failed in {cwd}: {stderr.strip() or f'exit {result.returncode}'}")
    return result


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """`git ARGS` in `cwd`, its output as text (with opea-new's identity when git has none)."""
    return run(cwd, *args, check=check, identity=True).stdout


def _env(cwd: Path | None) -> dict[str, str] | None:
    key = str(cwd)
    if key not in _identity:
        where = cwd if cwd is not None and cwd.is_dir() else None
        found = run(where, "config", "--get-regexp", r"^user\.(name|email)$", check=False).stdout.split()
        names = {line.lower() for line in found}
        _identity[key] = "user.name" in names and "user.email" in names
    if _identity[key]:
        return None
    env = dict(os.environ)
    for name, value in _FALLBACK_IDENTITY.items():
        env.setdefault(name, value)
    return env


def is_repository(path: Path) -> bool:
    """Whether `path` is the top folder of a git work tree."""
    result = run(path, "rev-parse", "--show-toplevel", check=False)
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


def merge_file(ours: str, base: str, theirs: str, labels: tuple[str, str, str]) -> tuple[bytes | None, bool]:
    """`git merge-file -p` of three files: (merged bytes, whether conflicts remain); (None, True) for binary."""
    arguments = [argument for label in labels for argument in ("-L", label)]
    result = run(None, "merge-file", "-p", *arguments, ours, base, theirs, check=False, text=False)
    if result.returncode < 0 or result.returncode > 127 or b"binary" in result.stderr.lower():
        return None, True
    return result.stdout, result.returncode > 0


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
