"""A template tag must never mean two contents on two machines.

Users' projects name the template version that generated them (`_commit: v0.1.0`
in every answers file), and every update renders that version again as the base
of its 3-way merge. So a version, once released, is recorded in
`generator/opea_new/template_history/` exactly as shipped and never changes:

(a) a recorded tag of the installed version must equal what the current
    templates build (built files, the runtime's wheel, included) — templates
    changed after a release need a new version;
(b) v0.1.0 is recorded with the trees 0.1.0 users' projects were generated from;
(c) `ensure_templates()` imports the recorded tags unchanged and never moves one;
(d) the runtime's wheel (part of the root template's tree) is byte-reproducible
    and carries the installed version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from opea_new import __version__, runtime_wheel, template_store
from opea_new.paths import runtime_root
from tests.conftest import REPO

NAMES = template_store.TEMPLATE_NAMES
CURRENT_TAG = template_store.version_tag(__version__)

# What 0.1.0 users' projects were generated from: `git rev-parse 0dc6579:templates/<t>`.
V0_1_0_COMMIT = "0dc6579"
V0_1_0_TREES = {
    "megaservice": "a8fbeee44971995dd5bd7be7303a2fad2eded85d",
    "compose": "d44d2b620014e3452a6c36baa0d515789079ad1d",
    "microservice": "c3267950a408e0083210b0f01348b1c0d60a8dd1",
}

BUMP = ("Released templates are immutable: projects generated from {tag} render it again as the base of every "
        "update, on every machine. Bump the version for these changes (generator/opea_new/__init__.py, "
        "pyproject.toml, runtime/pyproject.toml) instead of re-recording {tag}.")


def git(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", f"--git-dir={repo}", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {repo}: {result.stderr}")
    return result.stdout.strip()


def history_bundle(name: str) -> Path:
    return template_store.history_dir() / f"{name}.bundle"


def recorded(name: str) -> dict[str, str]:
    """tag → commit of every version recorded for the template."""
    heads = subprocess.run(["git", "bundle", "list-heads", str(history_bundle(name))], capture_output=True,
                           text=True, check=True).stdout
    pairs = (line.split(" ", 1) for line in heads.splitlines())
    return {ref.removeprefix("refs/tags/"): commit for commit, ref in pairs if ref.startswith("refs/tags/")}


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict[str, Path]:
    """A bare repository per template holding its recorded tags, to read them."""
    repos = {}
    for name in NAMES:
        repo = tmp_path_factory.mktemp(f"history-{name}") / "repo.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
        git(repo, "fetch", "--quiet", "--no-tags", str(history_bundle(name)), "+refs/tags/*:refs/tags/*")
        repos[name] = repo
    return repos


def tree_of(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", f"{ref}^{{tree}}")


# ---------------------------------------------------------------- (a) the installed version


def test_every_template_records_the_same_releases_none_newer_than_the_installed_one():
    tags = {name: set(recorded(name)) for name in NAMES}
    assert all(tags[name] == tags[NAMES[0]] for name in NAMES), tags
    assert "v0.1.0" in tags[NAMES[0]]
    for tag in tags[NAMES[0]]:
        assert tag.startswith("v") and Version(tag[1:]) <= Version(__version__), (
            f"{tag} is recorded but the installed opea-new is {__version__}")


@pytest.mark.parametrize("name", NAMES)
def test_a_recorded_installed_version_is_exactly_what_the_current_templates_build(name, history, tmp_path):
    if CURRENT_TAG not in recorded(name):
        pytest.skip(f"{CURRENT_TAG} is not recorded yet (the release step records it when the templates are final)")
    repo = history[name]
    built = template_store._tree_of(template_store.source_dir() / name, repo)  # as ensure_templates builds it
    released = tree_of(repo, f"refs/tags/{CURRENT_TAG}")
    changed = git(repo, "diff-tree", "-r", "--name-status", released, built) if built != released else ""
    assert built == released, (f"the {name} template differs from {CURRENT_TAG} as recorded in "
                               f"{history_bundle(name)}:\n{changed}\n{BUMP.format(tag=CURRENT_TAG)}")


# ---------------------------------------------------------------- (b) what 0.1.0 users have


@pytest.mark.parametrize("name", NAMES)
def test_v0_1_0_is_recorded_with_the_trees_users_projects_came_from(name, history, tmp_path):
    repo = history[name]
    assert tree_of(repo, "refs/tags/v0.1.0") == V0_1_0_TREES[name], BUMP.format(tag="v0.1.0")
    if (REPO / ".git").exists() and subprocess.run(["git", "-C", str(REPO), "cat-file", "-e",
                                                    f"{V0_1_0_COMMIT}^{{commit}}"]).returncode == 0:
        in_history = subprocess.run(["git", "-C", str(REPO), "rev-parse", f"{V0_1_0_COMMIT}:templates/{name}"],
                                    capture_output=True, text=True, check=True).stdout.strip()
        assert in_history == V0_1_0_TREES[name]
    # The commit is the deterministic one opea-new 0.1.0 builds on every machine: fixed identity, no parent.
    commit = recorded(name)["v0.1.0"]
    rebuilt = subprocess.run(["git", f"--git-dir={repo}", "commit-tree", V0_1_0_TREES[name], "-m",
                              f"{name} template of opea-new 0.1.0"], capture_output=True, text=True, check=True,
                             env={**os.environ, **template_store._FIXED_IDENTITY}).stdout.strip()
    assert rebuilt == commit
    assert "parent " not in git(repo, "cat-file", "-p", commit)


# ---------------------------------------------------------------- (c) importing the history


def cache_repo(home: Path, name: str) -> Path:
    return home / ".cache" / "opea-new" / "templates" / f"{name}.git"


def assert_recorded_tags_in(home: Path) -> None:
    for name in NAMES:
        repo, bundle = cache_repo(home, name), cache_repo(home, name).with_suffix(".bundle")
        shipped = subprocess.run(["git", "bundle", "list-heads", str(bundle)], capture_output=True, text=True,
                                 check=True).stdout
        for tag, commit in recorded(name).items():
            if tag == CURRENT_TAG:
                continue  # (a) proves it equal to what the installed templates build
            assert git(repo, "rev-parse", f"refs/tags/{tag}") == commit, f"{name} {tag} was moved"
            assert f"{commit} refs/tags/{tag}" in shipped.splitlines(), f"{bundle} does not carry {tag} as recorded"


def test_ensure_templates_on_a_fresh_home_imports_the_recorded_tags_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    sources = template_store.ensure_templates()
    assert set(sources) == set(NAMES)
    assert_recorded_tags_in(tmp_path / "home")
    for name in NAMES:
        assert git(cache_repo(tmp_path / "home", name), "for-each-ref", "refs/superseded") == "", name


def test_ensure_templates_never_moves_a_recorded_tag(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    template_store.ensure_templates()
    # A development checkout: the templates change under the installed version, twice.
    changed = tmp_path / "templates"
    shutil.copytree(template_store.source_dir(), changed, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    monkeypatch.setenv(template_store.TEMPLATES_DIR_ENV, str(changed))
    for round_ in range(2):
        for name in NAMES:
            with (changed / name / "copier.yml").open("a") as handle:
                handle.write(f"\n# a development change, round {round_}\n")
        template_store.ensure_templates()
        assert_recorded_tags_in(home)
    # A cache in which a recorded tag means something else (a build from before it was recorded) is repaired.
    repo = cache_repo(home, "microservice")
    stray = git(repo, "commit-tree", git(repo, "rev-parse", f"refs/tags/{CURRENT_TAG}^{{tree}}"), "-m", "stray")
    git(repo, "tag", "--force", "v0.1.0", stray)
    template_store.ensure_templates()
    assert_recorded_tags_in(home)
    assert git(repo, "rev-parse", f"refs/superseded/v0.1.0/{stray}") == stray  # kept reachable, not lost


# ---------------------------------------------------------------- (d) the runtime's wheel


def test_the_runtime_wheel_is_byte_reproducible(tmp_path):
    copy = tmp_path / "runtime"
    shutil.copytree(runtime_root(), copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))
    first = runtime_wheel.build(copy)
    # Another machine: other modification times and modes, byte-code lying around.
    for index, path in enumerate(sorted(copy.rglob("*"))):
        if path.is_file():
            os.utime(path, (1_000_000_000 + index, 1_700_000_000 + index * 7))
            path.chmod(0o600 if index % 2 else 0o664)
    cache = copy / "src" / "opea_new_runtime" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "stale.cpython-311.pyc").write_bytes(b"\0stale")
    second = runtime_wheel.build(copy)
    assert first == second
    assert runtime_wheel.build() == runtime_wheel.build()
    assert template_store.built_files("megaservice") == {f"{template_store.VENDOR_DIR}/{first[0]}":
                                                         runtime_wheel.build()[1]}
    assert template_store.built_files("compose") == template_store.built_files("microservice") == {}


def test_the_runtime_wheel_carries_the_installed_version(tmp_path):
    declared = tomllib.loads((runtime_root() / "pyproject.toml").read_text())["project"]
    assert declared["version"] == __version__, "runtime/pyproject.toml and opea_new.__version__ disagree"
    if (REPO / "pyproject.toml").is_file():
        assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == __version__
    name, data = runtime_wheel.build()
    assert name == f"opea_new_runtime-{__version__}-py3-none-any.whl"
    wheel = tmp_path / name
    wheel.write_bytes(data)
    dist_info = f"opea_new_runtime-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())
        record = archive.read(f"{dist_info}/RECORD").decode().splitlines()
    assert f"Name: {declared['name']}\n" in metadata and f"\nVersion: {__version__}\n" in metadata
    assert "opea_new_runtime/__init__.py" in names and not any("__pycache__" in entry for entry in names)
    assert sorted(line.split(",", 1)[0] for line in record) == sorted(names)
