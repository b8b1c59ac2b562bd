"""Helpers for pipeline tests: run workers as tasks or processes, read topics to their end."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path

from support.placement import Fault

from vaxflow.dev.loadgen import produce
from workers.base.kafka import idempotent_producer
from workers.base.runtime import Health, WorkerMain
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end

read_all = read_to_end  # every committed record of a topic, up to the end offsets as of the call


@dataclass
class TaskWorker:
    """A worker running in this event loop (fast; used where no process needs killing)."""

    main: WorkerMain
    settings: Settings
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    health: Health = field(default_factory=Health)
    task: asyncio.Task[None] | None = None

    def start(self) -> TaskWorker:
        self.task = asyncio.create_task(self.main(self.settings, self.stop, self.health))
        return self

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 60)


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.as_environment(), **extra}


@dataclass
class ProcessWorker:
    """A worker in its own process, for SIGKILL tests (`python -m workers.<name>`)."""

    name: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessWorker:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"workers.{self.name}"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(60)
        return None if self.proc is None else self.proc.returncode


async def produce_paced(
    settings: Settings,
    payloads: list[bytes],
    keys: list[bytes],
    *,
    seconds: float,
    slices: int = 24,
    sent: list[tuple[int, int]] | None = None,
    hold_last: asyncio.Event | None = None,
) -> list[tuple[int, int]]:
    """Produce in slices spread over `seconds`, so that kills land while events are still arriving.

    `sent` (if given) grows as each slice is acknowledged: len(sent) events, the first ones of
    `payloads`, are on the raw topic at any instant (what a fault can measure as produced).
    `hold_last` (if given) keeps the last slice back until it is set: a test that injects faults
    sets it after the last one, so every fault lands while the load is still arriving however long
    the machine takes between faults.
    """
    producer = idempotent_producer(settings, linger_ms=20)
    await producer.start()
    coords: list[tuple[int, int]] = sent if sent is not None else []
    try:
        step = -(-len(payloads) // slices)
        for start in range(0, len(payloads), step):
            if hold_last is not None and start + step >= len(payloads):
                await hold_last.wait()
            coords.extend(
                await produce(settings, payloads[start:start + step], keys[start:start + step], producer=producer)
            )
            await asyncio.sleep(seconds / slices)
    finally:
        await producer.stop()
    return coords


def kill_schedule(names: Iterable[str], rng: random.Random, low: float, high: float) -> list[tuple[str, float]]:
    """Three kills of each named worker, in a random order, each after a random pause of `low` to
    `high` seconds: (worker, pause) in the order the kills come."""
    order = sorted(names) * 3
    rng.shuffle(order)
    return [(name, rng.uniform(low, high)) for name in order]


async def kill_and_restart(
    workers: Mapping[str, ProcessWorker],
    schedule: Iterable[tuple[str, float]],
    sent: Sized,
    measure: Callable[[str, float, int], Awaitable[Fault]],
) -> list[Fault]:
    """SIGKILL each scheduled worker after its pause and start it again at once. Each kill's Fault
    comes from `measure(what, seconds since the first pause began, events produced by the kill)`,
    `sent` being the produced events as produce_paced appends them."""
    faults: list[Fault] = []
    started = time.monotonic()
    for name, pause in schedule:
        await asyncio.sleep(pause)
        produced, at = len(sent), time.monotonic() - started
        workers[name].kill()
        workers[name].start()
        faults.append(await measure(f"kill {name}", at, produced))
    return faults
