"""The browser tier: the web UI of generated projects, driven in a real Chromium by Playwright.

Projects are rendered with the `opea-new` command, installed into the session's lite venv
(`project_venvs`, shared with the other tiers) and started whole with the runtime's runner
(`python -m opea_new_runtime.run`, what `make run` starts: every service, the megaservice and the
web UI) on free ports of 127.0.0.1, each in a process group of its own that is stopped by its id.

Playwright comes from PyPI (the `test` extra); the browser is Debian's Chromium at /usr/bin/chromium
(CHROMIUM names another), never one Playwright downloads. Screenshots of every page go to the
folder OPEA_NEW_SCREENSHOTS names (default: a folder of pytest's temporary directory, printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_ports, run_cli

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
START_TIMEOUT = 180.0
INSTALL_HINT = ("the browser tests need Playwright from PyPI and Debian's Chromium: "
                "`pip install -e '.[test]'` (playwright==1.65.2) and `sudo apt-get install chromium` "
                "(or CHROMIUM=/path/to/chromium); never `playwright install`")


@dataclass
class Running:
    """A project started by `python -m opea_new_runtime.run`: its UI's URL, its megaservice, its log."""

    root: Path
    answers: dict[str, Any]
    ui_url: str
    mega_url: str
    process: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)  # the runner stops its children itself
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def chromium():
    """Playwright's Chromium, headless: fails (never skips) when Playwright or the browser is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"playwright is not installed: {INSTALL_HINT}", pytrace=False)
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: {INSTALL_HINT}", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True,
                                             timeout=30_000)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("OPEA_NEW_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the web UI: {folder}")
    return folder


@pytest.fixture(scope="session")
def lite_venv(project_venvs: Path) -> Path:
    return project_venvs / "lite"


@pytest.fixture(scope="session")
def pipelines(lite_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """start(spec, **env) → Running: the project rendered, installed and running (once per spec and env)."""
    work = tmp_path_factory.mktemp("ui-projects")
    started: dict[str, Running] = {}

    def start(spec: dict[str, Any], **env: str) -> Running:
        key = json.dumps([spec, env], sort_keys=True)
        if key not in started:
            started[key] = launch(spec, work / str(len(started)), lite_venv, env)
        return started[key]

    try:
        yield start
    finally:
        for running in started.values():
            running.stop()


def launch(spec: dict[str, Any], parent: Path, venv: Path, env: dict[str, str]) -> Running:
    parent.mkdir(parents=True)
    spec_file = parent / f"{spec['name']}.json"
    spec_file.write_text(json.dumps({**spec, "runtime": "lite"}))
    root = parent / spec["name"]
    result = run_cli("megaservice", "--spec", spec_file, "--output", root, cwd=parent)
    assert result.returncode == 0, result.stdout + result.stderr
    install = subprocess.run(["make", "install", f"VENV={venv}"], cwd=root, capture_output=True, text=True,
                             timeout=900, env=clean_environment())
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    answers = yaml.safe_load((root / ".copier-answers.yml").read_text())
    names = [service["name"] for service in answers["services"]]
    *ports, mega_port, ui_port = free_ports(len(names) + 2)
    addresses = {f"{name.replace('-', '_').upper()}_SERVICE_PORT": str(port)
                 for name, port in zip(names, ports, strict=True)}
    environment = clean_environment(MEGA_SERVICE_PORT=str(mega_port), UI_PORT=str(ui_port), **addresses, **env)
    log = parent / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(venv / "bin" / "python"), "-m", "opea_new_runtime.run"], cwd=root,
                                   env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    running = Running(root, {**answers, "name": spec["name"]}, f"http://127.0.0.1:{ui_port}",
                      f"http://127.0.0.1:{mega_port}", process, log, env)
    deadline = time.monotonic() + START_TIMEOUT
    while "Ctrl-C stops everything" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop()
            pytest.fail(f"{spec['name']} did not start (exit {process.returncode}):\n"
                        f"{log.read_text(errors='replace')[-4000:]}", pytrace=False)
        time.sleep(0.2)
    assert f"the web UI: {running.ui_url}/" in log.read_text(errors="replace")
    return running


def clean_environment(**extra: str) -> dict[str, str]:
    inherited = ("_SERVICE_PORT", "_SERVICE_HOST_IP")
    proxies = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}
    keys = {"API_KEYS", "API_KEYS_FILE", "CORS_ALLOW_ORIGINS", "UI_PORT", "UI_HOST", "UI_PROJECT"}
    environment = {key: value for key, value in os.environ.items()
                   if not key.endswith(inherited) and key not in {"VENV", "MAKEFLAGS", *proxies, *keys}
                   and not key.startswith("MEGA_SERVICE_")}
    return {**environment, **extra}
