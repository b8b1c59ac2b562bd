"""The operator commands of the CLI (vaxflow.cli.ops), against the real broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer
from support.ports import free_port
from support.topics import ensure
from typer.testing import CliRunner

from vaxflow.cli import ops as ops_cli
from vaxflow.dev.loadgen import generate, produce
from workers.base.settings import Settings

pytestmark = pytest.mark.integration


def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """vaxflow (test shell)."""

    app.add_typer(ops_cli.app)
    return app


def test_registers_exactly_the_operator_commands() -> None:
    names = {c.name for c in ops_cli.app.registered_commands}
    assert names == {"lag", "replay", "redrive", "resend"}


def test_commands_against_the_broker(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = kafka_settings
    asyncio.run(ensure(settings))
    load = generate(50, seed=51)
    asyncio.run(produce(settings, load.payloads, load.keys))
    env = {
        "VAXFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "VAXFLOW_TOPIC_NAMESPACE": settings.topic_namespace,
        "VAXFLOW_OPS_PORT": str(free_port()),  # no ops service there: `lag` samples by itself
        "VAXFLOW_DEV_HOME": str(tmp_path),
        "COLUMNS": "220",
    }
    runner = CliRunner()
    app = cli()

    result = runner.invoke(app, ["lag", "--json"], env=env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    raw = next(g for g in body["groups"] if g["topic"].endswith("vaccination.events.raw"))
    assert raw["total_lag"] == 50
    assert body["source"].startswith("sampled here")

    result = runner.invoke(app, ["lag"], env=env)
    assert result.exit_code == 0, result.output
    assert "vaxflow-validator" in result.stdout

    result = runner.invoke(app, ["replay", "--group", "validator", "--to-offset", "0", "--json"], env=env)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["executed"] is False
    assert plan["records_to_read"] == 50

    result = runner.invoke(app, ["replay", "--group", "validator", "--to-datetime", "2025-01-01T00:00:00"], env=env)
    assert result.exit_code == 1
    assert "time zone" in result.output

    result = runner.invoke(app, ["redrive", "--from", "rejected", "--filter", "sender=X26", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["submitted"] == 0

    result = runner.invoke(app, ["redrive", "--from", "elsewhere"], env=env)
    assert result.exit_code == 2

    result = runner.invoke(app, ["resend", "FLU_Vaccinations_v5_X26_20250101T12000000.csv"], env=env)
    assert result.exit_code == 1
    assert "not in the sent ledger" in result.output

    ea = "Vaccination_Extended_Attributes_v1_5_X26_20250101T12000100.csv"
    result = runner.invoke(app, ["resend", ea, "--with-extended"], env=env)
    assert result.exit_code == 1
    assert "--with-extended goes with the vaccination file" in result.output
