"""Why the engine cannot be had: the reasons tests skip with. No engine needed."""

from __future__ import annotations

from pathlib import Path

import engine
import pytest


def test_not_root_is_a_clear_reason(monkeypatch):
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    with pytest.raises(engine.EngineUnavailable, match="needs root"):
        engine.start_engine(Path("/nonexistent/never-created"))


def test_another_dockerd_is_named_with_its_pid(monkeypatch, tmp_path):
    other = (4242, "dockerd --data-root /var/lib/docker")
    monkeypatch.setattr(engine, "dockerd_processes", lambda: iter([other]))
    with pytest.raises(engine.EngineUnavailable, match=r"pid 4242, `dockerd --data-root /var/lib/docker`"):
        engine.refuse_foreign_dockerd(tmp_path)


def test_a_dockerd_left_by_a_killed_session_is_recognised(monkeypatch, tmp_path):
    other = (4243, f"dockerd --data-root {tmp_path}/docker")
    monkeypatch.setattr(engine, "dockerd_processes", lambda: iter([other]))
    with pytest.raises(engine.EngineUnavailable, match="a killed session of this harness left it running"):
        engine.refuse_foreign_dockerd(tmp_path)


def test_a_busy_work_dir_is_a_clear_reason(tmp_path):
    held = engine.acquire_lock(tmp_path / "engine.lock")
    try:
        with pytest.raises(engine.EngineUnavailable, match="another test session has held"):
            engine.acquire_lock(tmp_path / "engine.lock", timeout=0)
    finally:
        engine.release_lock(held)


def test_commands_are_bounded_in_time():
    with pytest.raises(engine.EngineError, match=r"did not finish within 1s"):
        engine.run(["sleep", "5"], timeout=1)


def test_the_mirror_comes_from_apt_sources():
    assert engine.debian_mirror().startswith("http")
