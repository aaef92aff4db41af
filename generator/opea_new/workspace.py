"""A scratch clone of a project where changes are made, inspected, then applied or dropped.

copier refuses to update a dirty repository, and a project has several parts
that must be updated one after another. Doing every step in a scratch clone
(committing after each) keeps the user's checkout untouched until the whole
change succeeded; `--dry-run` simply never applies it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .gitutil import git

CONFLICT_MARKERS = (b"<<<<<<< before updating", b">>>>>>> after updating")


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # new | updated | conflict | deleted


class Workspace:
    def __init__(self, project: Path):
        self.project = project
        self._tmp = Path(tempfile.mkdtemp(prefix="opea-new-work-"))
        self.root = self._tmp / project.name
        git(self._tmp, "clone", "--quiet", "--no-hardlinks", str(project), str(self.root))
        self.base = git(self.root, "rev-parse", "HEAD").strip()
        self.conflicts: set[str] = set()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def commit_step(self, message: str) -> None:
        """Record one step so the next copier run sees a clean tree; remember conflicts."""
        changed = git(self.root, "status", "--porcelain", "--untracked-files=all").splitlines()
        for line in changed:
            path = line[3:].split(" -> ")[-1].strip('"')
            if _has_conflict_markers(self.root / path):
                self.conflicts.add(path)
        git(self.root, "add", "--all")
        git(self.root, "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message)

    def changes(self) -> list[FileChange]:
        status = {"A": "new", "M": "updated", "D": "deleted", "T": "updated"}
        out = git(self.root, "diff", "--name-status", "--no-renames", self.base, "HEAD")
        changes = []
        for line in out.splitlines():
            code, path = line.split("\t", 1)
            kind = "conflict" if path in self.conflicts and code[0] != "D" else status.get(code[0], "updated")
            changes.append(FileChange(path, kind))
        return changes

    def unchanged_files(self) -> list[str]:
        changed = {change.path for change in self.changes()}
        return [path for path in git(self.project, "ls-files").splitlines() if path not in changed]

    def apply(self) -> None:
        """Apply everything done here to the real project, as uncommitted changes."""
        patch = subprocess.run(["git", "diff", "--binary", "--no-renames", self.base, "HEAD"], cwd=self.root,
                               check=True, capture_output=True).stdout
        if patch.strip():
            subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=self.project, input=patch,
                           check=True, capture_output=True)


def _has_conflict_markers(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return any(line.rstrip() in CONFLICT_MARKERS for line in handle)
