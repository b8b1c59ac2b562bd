"""The worker runtime's process set-up, checked in a child process so this one's collector and loop are untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.runtime import GC_YOUNG_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import asyncio, gc, sys
from workers.runtime import run_worker

async def main(settings, stop, health):
    print(gc.get_threshold()[0], gc.get_freeze_count(), type(asyncio.get_running_loop()).__module__)

sys.exit(run_worker("probe", main))
"""


def _probe(**env: str) -> tuple[int, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    young, frozen, loop = done.stdout.split()
    return int(young), int(frozen), loop


def test_a_worker_runs_with_start_up_objects_frozen_and_a_large_young_generation() -> None:
    young, frozen, _ = _probe()
    assert young == GC_YOUNG_THRESHOLD > 700
    # the imports alone leave tens of thousands of objects; all of them are out of the collector's view
    assert frozen > 10_000


@pytest.mark.parametrize(("setting", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio.unix_events")])
def test_the_event_loop_is_the_configured_one(setting: str, module: str) -> None:
    assert _probe(VAXFLOW_EVENT_LOOP=setting)[2] == module


def test_an_unknown_event_loop_stops_the_worker_at_start_up_naming_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env={**os.environ, "VAXFLOW_EVENT_LOOP": "tokio"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "event_loop" in done.stderr.lower()
