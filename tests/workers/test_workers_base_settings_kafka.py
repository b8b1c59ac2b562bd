"""The Kafka security settings: exact names operators rely on, and no half-configured connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.base.settings import SettingsError, load_settings, unknown_variables


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(f"VAXFLOW_{name}", value)
    try:
        load_settings()
    except SettingsError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize(
    "name",
    [
        "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
        "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CA_FILE", "KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE",
        "KAFKA_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS",
    ],
)  # fmt: skip
def test_the_documented_names_are_settings(name: str) -> None:
    assert unknown_variables({f"VAXFLOW_{name}": "x"}) == []


def test_a_misspelt_security_variable_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _load(monkeypatch, KAFKA_SECURITY_PROTOCAL="SASL_SSL")
    assert "VAXFLOW_KAFKA_SECURITY_PROTOCAL: not a vaxflow setting" in error
    assert "did you mean VAXFLOW_KAFKA_SECURITY_PROTOCOL" in error


def test_sasl_needs_a_user_and_one_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "VAXFLOW_KAFKA_SASL_USERNAME is required" in _load(monkeypatch, KAFKA_SECURITY_PROTOCOL="sasl_ssl")
    secret = tmp_path / "pw"
    secret.write_text("x")
    both = _load(monkeypatch, KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p", KAFKA_SASL_PASSWORD_FILE=str(secret))
    assert "exactly one of VAXFLOW_KAFKA_SASL_PASSWORD and VAXFLOW_KAFKA_SASL_PASSWORD_FILE" in both
    assert "p" not in both.split("exactly")[0].replace("VAXFLOW_KAFKA_SASL_PASSWORD", "")  # never the secret
    monkeypatch.delenv("VAXFLOW_KAFKA_SASL_PASSWORD")
    assert _load(monkeypatch) == ""


def test_credentials_without_sasl_or_files_without_tls_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "would not send them" in _load(monkeypatch, KAFKA_SASL_USERNAME="u")
    monkeypatch.delenv("VAXFLOW_KAFKA_SASL_USERNAME")
    assert "does not use TLS" in _load(monkeypatch, KAFKA_SSL_CA_FILE="/etc/hostname")


def test_missing_files_and_half_mutual_tls_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _load(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CA_FILE="/nonexistent/ca.pem",
                  KAFKA_SSL_CERT_FILE="/etc/hostname")  # fmt: skip
    assert "VAXFLOW_KAFKA_SSL_CA_FILE: /nonexistent/ca.pem is not a readable file" in error
    assert "VAXFLOW_KAFKA_SSL_CERT_FILE and VAXFLOW_KAFKA_SSL_KEY_FILE go together" in error


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _load(monkeypatch, KAFKA_SSL_CA_FILE="", KAFKA_SASL_USERNAME="") == ""


def test_min_insync_cannot_exceed_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _load(monkeypatch, KAFKA_REPLICATION_FACTOR="1", KAFKA_MIN_INSYNC_REPLICAS="2")
    assert "cannot exceed VAXFLOW_KAFKA_REPLICATION_FACTOR" in error
    assert _load(monkeypatch, KAFKA_REPLICATION_FACTOR="3") == ""
