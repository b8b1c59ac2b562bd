"""Workers run in-process as asyncio tasks, and waiting for a condition.

A worker runs with its own stop event and health, exactly as the runtime runs it
(`run(settings, stop, health)`), so a test can stop it gracefully or cancel it mid-flight.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from workers.base.runtime import Health, WorkerMain
from workers.base.settings import Settings


@dataclass
class RunningWorker:
    task: asyncio.Task[None]
    stop: asyncio.Event
    health: Health


@asynccontextmanager
async def running(main: WorkerMain, settings: Settings, *, stop_timeout: float = 60.0) -> AsyncIterator[RunningWorker]:
    """Run a worker as a task; on exit stop it gracefully and surface any error it raised."""
    stop, health = asyncio.Event(), Health()
    task = asyncio.create_task(main(settings, stop, health))
    worker = RunningWorker(task, stop, health)
    try:
        yield worker
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(asyncio.shield(task), timeout=stop_timeout)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


@asynccontextmanager
async def running_all(settings: Settings, *mains: WorkerMain) -> AsyncIterator[list[RunningWorker]]:
    """Several workers, started in order and stopped in reverse (as nested `running` blocks would)."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running(main, settings)) for main in mains]


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 30.0,
    what: str = "condition",
    *,
    interval: float | None = None,
) -> None:
    """Until `condition()` (a plain or an async check) holds, or fail after `timeout` seconds.

    Polled every `interval` seconds: by default 0.1 for a plain check and 0.5 for an async one
    (those read the broker).
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
            interval = 0.5 if interval is None else interval
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1 if interval is None else interval)
