"""Supervision you can see: restarts counted, failures logged with frames but no patient values,
/healthz 503 when a worker holding work stops turning its loop (fake clock: no waiting)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
from pathlib import Path

import orjson
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from workers.base.logs import JsonFormatter, describe_exception
from workers.base.runtime import Health, health_app, supervise
from workers.base.settings import Settings

NHS_NUMBER = "9434765919"
ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_worker_is_never_stalled_however_long_it_waits() -> None:
    clock = FakeClock()
    health = Health(stall_seconds=300, clock=clock)
    health.progress(busy=False)
    clock.now += 10_000
    assert health.stalled_for() is None


def test_a_worker_holding_work_is_stalled_once_its_loop_has_not_turned_for_stall_seconds() -> None:
    clock = FakeClock()
    health = Health(stall_seconds=300, clock=clock)
    health.progress(busy=True)
    clock.now += 300
    assert health.stalled_for() is None  # exactly the limit: not yet
    clock.now += 1
    assert health.stalled_for() == 301
    health.progress(busy=True)  # the loop turns again: healthy again
    assert health.stalled_for() is None
    clock.now += 200
    health.progress()  # progress inside the work (a retry attempt) keeps it busy
    clock.now += 200
    assert health.stalled_for() is None
    clock.now += 101
    assert health.stalled_for() == 301
    clock.now += 301
    health.progress(busy=False)  # finished its work: idle, healthy
    clock.now += 1000
    assert health.stalled_for() is None


async def _get(health: Health, path: str) -> tuple[int, dict[str, object]]:
    async with TestClient(TestServer(health_app(health, "validator"))) as client:
        response = await client.get(path)
        return response.status, await response.json()


async def test_healthz_answers_503_while_stalled_and_200_when_idle_or_turning() -> None:
    clock = FakeClock()
    health = Health(stall_seconds=60, clock=clock)
    health.progress(busy=True)
    status, body = await _get(health, "/healthz")
    assert (status, body["status"]) == (200, "ok")
    clock.now += 61
    status, body = await _get(health, "/healthz")
    assert (status, body["status"], body["stalled_seconds"]) == (503, "stalled", 61.0)
    health.progress(busy=False)
    clock.now += 3600
    status, body = await _get(health, "/healthz")
    assert (status, body["status"]) == (200, "ok")


def test_the_stall_limit_is_a_setting_with_a_sensible_default(monkeypatch: object) -> None:
    assert Settings().stall_seconds == 300
    assert Settings(stall_seconds=42).stall_seconds == 42


def _restarts(worker: str) -> float:
    return REGISTRY.get_sample_value("vaxflow_worker_restarts_total", {"worker": worker}) or 0.0


def _parse_patient_value(text: str) -> int:
    raise ValueError(f"invalid literal for NHS_NUMBER: {text!r}")


async def test_a_failure_is_counted_and_logged_with_its_frames_but_not_its_message() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    runtime_log = logging.getLogger("vaxflow.runtime")
    runtime_log.addHandler(handler)
    calls = 0
    before = _restarts("probe-supervision")

    async def main(settings: Settings, stop: asyncio.Event, health: Health) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            _parse_patient_value(NHS_NUMBER)

    try:
        await supervise("probe-supervision", main, Settings(), asyncio.Event(), Health())
    finally:
        runtime_log.removeHandler(handler)
    assert calls == 2
    assert _restarts("probe-supervision") == before + 1
    text = stream.getvalue()
    assert NHS_NUMBER not in text
    line = orjson.loads(text.strip().splitlines()[-1])
    assert line["msg"] == "worker failed; restarting"
    assert line["exc"] == "ValueError"
    assert "exc_message" not in line
    innermost = line["frames"][-1]
    assert innermost.startswith("tests/workers/test_workers_runtime_supervision.py:")
    assert innermost.endswith(" _parse_patient_value")
    assert any(f.endswith(" main") for f in line["frames"])


def test_causes_are_described_and_only_infrastructure_messages_kept() -> None:
    try:
        try:
            _parse_patient_value(NHS_NUMBER)
        except ValueError as inner:
            raise ConnectionError("broker 127.0.0.1:9092 closed the connection") from inner
    except ConnectionError as exc:
        described = describe_exception(exc)
    assert described["exc"] == "ConnectionError"
    assert described["exc_message"] == "broker 127.0.0.1:9092 closed the connection"
    assert described["caused_by"][0]["exc"] == "ValueError"
    assert "exc_message" not in described["caused_by"][0]
    assert NHS_NUMBER not in orjson.dumps(described).decode()


_PROCESS = """
import asyncio, sys
from prometheus_client import REGISTRY
from workers.base.runtime import run_worker

calls = 0

async def main(settings, stop, health):
    global calls
    calls += 1
    if calls == 1:
        int("NHS number 9434765919 is not a date")  # ValueError quoting a patient value
    health.ready = True
    health.progress(busy=sys.argv[1] == "hung")
    print("RESTARTS", REGISTRY.get_sample_value("vaxflow_worker_restarts_total", {"worker": "probe"}), flush=True)
    await stop.wait()

sys.exit(run_worker("probe", main))
"""


async def _healthz(port: int) -> tuple[int, str]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    return response.status, (await response.json())["status"]
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise AssertionError("no /healthz")


async def test_a_worker_process_logs_frames_not_values_and_reports_a_stall_on_healthz(tmp_path: Path) -> None:
    """`run_worker` as a worker process runs it: VAXFLOW_STALL_SECONDS and the JSON log's formatter."""
    from support.ports import free_port

    outcomes = {}
    for mode in ("hung", "idle"):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAXFLOW_")}
        env |= {"VAXFLOW_HEALTH_PORT": str(port), "VAXFLOW_STALL_SECONDS": "1", "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PROCESS, mode, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
            assert line.decode().split() == ["RESTARTS", "1.0"]
            assert await _healthz(port) == (200, "ok")
            await asyncio.sleep(1.5)
            outcomes[mode] = await _healthz(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        log = err.decode()
        assert "9434765919" not in log
        failure = next(orjson.loads(x) for x in log.splitlines() if "worker failed" in x)
        assert failure["exc"] == "ValueError"
        raising = next(n for n, x in enumerate(_PROCESS.splitlines(), 1) if x.strip().startswith("int("))
        assert failure["frames"][-1] == f"<string>:{raising} main"
    assert outcomes == {"hung": (503, "stalled"), "idle": (200, "ok")}
