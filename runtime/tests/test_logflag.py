"""OPEA's LOGFLAG is accepted by the megaservice's settings as an alias of LOG_LEVEL=debug."""

from __future__ import annotations

import pytest

from opea_new_runtime.settings import MegaserviceSettings, SettingsError, load


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for variable in ("LOGFLAG", "MEGA_SERVICE_LOGFLAG", "LOG_LEVEL", "MEGA_SERVICE_LOG_LEVEL"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("value", ["true", "True", "1", "yes"])
def test_logflag_true_means_debug(monkeypatch, value):
    monkeypatch.setenv("LOGFLAG", value)
    assert load(MegaserviceSettings).log_level == "debug"


@pytest.mark.parametrize("value", ["", "false", "0", "no"])
def test_logflag_empty_or_false_changes_nothing(monkeypatch, value):
    monkeypatch.setenv("LOGFLAG", value)
    assert load(MegaserviceSettings).log_level == "info"


def test_without_logflag_the_level_is_info():
    assert load(MegaserviceSettings).log_level == "info"


def test_an_explicit_log_level_wins_over_logflag(monkeypatch):
    monkeypatch.setenv("LOGFLAG", "true")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert load(MegaserviceSettings).log_level == "warning"


def test_a_logflag_that_is_no_boolean_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("LOGFLAG", "maybe")
    with pytest.raises(SettingsError, match="LOGFLAG"):
        load(MegaserviceSettings)


@pytest.mark.parametrize(("value", "level"), [("true", "debug"), ("false", "info"), ("", "info")])
def test_a_microservice_takes_logflag_too(monkeypatch, value, level):
    from opea_new_runtime.service import load_settings

    monkeypatch.setenv("LOGFLAG", value)
    assert load_settings(9000).log_level == level


def test_a_microservices_explicit_log_level_wins_over_logflag(monkeypatch):
    from opea_new_runtime.service import load_settings

    monkeypatch.setenv("LOGFLAG", "true")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert load_settings(9000).log_level == "warning"
