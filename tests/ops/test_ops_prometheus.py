"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes the running stack and alerts when a
worker stops.

The ops service and the validator run as processes (`python -m vaxflow.ops`, `python -m
workers.validator`, as an operator runs them) against the real broker; Prometheus scrapes both
every second and evaluates the shipped config/prometheus/alerts.yml. Only the `for:` of the alert
under test is shortened in the test's copy (2 minutes is right for operators, long for a test).
The validator is stopped with SIGTERM while events arrive: its group owns nothing and has records
waiting, the ops service judges it STOP, and Prometheus' /api/v1/alerts must show
VaxflowConsumerStopped firing for the validator's group within a bounded deadline. Before the stop
it must not fire, and the validator's own /metrics must have been scraped (its restarts counter).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from ops_support import caught_up, ops_settings
from pipeline_support import settings_env
from support.ports import free_port
from support.topics import ensure
from support.workers import wait_for

from topics.catalogue import RAW
from vaxflow.dev.loadgen import generate, produce
from workers.base.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = Path("/usr/bin/prometheus")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not PROMETHEUS.exists(), reason="Debian's prometheus package is not installed (.ci/run does)"),
]
ALERT = "VaxflowConsumerStopped"


def rules_copy(target: Path, for_seconds: int) -> None:
    """The shipped rules with ALERT's `for:` shortened; everything else as shipped."""
    rules = yaml.safe_load((ROOT / "config" / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == ALERT:
                rule["for"] = f"{for_seconds}s"
    target.write_text(yaml.safe_dump(rules))


def prometheus_config(tmp_path: Path, ops_port: int, validator_port: int) -> Path:
    rules_copy(tmp_path / "alerts.yml", for_seconds=2)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {"job_name": "vaxflow-ops", "static_configs": [{"targets": [f"127.0.0.1:{ops_port}"]}]},
            {"job_name": "vaxflow-validator", "static_configs": [{"targets": [f"127.0.0.1:{validator_port}"]}]},
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
            return response.status, await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0, None


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def alerts(session: aiohttp.ClientSession, prom: str, group: str) -> list[dict[str, Any]]:
    status, body = await get_json(session, f"{prom}/api/v1/alerts")
    if status != 200:
        return []
    return [a for a in body["data"]["alerts"] if a["labels"].get("alertname") == ALERT
            and a["labels"].get("group") == group]


async def test_prometheus_fires_consumer_stopped_when_the_validator_is_stopped(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    began = time.monotonic()
    ops_port, validator_port, prom_port = free_port(), free_port(), free_port()
    settings = ops_settings(kafka_settings, tmp_path, ops_port=ops_port)
    await ensure(settings)
    raw, group = settings.topic(RAW.name), settings.group(settings.validator_group)
    load = generate(300, seed=16)
    env = settings_env(settings, VAXFLOW_HEALTH_PORT=str(validator_port))
    procs: list[subprocess.Popen[bytes]] = []
    timeline: dict[str, float] = {}

    def mark(what: str) -> None:
        timeline[what] = round(time.monotonic() - began, 1)

    try:
        validator = start([sys.executable, "-m", "workers.validator"], tmp_path / "validator.log", env)
        procs.append(validator)
        procs.append(start([sys.executable, "-m", "vaxflow.ops"], tmp_path / "ops.log", settings_env(settings)))
        config = prometheus_config(tmp_path, ops_port, validator_port)
        (tmp_path / "tsdb").mkdir()
        procs.append(start([
            str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h",
        ], tmp_path / "prometheus.log"))
        prom = f"http://127.0.0.1:{prom_port}"
        async with aiohttp.ClientSession() as session:

            async def up(url: str) -> bool:
                return await status_of(session, url) == 200

            await wait_for(lambda: up(f"http://127.0.0.1:{validator_port}/readyz"), 60, "validator ready")
            await wait_for(lambda: up(f"http://127.0.0.1:{ops_port}/readyz"), 60, "ops service ready")
            await wait_for(lambda: up(f"{prom}/-/ready"), 60, "prometheus ready")
            mark("stack and prometheus ready")

            await produce(settings, load.payloads[:100], load.keys[:100])
            await wait_for(lambda: caught_up(settings, group, raw), 60, "validator caught up")

            async def scraped_worker() -> bool:
                query = f'{prom}/api/v1/query?query=vaxflow_worker_restarts_total{{job="vaxflow-validator"}}'
                status, body = await get_json(session, query)
                return status == 200 and bool(body["data"]["result"])

            await wait_for(scraped_worker, 30, "prometheus scraped the validator's restarts counter")
            await asyncio.sleep(4)  # the ops service has judged several samples of a running validator
            assert await alerts(session, prom, group) == []
            mark("validator running, scraped, no alert")

            validator.send_signal(signal.SIGTERM)
            assert validator.wait(60) == 0
            stopped = time.monotonic()
            mark("validator stopped (SIGTERM)")
            await produce(settings, load.payloads[100:], load.keys[100:])

            async def firing() -> bool:
                return any(a["state"] == "firing" for a in await alerts(session, prom, group))

            await wait_for(firing, 60, f"{ALERT} firing for {group}", interval=0.5)
            mark("alert firing")
            fired = await alerts(session, prom, group)
            print(f"\n[prometheus] {ALERT} firing {time.monotonic() - stopped:.1f} s after the stop; "
                  f"timeline {timeline}; labels {fired[0]['labels']}")
            assert fired[0]["labels"]["topic"] == raw
            assert fired[0]["labels"]["severity"] == "critical"
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                end(proc)
