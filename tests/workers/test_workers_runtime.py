"""The worker runtime's process set-up, checked in a child process so this one's collector is untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from workers.base.runtime import GC_YOUNG_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import gc, sys
from workers.base.runtime import run_worker

async def main(settings, stop, health):
    print(gc.get_threshold()[0], gc.get_freeze_count())

sys.exit(run_worker("probe", main))
"""


def _probe() -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    young, frozen = done.stdout.split()
    return int(young), int(frozen)


def test_a_worker_runs_with_start_up_objects_frozen_and_a_large_young_generation() -> None:
    young, frozen = _probe()
    assert young == GC_YOUNG_THRESHOLD > 700
    # the imports alone leave tens of thousands of objects; all of them are out of the collector's view
    assert frozen > 10_000
