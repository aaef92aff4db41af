"""add-service, remove-service, update and graph on damaged projects: hand-edited answers files and committed
symbolic links. Every case exits 2 within seconds with a message naming the file and the key (or the link),
no traceback, the project exactly as it was, and nothing outside it touched — --dry-run included.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.update.helpers import clone, commit_all, head, porcelain

TIMEOUT = 60
COMMANDS = {
    "add": ("add-service", "audit", "--type", "undefined", "--after", "source"),
    "add-dry": ("add-service", "audit", "--type", "undefined", "--after", "source", "--dry-run"),
    "remove": ("remove-service", "right"),
    "update": ("update",),
    "graph": ("graph",),
}


def digest(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".git/"):
            continue
        if path.is_symlink():
            found[relative] = "link:" + os.readlink(path)
        elif path.is_file():
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def refused(tier, project: Path, command: str, expect: list[str], *, canary: Path | None = None) -> str:
    before = (head(project), porcelain(project), digest(project))
    outside = digest(canary) if canary else None
    result = run_cli(*COMMANDS[command], "--project", project, cwd=project.parent, env=tier.env(), timeout=TIMEOUT)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    for text in expect:
        assert text in message, f"{text!r} not in: {result.stderr}"
    assert (head(project), porcelain(project), digest(project)) == before
    if canary:
        assert digest(canary) == outside
    return message


def rewrite(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


ROOT = ".copier-answers.yml"
LEFT = "services/left/.copier-answers.yml"


def _set(file: str, key: str, value):
    def damage(project: Path) -> None:
        rewrite(project / file, lambda data: data.__setitem__(key, value))
    return damage


def _drop(file: str, key: str):
    def damage(project: Path) -> None:
        rewrite(project / file, lambda data: data.pop(key))
    return damage


def _append_bytes(file: str, data: bytes):
    def damage(project: Path) -> None:
        with (project / file).open("ab") as handle:
            handle.write(data)
    return damage


DAMAGES = {
    "services-a-number": (_set(ROOT, "services", 5), [ROOT, "services", "must be a list"]),
    "flow-a-number": (_set(ROOT, "flow", 3), [ROOT, "flow", "must be a list"]),
    "megaservice-null": (_set(ROOT, "megaservice", None), [ROOT, "megaservice"]),
    "service-not-a-mapping": (_set(ROOT, "services", [5]), [ROOT, "services[0]", "must be a mapping"]),
    "runtime-a-list": (_set(ROOT, "runtime", [1]), [ROOT, "runtime"]),
    # Found by the property below: copier refused the null when rendering the recorded base (exit 1).
    "description-null": (_set(ROOT, "description", None), [ROOT, "description", "must be a string"]),
    "invalid-utf8": (_append_bytes(ROOT, b"\nx: \xff\xfe\n"), [ROOT, "utf-8"]),
    "deep-nesting": (_append_bytes(ROOT, b"\ndeep: " + b"[" * 3000 + b"]" * 3000 + b"\n"),
                     [ROOT, "nested more than 64 levels"]),
    "not-a-mapping": (lambda project: (project / ROOT).write_text("- just\n- a list\n"), [ROOT]),
    "service-name-missing": (_drop(LEFT, "service_name"), [LEFT, "service_name", "is required"]),
    "service-port-not-a-number": (_set(LEFT, "port", "abc"), [LEFT, "port", "whole number"]),
    "service-port-out-of-range": (_set(LEFT, "port", 70000), [LEFT, "port", "out of range"]),
    "service-endpoint-bad": (_set(LEFT, "endpoint", "no-slash"), [LEFT, "endpoint"]),
    "service-name-mismatch": (_set(LEFT, "service_name", "right"), [LEFT, "service_name", "'right'",
                                                                     "does not match its folder services/left/"]),
    "service-name-unknown": (_set(LEFT, "service_name", "ghost"), [LEFT, "'ghost'"]),
    "compose-services-a-number": (_set(".copier-answers.compose.yml", "services", 7),
                                  [".copier-answers.compose.yml", "services"]),
}
PROJECT_COMMANDS = ["add-dry", "remove", "update"]  # add-service without --dry-run: the same checks


@pytest.mark.parametrize("command", PROJECT_COMMANDS)
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_hand_edited_answers_file_is_a_located_refusal(tier, dag, damage, command):
    change, expect = DAMAGES[damage]
    change(dag)
    commit_all(dag, f"damage: {damage}")

    refused(tier, dag, command, expect)


@pytest.mark.parametrize("damage", ["services-a-number", "megaservice-null", "invalid-utf8", "deep-nesting"])
def test_graph_of_a_damaged_project_is_a_located_refusal(tier, dag, damage):
    change, expect = DAMAGES[damage]
    change(dag)
    commit_all(dag, f"damage: {damage}")

    refused(tier, dag, "graph", expect)


def test_a_mismatched_service_name_never_deletes_the_live_service(tier, dag):
    """The bug: add-service exited 0 and deleted services/left (its answers said it was `right`)."""
    _set(LEFT, "service_name", "right")(dag)
    commit_all(dag, "left's answers say right")
    files = sorted(path.name for path in (dag / "services" / "left").rglob("*"))

    refused(tier, dag, "add", ["service_name", "'right'"])
    assert sorted(path.name for path in (dag / "services" / "left").rglob("*")) == files


@pytest.mark.parametrize("command", ["add", "add-dry"])
def test_a_committed_link_where_the_new_service_goes_is_refused(tier, dag, tmp_path, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("canary\n")
    (dag / "services" / "audit").symlink_to(outside)
    commit_all(dag, "a link where audit will go")

    message = refused(tier, dag, command, ["services/audit is a symbolic link", str(outside)], canary=outside)
    assert "never writes through links" in message
    assert sorted(os.listdir(outside)) == ["keep.txt"]


def test_a_committed_link_for_a_file_the_change_rewrites_is_refused(tier, dag, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "README.md").write_text("someone else's\n")
    (dag / "README.md").unlink()
    (dag / "README.md").symlink_to(outside / "README.md")
    commit_all(dag, "README is a link")

    refused(tier, dag, "add", ["README.md is a symbolic link"], canary=outside)
    refused(tier, dag, "add-dry", ["README.md is a symbolic link"], canary=outside)


def test_a_linked_service_folder_is_not_read_as_part_of_the_project(tier, dag, tmp_path):
    """services/ghost links to another project's service: its answers are not the project's, so not read."""
    other = clone(dag, tmp_path / "other")
    (dag / "services" / "ghost").symlink_to(other / "services" / "left")
    commit_all(dag, "a linked folder")
    before = digest(other)

    result = run_cli(*COMMANDS["add-dry"], "--project", dag, env=tier.env(), timeout=TIMEOUT)

    assert result.returncode == 0, result.stderr
    assert "services/ghost/" not in result.stdout  # listed as the (unchanged) link, never as a part
    assert digest(other) == before


# ---------------------------------------------------------------- any value anywhere: 0 or 2, never a traceback

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30), st.text(max_size=30),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just([[[[["deep"]]]]]),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=st.sampled_from([ROOT, LEFT, ".copier-answers.compose.yml"]), data=st.data())
def test_any_hand_edit_of_an_answers_file_is_0_or_2_property(tier, dag_origin, tmp_path_factory, file, data):
    project = clone(dag_origin, tmp_path_factory.mktemp("damaged") / "grow-dag")
    answers = yaml.safe_load((project / file).read_text())
    key = data.draw(st.sampled_from(sorted(answers)), label="key")
    value = data.draw(HOSTILE_VALUES, label="value")
    answers[key] = value
    (project / file).write_text(yaml.safe_dump(answers, sort_keys=False))
    commit_all(project, "hand edit")
    before = (head(project), porcelain(project), digest(project))

    result = run_cli(*COMMANDS["add-dry"], "--project", project, env=tier.env(), timeout=TIMEOUT)

    # A hand edit the project's files do not follow (a new description, say) may make the dry run report a
    # conflict: exit 1, as the CLI's contract says, and only then; anything else is 0 (done) or 2 (refused).
    conflict = result.returncode == 1 and re.search(r"\d+ would conflict\. Nothing was written", result.stdout)
    assert result.returncode in (0, 2) or conflict, f"{file} {key}={value!r}: exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 2:
        assert "error:" in result.stderr
    assert (head(project), porcelain(project), digest(project)) == before


@pytest.mark.parametrize("value", [None, False, True, 0, 3, [], {}, ["a"]])
def test_a_description_that_is_not_a_string_is_a_located_refusal(tier, dag, value):
    """Values the property above once drew: a falsy one slipped past the check, and copier then failed (exit 1)."""
    _set(ROOT, "description", value)(dag)
    commit_all(dag, f"description: {value!r}")

    refused(tier, dag, "add-dry", [ROOT, "description"])
