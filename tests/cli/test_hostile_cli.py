"""Hostile command lines and file systems: every case exits 0, 1 or 2 within seconds, with one message, no
traceback, and nothing outside the output changed — nor, with --force, any file that was already there.

Each test runs the installed `opea-new` console script as a subprocess, the way users run it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import opea_new_command, run_cli

SPEC = "name: tiny\nruntime: lite\nservices:\n  - {name: echo, type: undefined, port: 18111}\n"
TIMEOUT = 60  # every run here is bounded; a refusal takes about a second


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`, not following links: type, mode, content digest or link target."""
    entries: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        relative = path.relative_to(root).as_posix()
        if stat.S_ISLNK(info.st_mode):
            entries[relative] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            entries[relative] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            entries[relative] = ("file", stat.S_IMODE(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return entries


def outcome(result: subprocess.CompletedProcess, codes=(2,), says: tuple[str, ...] = ()) -> str:
    message = " ".join(result.stderr.split())
    assert result.returncode in codes, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    if result.returncode:
        assert "error:" in result.stderr, result.stderr
    for text in says:
        assert text in message, f"{text!r} not in: {result.stderr}"
    return message


@pytest.fixture
def world(tmp_path) -> Path:
    """A working folder with a spec and a canary folder beside it (outside every output)."""
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "keep.txt").write_text("canary\n")
    return tmp_path


def read_only_mount(folder: Path) -> list[str]:
    """A command prefix that runs opea-new with `folder` read-only (a private mount namespace: as root too)."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    if probe.returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("no mount namespace to make a folder read-only for root")
        folder.chmod(0o555)
        return []
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


def run_prefixed(prefix: list[str], *args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *opea_new_command(), *map(str, args)], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------- outputs that cannot be used: exit 2


def _through_a_file(world):
    (world / "a-file").write_text("x\n")
    return ["--output", world / "a-file" / "project"], "a-file is a file"


def _long_name(world):
    return ["--output", world / ("n" * 300)], "longer than the file system's limit"


def _long_path(world):
    return ["--output", world.joinpath(*["d" * 200] * 25)], "too long"


def _output_is_a_file(world):
    (world / "taken").write_text("x\n")
    return ["--output", world / "taken"], "not a directory"


def _not_empty(world):
    (world / "full").mkdir()
    (world / "full" / "mine.txt").write_text("mine\n")
    return ["--output", world / "full"], "is not empty"


def _home_is_a_file(world):
    (world / "home-file").write_text("x\n")
    return ["--output", world / "p", {"HOME": str(world / "home-file")}], "HOME"


def _home_missing(world):
    return ["--output", world / "p", {"HOME": str(world / "no-such-home")}], "HOME"


def _home_relative(world):
    return ["--output", world / "p", {"HOME": "relative/home"}], "not an absolute path"


def _home_cache_is_a_file(world):
    home = world / "home"
    home.mkdir()
    (home / ".cache").write_text("not a folder\n")
    return ["--output", world / "p", {"HOME": str(home)}], ".cache is a file"


OUTPUT_CASES = [_through_a_file, _long_name, _long_path, _output_is_a_file, _not_empty, _home_is_a_file,
                _home_missing, _home_relative, _home_cache_is_a_file]


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=[case.__name__.strip("_") for case in OUTPUT_CASES])
def test_an_unusable_output_or_home_is_exit_2_with_one_message(world, case):
    args, expected = case(world)
    env = args.pop() if isinstance(args[-1], dict) else None
    before = snapshot(world)
    started = time.monotonic()

    result = run_cli("megaservice", "--spec", world / "spec.yaml", *args, cwd=world, env=env, timeout=TIMEOUT)

    outcome(result, says=(expected, "nothing was written"))
    assert time.monotonic() - started < 30
    assert snapshot(world) == before


@pytest.mark.parametrize("where", ["parent", "cwd"])
def test_an_unwritable_parent_or_current_directory_is_exit_2(world, where):
    locked = world / "locked"
    locked.mkdir()
    prefix = read_only_mount(locked)
    before = snapshot(world)
    args = ["--output", locked / "p"] if where == "parent" else []

    result = run_prefixed(prefix, "megaservice", "--spec", world / "spec.yaml", *args, cwd=locked)

    outcome(result, says=("is not writable", "nothing was written"))
    locked.chmod(0o755)
    assert snapshot(world) == before


def test_a_deleted_current_directory_is_exit_2(world):
    gone = world / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "$@"'
    result = run_prefixed(["sh", "-c", script, "sh"], "megaservice", "--spec", world / "spec.yaml", cwd=world)

    outcome(result, says=("current directory",))


@pytest.mark.parametrize("spelling", [".", ""])
def test_output_dot_fills_the_current_directory_in_place(world, spelling):
    here = world / "here"
    here.mkdir()
    inode = here.stat().st_ino

    result = run_cli("megaservice", "--spec", world / "spec.yaml", "--output", spelling, cwd=here, timeout=TIMEOUT)

    outcome(result, codes=(0,))
    assert here.stat().st_ino == inode, "the current directory was replaced under the shell"
    assert (here / ".copier-answers.yml").is_file() and (here / ".git").is_dir()
    assert not [name for name in os.listdir(here) if name.startswith(".opea-new-")]
    assert not [name for name in os.listdir(world) if name.startswith(".opea-new-")]


# ---------------------------------------------------------------- --force: only ever adds


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, bytes]:
    """What the spec generates: path -> content."""
    root = tmp_path_factory.mktemp("reference")
    (root / "spec.yaml").write_text(SPEC)
    outcome(run_cli("megaservice", "--spec", root / "spec.yaml", "--output", root / "p", timeout=TIMEOUT),
            codes=(0,))
    return {path.relative_to(root / "p").as_posix(): path.read_bytes() for path in (root / "p").rglob("*")
            if path.is_file() and ".git" not in path.relative_to(root / "p").parts}


def _users_file(name):
    def arrange(target: Path, outside: Path) -> str:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text("the user's own\n")
        return name
    arrange.__name__ = f"users_{name.replace('/', '_')}"
    return arrange


def _read_only_file(target, outside):
    (target / "Makefile").write_text("mine\n")
    (target / "Makefile").chmod(0o444)
    return "Makefile"


def _file_where_a_folder_goes(target, outside):
    (target / "services").write_text("a file, where opea-new puts a folder\n")
    return "services is a file"


def _folder_where_a_file_goes(target, outside):
    (target / "README.md").mkdir()
    return "README.md: a folder"


def _readme_links_outside(target, outside):
    (outside / "README.md").write_text("outside\n")
    (target / "README.md").symlink_to(outside / "README.md")
    return "README.md is a symbolic link"


def _services_links_elsewhere(target, outside):
    (outside / "services").mkdir()
    (target / "services").symlink_to(outside / "services")
    return "services is a symbolic link"


def _git_is_a_link(target, outside):
    (outside / "repo.git").mkdir()
    (target / ".git").symlink_to(outside / "repo.git")
    return ".git: not a plain folder"


FORCE_CASES = [_users_file("README.md"), _users_file("Makefile"), _users_file("services/echo/app/backend.py"),
               _users_file("megaservice/hooks.py"), _read_only_file, _file_where_a_folder_goes,
               _folder_where_a_file_goes, _readme_links_outside, _services_links_elsewhere, _git_is_a_link]


@pytest.mark.parametrize("arrange", FORCE_CASES, ids=[case.__name__.strip("_") for case in FORCE_CASES])
def test_force_refuses_to_change_what_is_there_and_writes_nothing(world, arrange):
    target, outside = world / "mine", world / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "notes.txt").write_text("keep\n")
    expected = arrange(target, outside)
    before = snapshot(world)

    result = run_cli("megaservice", "--spec", world / "spec.yaml", "--output", target, "--force", cwd=world,
                     timeout=TIMEOUT)

    outcome(result, says=(expected, "--force would change", "nothing was written"))
    target.chmod(0o755)
    assert snapshot(world) == before


def test_force_adds_the_generated_files_beside_the_users(world, generated):
    target = world / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep\n")
    (target / "README.md").write_bytes(generated["README.md"])  # identical: allowed, left as it is

    result = run_cli("megaservice", "--spec", world / "spec.yaml", "--output", target, "--force", cwd=world,
                     timeout=TIMEOUT)

    outcome(result, codes=(0,))
    assert (target / "notes.txt").read_text() == "keep\n"
    for path, content in generated.items():
        assert (target / path).read_bytes() == content, path


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_force_never_changes_an_existing_file_property(tmp_path_factory, generated, data):
    """Any mix of pre-existing files (identical or not) at generated paths: exit 0 with every one of them
    byte for byte as it was, or exit 2 with the whole folder as it was."""
    world = tmp_path_factory.mktemp("force-property")
    (world / "spec.yaml").write_text(SPEC)
    target = world / "mine"
    target.mkdir()
    paths = data.draw(st.lists(st.sampled_from(sorted(generated)), max_size=4, unique=True), label="existing")
    for path in paths:
        same = data.draw(st.booleans(), label=f"{path} identical")
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_bytes(generated[path] if same else b"the user's\n")
    before = snapshot(world)

    result = run_cli("megaservice", "--spec", world / "spec.yaml", "--output", target, "--force", cwd=world,
                     timeout=TIMEOUT)

    outcome(result, codes=(0, 2))
    if result.returncode == 2:
        assert snapshot(world) == before
    else:
        after = snapshot(world)
        assert all(after[path] == before[path] for path in before if not path.startswith("mine/.git"))
    shutil.rmtree(world)


# ---------------------------------------------------------------- races and interruptions


def test_two_runs_racing_for_one_output(world):
    target = world / "raced"
    command = [*opea_new_command(), "megaservice", "--spec", str(world / "spec.yaml"), "--output", str(target)]
    runs = [subprocess.Popen(command, cwd=world, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(run.wait(timeout=TIMEOUT), *run.communicate(timeout=TIMEOUT)) for run in runs]

    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and set(codes[1:]) <= {0, 2}, results
    assert codes.count(0) == 1, results
    for code, _stdout, stderr in results:
        assert "Traceback" not in stderr, stderr
        if code == 2:
            assert "nothing was written" in " ".join(stderr.split()), stderr
    log = subprocess.run(["git", "log", "--format=%s"], cwd=target, capture_output=True, text=True, check=True)
    assert log.stdout.splitlines() == ["Generate tiny with opea-new"]
    assert not [name for name in os.listdir(world) if name.startswith(".opea-new-")]


@pytest.mark.parametrize("delay", [0.3, 0.6, 0.9, 1.2])
def test_ctrl_c_says_what_is_true(world, delay):
    """Whenever Ctrl-C lands: either nothing is there and it says so, or the project is complete and it says so."""
    target = world / "interrupted"
    process = subprocess.Popen([*opea_new_command(), "megaservice", "--spec", str(world / "spec.yaml"),
                                "--output", str(target)], cwd=world, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=TIMEOUT)

    assert "Traceback" not in stderr, stderr
    assert process.returncode in (0, 130), stderr
    if process.returncode == 130:
        if target.exists():
            assert f"the project is complete at {target}" in " ".join(stderr.split()), stderr
            assert subprocess.run(["git", "status", "--porcelain"], cwd=target, capture_output=True, text=True,
                                  check=True).stdout == ""
        else:
            assert "nothing was changed" in stderr or "nothing was written" in stderr, stderr
    assert not [name for name in os.listdir(world) if name.startswith(".opea-new-")]


# ---------------------------------------------------------------- failures of the work itself, and --verbose


def test_a_failing_render_is_exit_1_and_verbose_keeps_the_staging(world, tmp_path_factory):
    from tests.conftest import REPO

    templates = tmp_path_factory.mktemp("broken") / "templates"
    shutil.copytree(REPO / "templates", templates, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    readme = templates / "megaservice" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\n{{ no_such_answer.attribute }}\n")
    home = world / "home"
    home.mkdir()
    env = {"OPEA_NEW_TEMPLATES_DIR": str(templates), "HOME": str(home)}

    plain = run_cli("megaservice", "--spec", world / "spec.yaml", "--output", world / "p", cwd=world, env=env,
                    timeout=TIMEOUT)
    outcome(plain, codes=(1,), says=("rendering the megaservice template",))
    assert not (world / "p").exists()
    assert not [name for name in os.listdir(world) if name.startswith(".opea-new-")]

    verbose = run_cli("--verbose", "megaservice", "--spec", world / "spec.yaml", "--output", world / "p",
                      cwd=world, env=env, timeout=TIMEOUT)
    assert verbose.returncode == 1, verbose.stderr
    assert "opea-new: rendering" in verbose.stderr  # each step logged
    kept = [line.split("kept for inspection:")[1].strip() for line in verbose.stderr.splitlines()
            if "kept for inspection:" in line]
    assert kept and all(Path(folder).is_dir() for folder in kept), verbose.stderr
    assert not (world / "p").exists()
    for folder in kept:
        shutil.rmtree(folder)


def test_help_says_what_force_does(cli):
    result = cli("megaservice", "--help", env={"COLUMNS": "200"})

    text = " ".join(result.stdout.split())
    assert "only adds" in text and "writes nothing" in text
