"""The settings of a process: every `VAXFLOW_*` variable is one a setting reads, or start-up stops."""

from __future__ import annotations

import pytest

from workers.base.settings import SettingsError, load_settings, unknown_variables


def test_a_misspelt_variable_is_named_with_the_closest_setting() -> None:
    problems = unknown_variables({"VAXFLOW_KAFKA_BOOTSTRAPP": "x", "VAXFLOW_MESH_URL": "http://m", "PATH": "/bin"})
    assert problems == ["  VAXFLOW_KAFKA_BOOTSTRAPP: not a vaxflow setting (did you mean VAXFLOW_KAFKA_BOOTSTRAP?)"]


def test_known_settings_and_the_harness_variables_pass() -> None:
    environ = {
        "VAXFLOW_WINDOW_SECONDS": "60",
        "VAXFLOW_MESH_SANDBOX_CONFIG": "/x",  # the sandbox app's, not a process setting
        "VAXFLOW_TEST_KAFKA_BOOTSTRAP": "127.0.0.1:1",  # the test harness's
        "vaxflow_lowercase": "not ours",
    }
    assert unknown_variables(environ) == []


def test_a_name_far_from_every_setting_gets_no_suggestion() -> None:
    far = "VAXFLOW_QQQQQQQQQQQQQQQQQQ"
    assert unknown_variables({far: "1"}) == [f"  {far}: not a vaxflow setting"]


def test_start_up_stops_on_an_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAXFLOW_GATEWAY_TOKEN_FILE", "/etc/tokens")  # the real one is ..._TOKENS_FILE
    expected = r"VAXFLOW_GATEWAY_TOKEN_FILE: not a vaxflow setting \(did you mean VAXFLOW_GATEWAY_TOKENS_FILE\?\)"
    with pytest.raises(SettingsError, match=expected):
        load_settings()


def test_start_up_reads_known_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAXFLOW_WINDOW_SECONDS", "120")
    assert load_settings().window_seconds == 120
