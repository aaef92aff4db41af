"""Every refusal: exit 2, a message that says what and where, and the project exactly as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from opea_new import __version__
from tests.update.helpers import SHARED_CONDITIONAL, commit_all, edit, git, head, porcelain


def refused(tier, project: Path, *args: str, expect: list[str]) -> str:
    """Run a command that must be refused; returns its stderr."""
    before = (head(project), porcelain(project)) if (project / ".git").exists() else None
    result = tier.cli(*args, "--project", project)
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    message = " ".join(result.stderr.split())  # rich may wrap; compare words
    for text in expect:
        assert text in message, f"{text!r} not in: {result.stderr}"
    assert "nothing was changed" in message
    assert "Traceback" not in result.stderr
    if before:
        assert (head(project), porcelain(project)) == before
    return result.stderr


ADD_AUDIT = ("add-service", "audit", "--type", "undefined", "--after", "source")


@pytest.mark.parametrize("command", [ADD_AUDIT, ("remove-service", "left"), ("update",)])
def test_a_directory_that_is_not_a_generated_project(tier, tmp_path, command):
    plain = tmp_path / "plain"
    plain.mkdir()
    git(plain, "init", "--quiet")
    (plain / "README.md").write_text("not generated\n")
    commit_all(plain, "mine")

    refused(tier, plain, *command, expect=[str(plain), "not an opea-new project", ".copier-answers.yml"])


@pytest.mark.parametrize("command", [ADD_AUDIT, ("remove-service", "left"), ("update",)])
def test_a_dirty_tree_names_the_dirty_files(tier, dag, command):
    (dag / "README.md").write_text("half-done edit\n")
    (dag / "notes.txt").write_text("untracked\n")

    refused(tier, dag, *command, expect=["uncommitted changes", "README.md (modified)", "notes.txt (untracked)",
                                         "commit or stash"])


def test_a_project_that_is_not_in_git(tier, dag):
    subprocess.run(["rm", "-rf", str(dag / ".git")], check=True)

    refused(tier, dag, *ADD_AUDIT, expect=["not the root of a git repository"])


@pytest.mark.parametrize(("flag", "name"), [("--after", "nope"), ("--before", "sourc")])
def test_unknown_service_in_after_or_before(tier, dag, flag, name):
    refused(tier, dag, "add-service", "audit", "--type", "undefined", flag, name,
            expect=[f"no service {name!r}"])


def test_a_duplicate_name(tier, dag):
    refused(tier, dag, "add-service", "left", "--type", "undefined", "--after", "source",
            expect=["cannot add 'left'", "'left' is already the name of services[1]"])


def test_a_name_that_collides_after_normalisation(tier, dag):
    assert tier.cli("add-service", "my_tap", "--type", "undefined", "--after", "right", "--project", dag
                    ).returncode == 0
    commit_all(dag, "my_tap")

    refused(tier, dag, "add-service", "my-tap", "--type", "undefined", "--after", "right",
            expect=["'my-tap' collides with", "'my_tap'"])


@pytest.mark.parametrize(("port", "owner"), [("18802", "services[1] (left)"), ("18880", "megaservice")])
def test_a_port_collision(tier, dag, port, owner):
    refused(tier, dag, "add-service", "audit", "--type", "undefined", "--after", "source", "--port", port,
            expect=[f"{port} is already used by {owner}"])


def test_an_insertion_that_would_create_a_cycle(tier, dag):
    refused(tier, dag, "add-service", "audit", "--type", "undefined", "--after", "sink", "--before", "source",
            expect=["would create a cycle", "audit"])


def test_no_position_in_a_flow_that_is_not_a_chain(tier, dag):
    refused(tier, dag, "add-service", "audit", "--type", "undefined", expect=["not a single chain", "--after",
                                                                             "--before"])


def test_a_name_that_is_not_a_type_needs_one_without_a_terminal(tier, dag):
    refused(tier, dag, "add-service", "audit", "--after", "source", expect=["--type"])


@pytest.mark.parametrize("command", [ADD_AUDIT, ("remove-service", "left"), ("update",)])
def test_templates_newer_than_the_installed_opea_new(tier, dag, command):
    answers = dag / "services" / "left" / ".copier-answers.yml"
    edit(answers, f"_commit: v{__version__}\n", "_commit: v99.0.0\n")
    commit_all(dag, "from the future")

    refused(tier, dag, *command, expect=["services/left/.copier-answers.yml", "v99.0.0",
                                         f"newer than the installed opea-new {__version__}"])


def test_adding_to_a_project_on_older_templates_asks_for_an_update_first(tier, dag):
    answers = dag / "compose.yaml"
    assert answers.is_file()
    edit(dag / ".copier-answers.compose.yml", f"_commit: v{__version__}\n", "_commit: v0.0.1\n")
    commit_all(dag, "older compose part")

    refused(tier, dag, *ADD_AUDIT, expect=["older templates", "compose (v0.0.1)", "opea-new update"])


def test_removing_an_unknown_service(tier, dag):
    refused(tier, dag, "remove-service", "nope", expect=["no service 'nope'", "source, left, right, sink"])


def test_removing_a_node_on_conditional_edges(tier, tmp_path):
    project = tier.generate(SHARED_CONDITIONAL.read_text(), tmp_path / "guarded")

    refused(tier, project, "remove-service", "data_processor",
            expect=["conditional edges", "guard → data_processor (!blocked)", "edit the flow by hand"])


def test_removing_the_only_service(tier, tmp_path):
    project = tier.generate("name: lonely\nruntime: lite\nservices:\n  - {name: only, type: undefined}\n",
                            tmp_path / "lonely")

    refused(tier, project, "remove-service", "only", expect=["'only' is the only service"])
