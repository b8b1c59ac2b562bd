"""What every worker process shares: one event loop, signals, health endpoints and metrics.

A worker is an async function `run(settings, stop, health)` that returns when `stop` is set; the
runtime sets it on SIGTERM or SIGINT so the worker can finish or hand back its work and commit
what is done (brief: Standards). A second signal, or a worker that does not return within the
grace period, ends the process hard — Kafka's transactions make that safe, only slower.

Supervision is visible: every restart of a failed worker counts in `vaxflow_worker_restarts_total`
and logs the failure's frames (workers/base/logs.py), and `/healthz` answers 503 when the worker's
loop has not turned for `VAXFLOW_STALL_SECONDS` while it holds work (`Health.progress`), so a hung
worker is restarted by whatever watches it instead of reporting "ok" for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from workers.base import logs
from workers.base.kafka_access import KafkaAccessError, explain
from workers.base.settings import Settings, SettingsError, load_settings

log = logging.getLogger("vaxflow.runtime")

RESTARTS = Counter("vaxflow_worker_restarts_total", "Times the worker's main failed and was started again", ["worker"])

DEFAULT_STALL_SECONDS: Final = 300.0


@dataclass
class Health:
    """Liveness (the loop turns while there is work) and readiness (the worker's clients are up).

    A worker calls `progress(busy=...)` each time its loop turns: `busy` says whether it now holds
    work it has not finished (records just polled, a poll under way, events in open windows). A
    worker is *stalled* when it holds work and its loop has not turned for `stall_seconds`: a hung
    MESH call or a stuck transaction. An idle worker is never stalled, however long it waits, so a
    quiet night does not restart anything. `clock` is injectable so tests need not wait.
    """

    ready: bool = False
    detail: dict[str, object] = field(default_factory=dict)
    stall_seconds: float = DEFAULT_STALL_SECONDS
    clock: Callable[[], float] = time.monotonic
    busy: bool = False
    last_progress: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_progress = self.clock()

    def progress(self, *, busy: bool | None = None) -> None:
        """The loop turned (or work advanced); `busy`: it now holds work it has not finished
        (None: as before, for progress inside a piece of work, e.g. a retry attempt)."""
        self.last_progress = self.clock()
        if busy is not None:
            self.busy = busy

    def stalled_for(self) -> float | None:
        """Seconds since the loop last turned, if it holds work and that is over `stall_seconds`."""
        if not self.busy:
            return None
        quiet = self.clock() - self.last_progress
        return quiet if quiet > self.stall_seconds else None


WorkerMain = Callable[[Settings, asyncio.Event, Health], Awaitable[None]]


def health_app(health: Health, name: str) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        stalled = health.stalled_for()
        if stalled is not None:
            body = {"worker": name, "status": "stalled", "pid": os.getpid(), "stalled_seconds": round(stalled, 1),
                    "stall_seconds": health.stall_seconds}
            return web.json_response(body, status=503)
        return web.json_response({"worker": name, "status": "ok", "pid": os.getpid()})

    async def readyz(_: web.Request) -> web.Response:
        body = {"worker": name, "ready": health.ready, **health.detail}
        return web.json_response(body, status=200 if health.ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_worker(name: str, main: WorkerMain, settings: Settings, health_port: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        stop.set()
        if signals_seen > 1:
            os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    health = Health(stall_seconds=settings.stall_seconds)
    runner: web.AppRunner | None = None
    if health_port is not None:
        runner = web.AppRunner(health_app(health, name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", health_port).start()
    try:
        await supervise(name, main, settings, stop, health)
    finally:
        if runner is not None:
            await runner.cleanup()
    log.info("stopped cleanly")


async def supervise(name: str, main: WorkerMain, settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Run `main` until stop; if it fails (broker gone, producer fenced, MESH down), start it again.

    Every worker keeps its durable state in Kafka and rebuilds the rest on start, so re-running
    `main` with fresh clients is the same as a process restart, only faster; the backoff keeps a
    persistent fault from spinning. Each restart counts in `vaxflow_worker_restarts_total{worker}`
    (created at 0, so a first restart is an increase Prometheus can see).
    """
    restarts = RESTARTS.labels(name)
    delay = 1.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await main(settings, stop, health)
            return
        except SettingsError:
            raise  # configuration no restart can fix (a missing tokens file, development credentials): exit 2
        except Exception as exc:
            health.ready = False
            health.busy = False  # backing off is not a stall; the next start reports progress again
            refused = await explain(settings, exc)
            if refused is not None:
                await refuse(name, refused, stop, health)
                return
            # exc_info: the formatter logs the exception's type and frames, never its message
            log.error("worker failed; restarting", extra={"worker": name, "error": type(exc).__name__}, exc_info=True)
            restarts.inc()
        if time.monotonic() - started > 60:
            delay = 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 30.0)


async def refuse(name: str, refused: KafkaAccessError, stop: asyncio.Event, health: Health) -> None:
    """The cluster refused who this worker is or what it may do: retrying cannot help, so say why
    (log and /readyz 503) and wait for the operator to fix settings or ACLs and restart it."""
    health.detail["reason"] = str(refused)
    log.error("Kafka refused this worker; not retrying: %s", refused, extra={"worker": name})
    await stop.wait()


# Container allocations (net of deallocations) between young-generation collections; CPython's
# default is 700. See tune_gc.
GC_YOUNG_THRESHOLD: Final = 50_000


def tune_gc() -> None:
    """Make CPython's cyclic garbage collector cheap for a long-running streaming worker.

    A worker allocates a record object per Kafka record and frees it moments later, and the
    batcher holds every buffered event's object until its window closes. With CPython's default
    young-generation threshold (700) a 300,000-event benchmark run spent ~1.2 s of the batcher's
    ~7.5 s of CPU (and ~0.35 s of the validator's) in collections, over half of it in full
    collections that also walked every object created by the imports. Freezing what exists at
    start-up takes those out of every collection, and a larger young generation lets short-lived
    records die before a collection sees them: ~0.2 s in all for the same run (docs/benchmarks.md).
    Only reference cycles wait for the collector, so the cost is at most that many cyclic
    garbage objects held a little longer.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def run_worker(name: str, main: WorkerMain, *, serve_health: bool = True) -> int:
    """Process entry point: settings, logging, one loop, exit code (2 for settings it cannot run with).

    `serve_health` serves /healthz, /readyz and /metrics on VAXFLOW_HEALTH_PORT (if set); the
    gateway and the ops service serve them on their own port instead.
    """
    logs.configure(name)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    tune_gc()
    try:
        asyncio.run(serve_worker(name, main, settings, settings.health_port if serve_health else None))
    except SettingsError as exc:
        log.error("refusing to run: %s", exc)
        print(str(exc), file=sys.stderr)
        return 2
    return 0
