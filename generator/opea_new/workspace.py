"""A scratch clone of a project where a change is made, inspected, then applied or dropped.

Every file a change writes lands in the clone first; the real project only
receives the finished result, as one `git apply` of the clone's diff (all or
nothing), and only when the caller asks for it. `--dry-run` is the same run
without that last step, so its plan is exactly what the real run would do.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import gitutil
from .errors import discard_scratch, log, set_outcome
from .gitutil import git

CONFLICT_MARKERS = (b"<<<<<<< before updating", b">>>>>>> after updating")
STATUSES = ("new", "updated", "conflict", "deleted")


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # new | updated | conflict | deleted
    merged: bool = False  # updated by combining the user's edits with the template's


class Workspace:
    def __init__(self, project: Path):
        self.project = project
        self._tmp = Path(tempfile.mkdtemp(prefix="opea-new-work-"))
        self.root = self._tmp / project.name
        self.failed = False
        log.info("cloning %s into the scratch clone %s", project, self.root)
        try:
            # --shared: borrow the project's objects instead of copying them (the clone lives for one command)
            git(self._tmp, "clone", "--quiet", "--shared", str(project), str(self.root))
            self.base = git(self.root, "rev-parse", "HEAD").strip()
        except BaseException:
            self.failed = True
            self.close()
            raise
        self.conflicts: set[str] = set()
        self.merged: set[str] = set()

    def close(self) -> None:
        discard_scratch(self._tmp, failed=self.failed)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.failed = self.failed or kind is not None
        self.close()

    def tracked_files(self, folder: str = ".") -> list[str]:
        """Files git tracks under `folder`, relative to the project root."""
        return git(self.root, "ls-files", "-z", "--", folder).split("\0")[:-1]

    def commit(self, message: str) -> None:
        git(self.root, "add", "--all")
        git(self.root, "commit", "--quiet", "--no-verify", "--allow-empty", "-m", message)

    def changes(self) -> list[FileChange]:
        status = {"A": "new", "M": "updated", "D": "deleted", "T": "updated"}
        out = git(self.root, "diff", "--name-status", "--no-renames", "-z", self.base, "HEAD")
        fields = out.split("\0")[:-1]
        changes = []
        for code, path in zip(fields[::2], fields[1::2], strict=True):
            kind = "conflict" if path in self.conflicts else status.get(code[0], "updated")
            changes.append(FileChange(path, kind, merged=path in self.merged))
        return changes

    def unchanged_files(self, changes: list[FileChange]) -> list[str]:
        changed = {change.path for change in changes}
        return [path for path in git(self.project, "ls-files", "-z").split("\0")[:-1] if path not in changed]

    def apply(self) -> None:
        """Apply everything done here to the real project, as uncommitted changes."""
        patch = gitutil.run(self.root, "diff", "--binary", "--no-renames", self.base, "HEAD", text=False).stdout
        if not patch.strip():
            return
        from .render import signals_deferred

        # git apply checks the whole patch before writing (and refuses to write beyond a symbolic link);
        # Ctrl-C waits until it is done (git runs in its own session so the terminal's SIGINT does not
        # reach it half-way).
        with signals_deferred():
            gitutil.run(self.project, "apply", "--whitespace=nowarn", "-", input=patch, text=False,
                        new_session=True)
            set_outcome(f"the changes were applied to {self.project} (uncommitted: review with `git diff`)")


def has_conflict_markers(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return any(line.rstrip() in CONFLICT_MARKERS for line in handle)
