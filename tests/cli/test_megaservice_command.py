"""`opea-new megaservice`: what users type, run as a subprocess like they run it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from tests.conftest import SHARED_SPECS, opea_new_command


def tree_digest(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_defaults_render_a_committed_project_without_a_terminal(cli, tmp_path):
    result = cli("megaservice", "--defaults", "--output", tmp_path / "chatqna")

    assert result.returncode == 0, result.stderr
    project = tmp_path / "chatqna"
    assert git(project, "log", "--format=%s").splitlines() == ["Generate chatqna with opea-new"]
    assert git(project, "status", "--porcelain") == ""
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_src_path"] == "~/.cache/opea-new/templates/megaservice.bundle"
    assert answers["_commit"].startswith("v")
    assert [s["name"] for s in answers["services"]] == ["embedding", "retriever", "rerank", "llm", "dataprep"]
    assert [entry["service"] for entry in answers["flow"]] == ["embedding", "retriever", "rerank"]  # dataprep beside
    for service in ("embedding", "retriever", "rerank", "llm", "dataprep"):
        assert (project / "services" / service / ".copier-answers.yml").is_file()
    for owned in ("Makefile", "README.md", "compose.yaml", ".env.example", "megaservice/pipeline.py",
                  "tests/test_documents.py"):
        assert (project / owned).is_file(), owned
    assert "make install" in result.stdout and "make run" in result.stdout


def test_no_terminal_and_no_spec_is_a_clear_usage_error(cli, tmp_path):
    result = cli("megaservice", "--output", tmp_path / "p")

    assert result.returncode == 2
    assert "no terminal" in result.stderr and "--defaults" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p").exists()


def test_spec_and_defaults_together_are_refused(cli, tmp_path):
    result = cli("megaservice", "--defaults", "--spec", SHARED_SPECS / "echo.yaml", "--output", tmp_path / "p")

    assert result.returncode == 2
    assert "--spec" in result.stderr
    assert not (tmp_path / "p").exists()


def test_non_empty_output_is_refused_and_left_untouched(cli, tmp_path):
    target = tmp_path / "mine"
    (target / "notes").mkdir(parents=True)
    (target / "notes" / "todo.txt").write_text("keep me\n")
    (target / "README.md").write_text("my readme\n")
    before = tree_digest(target)

    result = cli("megaservice", "--defaults", "--output", target)

    assert result.returncode == 2
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert tree_digest(target) == before
    assert not list(tmp_path.glob(".opea-new-*")), "staging directory left behind"


def test_force_writes_generated_files_and_keeps_the_users_others(cli, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "todo.txt").write_text("keep me\n")

    result = cli("megaservice", "--defaults", "--output", target, "--force")

    assert result.returncode == 0, result.stderr
    assert (target / "todo.txt").read_text() == "keep me\n"
    assert (target / "compose.yaml").is_file()
    tracked = git(target, "ls-files").splitlines()
    assert "compose.yaml" in tracked and "todo.txt" not in tracked


def test_empty_existing_output_directory_is_used(cli, tmp_path):
    target = tmp_path / "empty"
    target.mkdir()

    result = cli("megaservice", "--spec", SHARED_SPECS / "echo.yaml", "--output", target)

    assert result.returncode == 0, result.stderr
    assert (target / "services" / "echo-service" / "app").is_dir()


def test_runtime_flag_overrides_the_spec(cli, tmp_path):
    result = cli("megaservice", "--spec", SHARED_SPECS / "echo.yaml", "--runtime", "comps",
                 "--output", tmp_path / "echo")

    assert result.returncode == 0, result.stderr
    answers = yaml.safe_load((tmp_path / "echo" / ".copier-answers.yml").read_text())
    assert answers["runtime"] == "comps"
    assert "opea-comps==1.5" in (tmp_path / "echo" / "megaservice" / "requirements.txt").read_text()


def test_image_services_get_wiring_but_no_code(cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: mixed\n"
        "services:\n"
        "  - {name: embedding, type: embedding, image: 'opea/embedding:1.5'}\n"
        "  - {name: llm, type: llm}\n"
    )
    result = cli("megaservice", "--spec", spec, "--output", tmp_path / "mixed")

    assert result.returncode == 0, result.stderr
    project = tmp_path / "mixed"
    assert not (project / "services" / "embedding").exists()
    assert (project / "services" / "llm").is_dir()
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    assert compose["services"]["embedding"]["image"] == "opea/embedding:1.5"
    assert compose["services"]["megaservice"]["environment"]["EMBEDDING_SERVICE_HOST_IP"] == "embedding"
    declaration = " ".join((project / "megaservice" / "pipeline.py").read_text().split())
    assert ('embedding = remote_service( "embedding", ServiceType.EMBEDDING, port=6000, endpoint="/v1/embeddings", '
            'image="opea/embedding:1.5", )') in declaration


def test_ctrl_c_while_rendering_leaves_nothing_behind(tmp_path):
    target = tmp_path / "interrupted"
    process = subprocess.Popen(
        [*opea_new_command(), "megaservice", "--defaults", "--output", str(target)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".opea-new-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "rendering finished before it could be interrupted"
    os.kill(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "nothing was" in stderr
    assert "Traceback" not in stderr
    assert not target.exists()
    assert not list(tmp_path.glob(".opea-new-*"))
