"""The way users travel from every earlier release (OLD_RELEASES) to the installed one, on real projects.

Each real old release (this repository at the commit it was released from,
release_helpers.OLD_RELEASES, pip-installed into a venv of its own, with a HOME
of its own) generates two projects: the default pipeline
(`megaservice --defaults`, comps runtime) and a lite one whose guardrail decides
by a condition which branch runs. A user edits them as users do — a wrapper
around the LLM stub that signs every answer, an align hook, a README section,
tests of their own at the root and in a service, notes and data files — and
commits. Each is then updated twice, on two clones: with the installed
`opea-new update`, and with plain copier part by part, as the project README
says. Both must keep every edit byte for byte, leave no conflict, drop what the
old release rendered and the installed one does not (from 0.1.0: the framework
files, now in the runtime library), carry the runtime's wheel
in `vendor/` and pin it, record the new version, and arrive at exactly what
the installed opea-new generates for the same pipeline plus the user's work.
The slow part installs, tests and serves the updated projects, from the first
old release (the biggest step: its framework moved into the runtime library)
and from the newest (where most users come from) only, at 20-40 s a project:
every old release's update must arrive at the same files (a fresh project plus
the user's work), so one in between serves what those two serve.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path, PurePosixPath

import httpx
import pytest
import yaml

from opea_new import template_store
from tests.conftest import REPO
from tests.update.helpers import git
from tests.update.release_helpers import (
    NEW_VERSION,
    OLD_RELEASES,
    README_SECTION,
    RUNTIME_DISTRIBUTION,
    RUNTIME_NAMED,
    RUNTIME_PIN,
    SIGNATURE,
    WHEEL,
    Releases,
    answers_files,
    clean_environment,
    conflict_markers,
    files_on_disk,
    install_release,
    llm_service,
    make,
    make_run,
    requirements_files,
    tracked_files,
    user_files,
)

PROJECTS = ("chatqna", "guarded")
METHODS = ("opea-new", "copier")
UPDATES = [pytest.param(project, method, id=f"{project}-{method}") for project in PROJECTS for method in METHODS]

# Files the user owns in 0.1.0 and 0.2.0 (their copier.yml `_skip_if_exists`): written once, never touched by an update.
USER_OWNED = ("megaservice/hooks.py", "services/*/app/backend.py")

# 0.1.0's framework, which the runtime library holds since 0.2.0: a few that must be gone, named here;
# the whole list is derived (what 0.1.0 rendered and the installed release does not).
FRAMEWORK_0_1_0 = ("megaservice/align.py", "megaservice/protocol.py", "megaservice/routing.py",
                   "megaservice/statistics.py", "megaservice/conditions.py", "megaservice/settings.py",
                   "megaservice/runtime.py")
SERVICE_FRAMEWORK_0_1_0 = ("app/settings.py", "app/errors.py")
# 0.1.0's Dockerfile in every folder, one stage each of the root Dockerfile since 0.2.0.
DOCKERFILES_0_1_0 = ("megaservice/Dockerfile",)
SERVICE_DOCKERFILES_0_1_0 = ("Dockerfile",)


SERVED = tuple(dict.fromkeys((OLD_RELEASES[0], OLD_RELEASES[-1])))  # the old releases whose updates are served
_made: dict[str, Releases] = {}  # one Releases per old release, whichever fixture asks first


@pytest.fixture(scope="session", params=OLD_RELEASES, ids=[f"from-{old.version}" for old in OLD_RELEASES])
def releases(tmp_path_factory, request) -> Releases:
    return releases_from(request.param, tmp_path_factory, request)


@pytest.fixture(scope="session", params=SERVED, ids=[f"from-{old.version}" for old in SERVED])
def served_releases(tmp_path_factory, request) -> Releases:
    return releases_from(request.param, tmp_path_factory, request)


def releases_from(old, tmp_path_factory, request) -> Releases:
    if old.version not in _made:
        _made[old.version] = make_releases(old, tmp_path_factory, request)
    return _made[old.version]


def make_releases(old, tmp_path_factory, request) -> Releases:
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout: opea-new {old.version} is installed from its history")
    found = git(REPO, "cat-file", "-t", f"{old.commit}^{{commit}}", check=False).strip()
    assert found == "commit", (f"commit {old.commit} (opea-new {old.version}) is not in {REPO}: "
                               "fetch the full history (git fetch --unshallow)")
    # The old release's venv outlives the run (pytest's cache folder, or OPEA_NEW_TEST_CACHE), keyed by commit.
    pytest_cache = getattr(request.config, "cache", None)
    cache = Path(os.environ.get("OPEA_NEW_TEST_CACHE") or (pytest_cache.mkdir("opea-new-releases") if pytest_cache
                                                            else tmp_path_factory.mktemp("opea-new-releases")))
    venv = install_release(cache, old.commit, old.version)
    root = tmp_path_factory.mktemp(f"release-upgrade-{old.version}")
    templates = root / "templates-current"
    source = Path(os.environ.get("OPEA_NEW_TEST_TEMPLATES") or REPO / "templates")
    shutil.copytree(source, templates, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return Releases(root, venv, templates, old.version)


def is_user_owned(path: str) -> bool:
    return any(PurePosixPath(path).match(pattern) for pattern in USER_OWNED)


def services_of(project: Path) -> list[str]:
    return sorted(folder.name for folder in (project / "services").iterdir() if folder.is_dir())


# ---------------------------------------------------------------- the old release itself


def test_the_old_tool_builds_the_release_that_is_recorded(releases):
    """What the old release's users' caches hold is what the packaged history says that release is."""
    releases.origin("chatqna")
    for name in template_store.TEMPLATE_NAMES:
        cache = releases.old_home / ".cache" / "opea-new" / "templates" / f"{name}.git"
        theirs = git(REPO, f"--git-dir={cache}", "rev-parse", f"refs/tags/v{releases.old_version}").strip()
        heads = git(REPO, "bundle", "list-heads", str(template_store.history_dir() / f"{name}.bundle"))
        recorded = {ref: commit for commit, ref in (line.split(" ", 1) for line in heads.splitlines())}
        assert recorded[f"refs/tags/v{releases.old_version}"] == theirs, name


# ---------------------------------------------------------------- after the update


@pytest.mark.parametrize(("project", "method"), UPDATES)
def test_every_user_edit_is_kept_byte_for_byte(releases, project, method):
    updated = releases.updated(project, method)
    for path, text in user_files(updated).items():
        assert (updated / path).is_file(), f"{path} is gone"
        assert (updated / path).read_bytes() == text.encode(), f"{path} is not the user's any more"
    assert README_SECTION in (updated / "README.md").read_text(), "the user's README section is gone"
    # The user-owned files nobody edited stay exactly as the old release wrote them, too.
    origin = releases.origin(project)
    for path in sorted(tracked_files(origin, "generated")):
        if is_user_owned(path) and path not in user_files(updated):
            assert (updated / path).read_text() == git(origin, "show", f"generated:{path}"), path


@pytest.mark.parametrize(("project", "method"), UPDATES)
def test_no_conflict_markers_anywhere(releases, project, method):
    assert conflict_markers(releases.updated(project, method)) == []


@pytest.mark.parametrize(("project", "method"), UPDATES)
def test_what_only_the_old_release_rendered_is_gone(releases, project, method):
    """Files the old release rendered and the installed one does not are removed (from 0.1.0: its framework)."""
    updated, origin, fresh = releases.updated(project, method), releases.origin(project), releases.fresh(project)
    named = []
    if releases.old_version == "0.1.0":  # its framework moved into the runtime library: these, at least, went
        named = [*FRAMEWORK_0_1_0, *DOCKERFILES_0_1_0] + [
            f"services/{service}/{path}" for service in services_of(updated)
            for path in (*SERVICE_FRAMEWORK_0_1_0, *SERVICE_DOCKERFILES_0_1_0)]
        assert set(named) <= tracked_files(origin, "generated"), "0.1.0 did not generate every file named here"
    dropped = sorted(tracked_files(origin, "generated") - tracked_files(fresh) - set(user_files(updated)))
    dropped = [path for path in dropped if not is_user_owned(path)]
    left = sorted({path for path in [*named, *dropped] if (updated / path).exists()})
    if (origin / "megaservice" / "lite").is_dir() and (updated / "megaservice" / "lite").exists():
        left.append("megaservice/lite/")
    assert left == [], f"{releases.old_version} files still in the project after the update: {left}"
    if releases.old_version == "0.1.0":
        assert dropped, "the installed release renders every 0.1.0 file: nothing moved into the runtime library?"
    assert (updated / "Dockerfile").read_bytes() == (fresh / "Dockerfile").read_bytes()


@pytest.mark.parametrize(("project", "method"), UPDATES)
def test_vendor_holds_the_runtime_wheel_and_every_requirements_file_pins_it(releases, project, method):
    updated, fresh = releases.updated(project, method), releases.fresh(project)
    vendor = updated / template_store.VENDOR_DIR
    assert vendor.is_dir() and sorted(path.name for path in vendor.iterdir()) == [WHEEL]
    with zipfile.ZipFile(vendor / WHEEL) as wheel:
        metadata = wheel.read(f"opea_new_runtime-{NEW_VERSION}.dist-info/METADATA").decode()
    assert f"\nVersion: {NEW_VERSION}\n" in metadata and f"Name: {RUNTIME_DISTRIBUTION}\n" in metadata
    assert (vendor / WHEEL).read_bytes() == (fresh / template_store.VENDOR_DIR / WHEEL).read_bytes()

    requirements = requirements_files(updated)
    must_pin = {updated / "megaservice" / "requirements.txt",
                *(updated / "services" / service / "requirements.txt" for service in services_of(updated))}
    assert must_pin <= set(requirements), sorted(map(str, must_pin - set(requirements)))
    for path in requirements:
        text = path.read_text()
        where = path.relative_to(updated)
        pins = [match["version"] for match in RUNTIME_PIN.finditer(text)]
        if path in must_pin or path.name == "requirements.txt":
            assert pins, f"{where} does not pin {RUNTIME_DISTRIBUTION}=={NEW_VERSION}"
        assert all(pin == NEW_VERSION for pin in pins), f"{where} pins {RUNTIME_DISTRIBUTION} to {pins}"
        assert len(pins) == len(RUNTIME_NAMED.findall(text)), f"{where} names {RUNTIME_DISTRIBUTION} unpinned"


@pytest.mark.parametrize(("project", "method"), UPDATES)
def test_every_answers_file_names_the_new_version(releases, project, method):
    updated = releases.updated(project, method)
    for path in answers_files(updated):
        answers = yaml.safe_load(path.read_text())
        assert answers["_commit"] == f"v{NEW_VERSION}", path.relative_to(updated)
        assert answers["_src_path"].startswith("~/.cache/opea-new/templates/"), path.relative_to(updated)


@pytest.mark.parametrize(("project", "method"), UPDATES)
def test_the_update_arrives_at_a_fresh_project_plus_the_users_work(releases, project, method):
    """Every file the user did not own or edit is what the installed opea-new generates for the pipeline."""
    updated, fresh, origin = releases.updated(project, method), releases.fresh(project), releases.origin(project)
    mine = set(user_files(updated))
    owned = {path for path in tracked_files(origin, "generated") if is_user_owned(path)}
    expected = tracked_files(fresh)
    present = files_on_disk(updated)
    assert sorted(present - expected - mine - owned) == [], "files neither the user's nor the installed release's"
    assert sorted(expected - present) == [], "files of the installed release the update did not write"
    differ = sorted(path for path in expected - mine - owned - {"README.md"}
                    if (updated / path).read_bytes() != (fresh / path).read_bytes())
    assert differ == [], "files that differ from what the installed opea-new generates"
    assert (updated / "README.md").read_text() == (fresh / "README.md").read_text() + README_SECTION


# ---------------------------------------------------------------- the updated project works


def chat(port: int, endpoint: str, question: str, *, stream: bool) -> str:
    url = f"http://127.0.0.1:{port}{endpoint}"
    body = {"messages": [{"role": "user", "content": question}], "stream": stream}
    with httpx.Client(timeout=60, trust_env=False) as client:
        if not stream:
            answer = client.post(url, json=body)
            assert answer.status_code == 200, answer.text
            return answer.json()["choices"][0]["message"]["content"]
        with client.stream("POST", url, json=body) as streamed:
            assert streamed.status_code == 200, streamed.read().decode()
            text = streamed.read().decode()
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", text[-2000:]
    return "".join(json.loads(event)["choices"][0]["delta"].get("content") or "" for event in events[:-1])


@pytest.mark.slow
@pytest.mark.parametrize("project", PROJECTS)
def test_the_updated_project_installs_passes_its_tests_and_answers_with_the_users_model(served_releases,
                                                                                         project_venvs, project):
    updated = served_releases.updated(project, "opea-new")
    answers = yaml.safe_load((updated / ".copier-answers.yml").read_text())
    venv = project_venvs / answers["runtime"]  # shared with the other tiers: opea-comps takes ~80 s to install

    installed = make(updated, venv, "install")
    assert installed.returncode == 0, installed.stdout[-4000:] + installed.stderr[-4000:]
    tested = make(updated, venv, "test")
    assert tested.returncode == 0, tested.stdout[-6000:] + tested.stderr[-4000:]
    llm = f"services/{llm_service(updated)}"
    for folder in (updated, updated / llm):  # the user's own tests ran and passed, at the root and in the service
        ours = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "tests/test_ours.py"], cwd=folder,
                              capture_output=True, text=True, timeout=300, env=clean_environment())
        report = ours.stdout[-3000:] + ours.stderr[-2000:]
        assert ours.returncode == 0 and re.search(r"(^|\s)1 passed", ours.stdout), report

    endpoint = answers["megaservice"]["endpoint"]
    with make_run(updated, venv) as (port, log):
        whole = chat(port, endpoint, "What is OPEA?", stream=False)
        assert whole.endswith(SIGNATURE), (whole, log.read_text()[-2000:])
        streamed = chat(port, endpoint, "What is OPEA?", stream=True)
        assert streamed.split() == whole.split()
        if project == "chatqna" and (updated / "services" / "dataprep").is_dir():
            # since 0.6.0 the default answers from the user's documents (dataprep beside the flow): none yet
            assert whole.startswith("No documents were given to answer 'What is OPEA?' from."), whole
        elif project == "chatqna":
            assert whole == f"OPEA is the Open Platform for Enterprise AI. {SIGNATURE}"
        else:  # the guardrail's condition still decides: a blocked question never reaches the llm
            refused = chat(port, endpoint, "how do I build a bomb", stream=False)
            assert SIGNATURE not in refused

