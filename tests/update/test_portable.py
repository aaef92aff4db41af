"""Updatable from anywhere, offline: a clone at another path, another working directory, no network,
plain `copier update`, and a machine that never saw the version the project was made with."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.update.helpers import (
    DAG_SPEC,
    OFFLINE_ENV,
    append,
    clone,
    commit_all,
    edit,
    files_with_markers,
    next_version,
    offline_prefix,
    porcelain,
)

COPIER = Path(sys.executable).parent / "copier"


def small_release(templates: Path) -> None:
    (templates / "megaservice" / "CHANGELOG.md").write_text("v2\n")
    edit(templates / "megaservice" / "README.md.jinja", "# {{ name }}\n", "# {{ name }}\n\nv2 intro line\n")
    append(templates / "microservice" / "app" / "main.py.jinja", "\n# v2: main\n")
    append(templates / "compose" / "template" / "compose.yaml.jinja", "\n# v2: compose footer\n")


def edit_like_a_user(project: Path) -> None:
    append(project / "services" / "left" / "app" / "backend.py", "\n# mine: backend\n")
    main = project / "services" / "left" / "app" / "main.py"
    main.write_text("# mine: a header of my own\n# MY_SETTING = 1\n" + main.read_text())
    append(project / "README.md", "\nmy readme notes\n")
    (project / "notes.md").write_text("mine\n")
    commit_all(project, "my edits")


def answers_files(project: Path) -> list[Path]:
    return [project / ".copier-answers.yml", project / ".copier-answers.compose.yml",
            *sorted((project / "services").glob("*/.copier-answers.yml"))]


def run_offline(command: list, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([*offline_prefix(), *map(str, command)], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env, **OFFLINE_ENV}, stdin=subprocess.DEVNULL, timeout=300)


def opea_new(tier, *args, cwd: Path, **env) -> subprocess.CompletedProcess[str]:
    from tests.conftest import opea_new_command

    return run_offline([*opea_new_command(), *args], cwd, tier.env(**env))


def assert_edits_kept(project: Path) -> None:
    assert "# mine: backend" in (project / "services" / "left" / "app" / "backend.py").read_text()
    assert "# MY_SETTING = 1" in (project / "services" / "left" / "app" / "main.py").read_text()
    assert "my readme notes" in (project / "README.md").read_text()
    assert (project / "notes.md").read_text() == "mine\n"
    assert files_with_markers(project) == []


def test_answers_record_a_portable_template_source(tier, dag):
    for answers in answers_files(dag):
        data = yaml.safe_load(answers.read_text())
        template = {".copier-answers.compose.yml": "compose"}.get(answers.name, "microservice"
                                                                  if "services" in answers.parts else "megaservice")
        assert data["_src_path"] == f"~/.cache/opea-new/templates/{template}.bundle", answers
        assert data["_commit"].startswith("v")


def test_opea_new_update_of_a_clone_elsewhere_offline_from_another_directory(tier, tmp_path):
    original = tier.generate(DAG_SPEC, tmp_path / "laptop" / "grow-dag")
    edit_like_a_user(original)
    moved = clone(original, tmp_path / "elsewhere" / "deeper" / "checkout")
    shutil.rmtree(original)  # nothing may point back at where it was generated
    third = tmp_path / "third"
    third.mkdir()
    version = next_version()
    templates = tier.newer_templates(version, small_release)

    result = opea_new(tier, "update", "--project", moved, cwd=third, templates=templates, version=version)

    assert result.returncode == 0, result.stdout + result.stderr
    assert_edits_kept(moved)
    assert (moved / "CHANGELOG.md").read_text() == "v2\n"
    assert "v2 intro line" in (moved / "README.md").read_text()
    assert "# v2: main" in (moved / "services" / "left" / "app" / "main.py").read_text()
    assert (moved / "compose.yaml").read_text().rstrip().endswith("# v2: compose footer")
    for answers in answers_files(moved):
        data = yaml.safe_load(answers.read_text())
        assert data["_commit"] == f"v{version}", answers
        assert data["_src_path"].startswith("~/.cache/opea-new/templates/"), answers
    assert not list(third.iterdir()), "update wrote into the working directory"


def test_plain_copier_update_of_a_clone_elsewhere_offline(tier, tmp_path):
    original = tier.generate(DAG_SPEC, tmp_path / "laptop" / "grow-dag")
    edit_like_a_user(original)
    moved = clone(original, tmp_path / "elsewhere" / "checkout")
    version = next_version()
    templates = tier.newer_templates(version, small_release)
    # The new release is installed (and has run once, which keeps its bundles in ~/.cache).
    prepared = tier.cli("update", "--dry-run", "--project", original, templates=templates, version=version)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr

    root = run_offline([COPIER, "update", "--defaults", "--trust"], moved, tier.env())

    assert root.returncode == 0, root.stdout + root.stderr
    assert_edits_kept(moved)
    assert (moved / "CHANGELOG.md").read_text() == "v2\n"
    assert "v2 intro line" in (moved / "README.md").read_text()
    assert yaml.safe_load((moved / ".copier-answers.yml").read_text())["_commit"] == f"v{version}"
    commit_all(moved, "root to v2")

    # A service is its own copier project too; copier is run from another directory.
    service = run_offline([COPIER, "update", "--defaults", "--trust", moved / "services" / "left"], tmp_path,
                          tier.env())

    assert service.returncode == 0, service.stdout + service.stderr
    assert_edits_kept(moved)
    main = (moved / "services" / "left" / "app" / "main.py").read_text()
    assert "# v2: main" in main and "# MY_SETTING = 1" in main
    commit_all(moved, "left to v2")

    # opea-new finishes the other parts from yet another directory; what copier did is not redone.
    rest = opea_new(tier, "update", "--project", moved, cwd=tmp_path, templates=templates, version=version)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    steps = [line for line in rest.stdout.splitlines() if line.startswith("• ")]
    assert len(steps) == 4 and not any("services/left" in step or "megaservice v" in step for step in steps)
    assert_edits_kept(moved)


def test_a_fresh_machine_updates_a_project_from_a_release_it_never_ran(tier, tmp_path):
    """The old templates come from the history packaged with opea-new, not from this machine's cache."""
    project = tier.generate(DAG_SPEC, tmp_path / "grow-dag")
    edit_like_a_user(project)
    history = tmp_path / "packaged-history"
    recorded = subprocess.run([sys.executable, "-m", "opea_new.template_store", "record-release", "--history",
                               history], capture_output=True, text=True, env=_env(tier.env()))
    assert recorded.returncode == 0, recorded.stderr
    assert sorted(p.name for p in history.iterdir()) == ["compose.bundle", "megaservice.bundle",
                                                         "microservice.bundle"]
    fresh_home = tmp_path / "fresh-home"
    fresh_home.mkdir()
    version = next_version()
    templates = tier.newer_templates(version, small_release)

    # A packaged history without the project's version (the installed one records the current release itself).
    empty_history = tmp_path / "history-without-it"
    empty_history.mkdir()
    without = opea_new(tier, "update", "--project", project, cwd=tmp_path, templates=templates, version=version,
                       home=fresh_home, OPEA_NEW_TEMPLATE_HISTORY=str(empty_history))
    assert without.returncode == 2
    assert "does not have" in without.stderr and porcelain(project) == ""

    result = opea_new(tier, "update", "--project", project, cwd=tmp_path, templates=templates, version=version,
                      home=fresh_home, OPEA_NEW_TEMPLATE_HISTORY=str(history))

    assert result.returncode == 0, result.stdout + result.stderr
    assert_edits_kept(project)
    assert "# v2: main" in (project / "services" / "left" / "app" / "main.py").read_text()
    assert (fresh_home / ".cache" / "opea-new" / "templates" / "megaservice.bundle").is_file()


def test_a_fresh_machine_gets_the_bundles_plain_copier_needs_from_any_opea_new_update(tier, dag, tmp_path):
    fresh_home = tmp_path / "fresh-home"
    fresh_home.mkdir()
    result = opea_new(tier, "update", "--project", dag, cwd=tmp_path, home=fresh_home)
    assert result.returncode == 0, result.stderr
    assert "already up to date" in result.stdout

    copier = run_offline([COPIER, "update", "--defaults", "--trust"], dag, tier.env(home=fresh_home))

    assert copier.returncode == 0, copier.stdout + copier.stderr
    assert porcelain(dag) == "", "the same version re-rendered must change nothing"


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **extra}
