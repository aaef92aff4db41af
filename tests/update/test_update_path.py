"""The update path: render with templates N, commit, edit like a user, update to N+1.

N+1 is made here by editing a copy of the templates: a new file, a deleted file,
changed template-owned files, and a changed user-owned file (which must never
reach the user's copy). The user edits a user-owned file, template-owned files
(one merges cleanly, two collide with the template's change) and adds files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.update.helpers import (
    DAG_SPEC,
    append,
    commit_all,
    edit,
    files_with_markers,
    head,
    next_version,
    porcelain,
    statuses,
)

SERVICES = ("source", "left", "right", "sink")


def release_n_plus_1(templates: Path) -> None:
    mega, micro, compose = templates / "megaservice", templates / "microservice", templates / "compose"
    (mega / "CHANGELOG.md").write_text("# Changes\n\n- v2: a changelog\n")  # a new root file
    edit(mega / "README.md.jinja", "# {{ name }}\n", "# {{ name }}\n\n> Updated by the v2 templates.\n")
    append(mega / "megaservice" / "__main__.py", "\n# v2: the template's last line\n")
    append(compose / "template" / "compose.yaml.jinja", "\n# v2: compose footer\n")
    append(micro / "app" / "main.py.jinja", "\n# v2: main\n")
    append(micro / "app" / "backend.py.jinja", "\n# v2: backend (user-owned: never reaches a project)\n")
    (micro / "NOTES.md").write_text("v2 notes\n")  # a new file in every service
    (micro / "app" / "__main__.py").unlink()  # a file the template no longer renders


def user_edits(project: Path) -> None:
    append(project / "services" / "left" / "app" / "backend.py", "\n# mine: my model call\n")  # user-owned
    append(project / "megaservice" / "hooks.py", "\n# mine: my align hook\n")  # user-owned
    append(project / "README.md", "\n## My notes\n\nKept across updates.\n")  # template-owned, merges cleanly
    append(project / "megaservice" / "__main__.py", "\n# mine: my own last line\n")  # collides with v2's
    append(project / "services" / "right" / "app" / "__main__.py", "# mine: my entry point\n")  # v2 deletes it
    (project / "services" / "left" / "app" / "extra.py").write_text("MINE = True\n")  # added files
    (project / "docs").mkdir()
    (project / "docs" / "todo.md").write_text("- my todo\n")
    commit_all(project, "my edits")
    (project / ".env").write_text("SECRET=mine\n")  # git-ignored, never touched


def expected_plan() -> dict[str, str]:
    plan = {
        "CHANGELOG.md": "new",
        "README.md": "updated",
        "compose.yaml": "updated",
        ".copier-answers.yml": "updated",
        ".copier-answers.compose.yml": "updated",
        "megaservice/__main__.py": "conflict",
        "services/right/app/__main__.py": "conflict",
    }
    for service in SERVICES:
        plan[f"services/{service}/NOTES.md"] = "new"
        plan[f"services/{service}/app/main.py"] = "updated"
        plan[f"services/{service}/.copier-answers.yml"] = "updated"
        if service != "right":
            plan[f"services/{service}/app/__main__.py"] = "deleted"
    return plan


@pytest.fixture
def edited(tier, tmp_path) -> Path:
    project = tier.generate(DAG_SPEC, tmp_path / "grow-dag")
    user_edits(project)
    return project


def test_update_keeps_edits_applies_the_template_and_reports_conflicts_exactly(tier, edited, tmp_path):
    version = next_version()
    templates = tier.newer_templates(version, release_n_plus_1)
    before_head, before_status = head(edited), porcelain(edited)
    mine = {path: (edited / path).read_bytes() for path in
            ("services/left/app/backend.py", "megaservice/hooks.py", "services/left/app/extra.py", "docs/todo.md",
             ".env")}
    untouched_backend = (edited / "services" / "sink" / "app" / "backend.py").read_bytes()

    # --dry-run: the full plan, nothing written.
    plan = tier.cli("update", "--dry-run", "--project", edited, templates=templates, version=version)
    assert plan.returncode == 1, plan.stdout + plan.stderr  # it would conflict
    planned = statuses(plan.stdout)
    changed = {path: status for path, status in planned.items() if status != "unchanged"}
    assert changed == expected_plan()
    assert planned["services/left/app/backend.py"] == "unchanged"
    assert planned["megaservice/hooks.py"] == "unchanged"
    assert planned["docs/todo.md"] == "unchanged"
    assert "README.md (merged with your edits)" in plan.stdout
    assert "Nothing was written" in plan.stdout
    assert head(edited) == before_head and porcelain(edited) == before_status
    assert not (edited / "CHANGELOG.md").exists()

    # The update itself: exactly the plan.
    result = tier.cli("update", "--project", edited, templates=templates, version=version)
    assert result.returncode == 1, result.stdout + result.stderr
    assert {path: status for path, status in statuses(result.stdout).items()} == expected_plan()
    assert "2 conflict(s)" in result.stdout
    assert head(edited) == before_head, "opea-new update must not commit"
    assert files_with_markers(edited) == ["megaservice/__main__.py", "services/right/app/__main__.py"]

    # The user's work is intact.
    for path, content in mine.items():
        assert (edited / path).read_bytes() == content, path
    assert (edited / "services" / "sink" / "app" / "backend.py").read_bytes() == untouched_backend
    assert not any("v2: backend" in (edited / "services" / s / "app" / "backend.py").read_text() for s in SERVICES)
    readme = (edited / "README.md").read_text()
    assert "> Updated by the v2 templates." in readme and "Kept across updates." in readme
    main = (edited / "megaservice" / "__main__.py").read_text()
    assert "# mine: my own last line" in main and "# v2: the template's last line" in main

    # The template's changes are in.
    assert (edited / "CHANGELOG.md").read_text().startswith("# Changes")
    assert (edited / "compose.yaml").read_text().rstrip().endswith("# v2: compose footer")
    for service in SERVICES:
        folder = edited / "services" / service
        assert (folder / "NOTES.md").read_text() == "v2 notes\n"
        assert "# v2: main" in (folder / "app" / "main.py").read_text()
        assert (folder / "app" / "__main__.py").exists() == (service == "right")
    for answers in [edited / ".copier-answers.yml", edited / ".copier-answers.compose.yml",
                    *(edited / "services").glob("*/.copier-answers.yml")]:
        assert yaml.safe_load(answers.read_text())["_commit"] == f"v{version}", answers

    # Resolve, commit: the next update has nothing to do.
    for path in ("megaservice/__main__.py", "services/right/app/__main__.py"):
        target = edited / path
        target.write_text("".join(line for line in target.read_text().splitlines(keepends=True)
                                  if not line.startswith(("<<<<<<<", "=======", ">>>>>>>"))))
    commit_all(edited, "take v2")
    again = tier.cli("update", "--project", edited, templates=templates, version=version)
    assert again.returncode == 0, again.stderr
    assert "already up to date" in again.stdout
    assert porcelain(edited) == ""


def test_an_update_without_conflicts_exits_0_and_leaves_changes_for_review(tier, tmp_path):
    project = tier.generate(DAG_SPEC, tmp_path / "grow-dag")
    append(project / "services" / "left" / "app" / "backend.py", "\n# mine\n")
    append(project / "README.md", "\nmine\n")
    commit_all(project, "my edits")
    version = next_version()

    def release(templates: Path) -> None:
        append(templates / "microservice" / "app" / "main.py.jinja", "\n# v2: main\n")
        edit(templates / "megaservice" / "README.md.jinja", "# {{ name }}\n", "# {{ name }}\n\nv2 intro\n")

    templates = tier.newer_templates(version, release)
    result = tier.cli("update", "--project", project, templates=templates, version=version)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Changes are left uncommitted" in result.stdout
    assert files_with_markers(project) == []
    changed = {line[3:] for line in porcelain(project).splitlines()}
    assert "README.md" in changed and "services/left/app/main.py" in changed
    assert "services/left/app/backend.py" not in changed
    assert (project / "README.md").read_text().count("mine") == 1


def test_update_order_is_root_compose_then_each_service(tier, tmp_path):
    project = tier.generate(DAG_SPEC, tmp_path / "grow-dag")
    version = next_version()
    templates = tier.newer_templates(version, lambda t: append(t / "microservice" / "README.md.jinja", "\nv2\n"))

    result = tier.cli("update", "--dry-run", "--project", project, templates=templates, version=version)

    steps = [line for line in result.stdout.splitlines() if line.startswith("• ")]
    assert [step.split()[2] for step in steps] == ["megaservice", "compose", *["microservice"] * 4]
    assert [step.split()[3] for step in steps[2:]] == sorted(f"services/{s}" for s in SERVICES)
    assert porcelain(project) == ""
