"""The ops service: lag with Burrow-style status, Prometheus metrics and the operators' dashboard.

A worker like the others (`run(settings, stop, health)`): every `ops_sample_seconds` it samples
every group (vaxflow.ops.lag), folds what is new in the output topics into running totals
(vaxflow.ops.activity), and keeps the last `ops_history_samples` points in a ring buffer for the
dashboard's charts, so its memory does not grow with uptime. It serves:

- `GET /lag`: the latest evaluation as JSON (the same as `vaxflow lag --json`);
- `GET /metrics`: Prometheus text from its own registry (lag, status, totals, process metrics), so
  a scrape never sees a stale label of a partition that has gone: the figures are generated from
  the latest sample at scrape time;
- `GET /api/overview`, `GET /api/history?since=T`: what the dashboard draws;
- `GET /healthz`, `GET /readyz`;
- `GET /`: the dashboard, a static page from vaxflow/ops/static (no CDN: the machines have no
  internet), hand-written JS drawing SVG charts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vaxflow.ops.activity import ActivityReader
from vaxflow.ops.burrow import SEVERITY, Status
from vaxflow.ops.lag import LagMonitor, LagSnapshot
from workers.base.runtime import RESTARTS, Health
from workers.base.settings import Settings

log = logging.getLogger("vaxflow.ops")

STATIC = Path(__file__).parent / "static"


class OpsService:
    """State shared by the sampler loop and the HTTP handlers (one event loop: no locks needed)."""

    def __init__(self, settings: Settings, *, monitor: LagMonitor | None = None) -> None:
        self.settings = settings
        self.monitor = monitor or LagMonitor(settings)
        self.activity = ActivityReader(settings)
        self.history: deque[dict[str, Any]] = deque(maxlen=settings.ops_history_samples)
        self.latest: LagSnapshot | None = None
        self.sample_seconds = 0.0
        self.sample_errors = 0
        self.last_error: str | None = None
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, RESTARTS):
            # the same collectors the default registry has (the runtime's restarts included), in
            # this service's own registry
            with contextlib.suppress(ValueError):
                self.registry.register(collector)
        self.registry.register(_OpsCollector(self))

    async def start(self) -> None:
        await self.monitor.start()
        await self.activity.start()

    async def stop(self) -> None:
        await self.activity.stop()
        await self.monitor.stop()

    @property
    def ready(self) -> bool:
        return self.latest is not None

    async def tick(self, at: float | None = None) -> LagSnapshot:
        """One sample of everything; `at` is the sample time (tests pass their own clock)."""
        began = time.monotonic()
        snapshot = await self.monitor.sample(at)
        await self.activity.refresh()
        self.latest = snapshot
        self.sample_seconds = time.monotonic() - began
        self.history.append(self._point(snapshot))
        return snapshot

    def _point(self, snapshot: LagSnapshot) -> dict[str, Any]:
        """A compact history point: per group its status and totals, per partition the figures."""
        a = self.activity.activity
        return {
            "at": snapshot.at,
            "groups": {
                g.group: {
                    "status": g.status.value,
                    "lag": g.total_lag,
                    "lag_seconds": round(g.max_lag_seconds, 3),
                    "partitions": {
                        str(p.lag.partition): [p.lag.lag, round(p.lag.lag_seconds, 3), p.verdict.status.value,
                                               p.lag.held]
                        for p in g.partitions
                    },
                }
                for g in snapshot.groups
            },
            "files_sent": len(a.sent),
            "files_acknowledged": len(a.acked),
            "rejected": a.rejected_total,
            "deadletter": a.deadletter_total,
            "held": sum(snapshot.batcher.held.values()) if snapshot.batcher else None,
        }

    def overview(self) -> dict[str, Any]:
        return {
            "now": time.time(),
            "lag": self.latest.to_json() if self.latest else None,
            "activity": self.activity.activity.to_json(),
            "sample_seconds": round(self.sample_seconds, 3),
            "sample_errors": self.sample_errors,
            "last_error": self.last_error,
            "sample_interval": self.settings.ops_sample_seconds,
            "window_samples": self.settings.ops_window_samples,
            "batcher_metrics": bool(self.monitor.batcher_urls),
        }

    # ------------------------------------------------------------------------------ HTTP

    def app(self) -> web.Application:
        async def lag(_: web.Request) -> web.Response:
            if self.latest is None:
                return web.json_response({"error": "no sample yet"}, status=503)
            return web.json_response(self.latest.to_json())

        async def overview(_: web.Request) -> web.Response:
            return web.json_response(self.overview())

        async def history(request: web.Request) -> web.Response:
            try:
                since = float(request.query.get("since", "0"))
            except ValueError:
                raise web.HTTPBadRequest(text="since must be a number") from None
            return web.json_response({"points": [p for p in self.history if p["at"] > since]})

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"worker": "ops", "status": "ok", "pid": os.getpid()})

        async def readyz(_: web.Request) -> web.Response:
            body = {"worker": "ops", "ready": self.ready, "last_error": self.last_error}
            return web.json_response(body, status=200 if self.ready else 503)

        async def index(_: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC / "index.html")

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_get("/lag", lag)
        app.router.add_get("/api/overview", overview)
        app.router.add_get("/api/history", history)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_static("/static/", STATIC, show_index=False)
        return app

    async def sample_forever(self, stop: asyncio.Event, health: Health | None = None) -> None:
        """Sample until stop; a failed sample (broker away) is counted and retried next interval."""
        while not stop.is_set():
            try:
                await self.tick()
                self.last_error = None
                if health is not None:
                    health.ready = True
                    health.progress()
            except (KafkaError, OSError, TimeoutError) as exc:
                self.sample_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("lag sample failed", extra={"error": self.last_error})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.ops_sample_seconds)


class _OpsCollector(Collector):
    """Prometheus figures generated from the latest sample at scrape time."""

    def __init__(self, service: OpsService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        s = self.service
        labels = ["group", "topic", "partition"]
        lag = GaugeMetricFamily("vaxflow_ops_lag_offsets", "Log end minus committed offset", labels=labels)
        seconds = GaugeMetricFamily("vaxflow_ops_lag_seconds", "Age of the oldest unconsumed record", labels=labels)
        committed = GaugeMetricFamily("vaxflow_ops_committed_offset", "Committed offset (-1: none)", labels=labels)
        end = GaugeMetricFamily("vaxflow_ops_log_end_offset", "Log end offset", labels=labels)
        held = GaugeMetricFamily("vaxflow_ops_held_events", "Events held in open batcher windows", labels=labels)
        pstatus = GaugeMetricFamily(
            "vaxflow_ops_partition_status", "1 for the partition's current status", labels=[*labels, "status"]
        )
        gstatus = GaugeMetricFamily("vaxflow_ops_group_status", "1 for the group's current status",
                                    labels=["group", "status"])
        gcode = GaugeMetricFamily("vaxflow_ops_group_status_code", "Group status: 0 OK, 1 WARN, 2 ERR",
                                  labels=["group"])
        members = GaugeMetricFamily("vaxflow_ops_group_members", "Live members of the group", labels=["group"])
        if s.latest is not None:
            for g in s.latest.groups:
                for p in g.partitions:
                    values = [g.group, g.topic, str(p.lag.partition)]
                    lag.add_metric(values, p.lag.lag)
                    seconds.add_metric(values, p.lag.lag_seconds)
                    committed.add_metric(values, -1 if p.lag.committed is None else p.lag.committed)
                    end.add_metric(values, p.lag.log_end)
                    if p.lag.held is not None:
                        held.add_metric(values, p.lag.held)
                    for status in Status:
                        if status is not Status.ERR:
                            pstatus.add_metric([*values, status.value], 1.0 if p.verdict.status is status else 0.0)
                for status in (Status.OK, Status.WARN, Status.ERR):
                    gstatus.add_metric([g.group, status.value], 1.0 if g.status is status else 0.0)
                gcode.add_metric([g.group], SEVERITY[g.status])
                members.add_metric([g.group], g.members.members)
        yield from (lag, seconds, committed, end, held, pstatus, gstatus, gcode, members)

        a = s.activity.activity
        sent = CounterMetricFamily("vaxflow_ops_files_sent", "Files in the sent ledger", labels=["vaccine_type"])
        for vt, n in a.sent_by_type.items():
            sent.add_metric([vt], n)
        yield sent
        acked = GaugeMetricFamily("vaxflow_ops_files_acknowledged", "Files with an InfAck", labels=["accepted"])
        acked.add_metric(["true"], sum(a.acked.values()))
        acked.add_metric(["false"], sum(not v for v in a.acked.values()))
        yield acked
        rejected = CounterMetricFamily("vaxflow_ops_rejected", "Rejected events by reason", labels=["reason"])
        for reason, n in a.rejected_by_reason.items():
            rejected.add_metric([reason], n)
        yield rejected
        dead = CounterMetricFamily("vaxflow_ops_dead_letters", "Dead-lettered files by reason", labels=["reason"])
        for reason, n in a.deadletter_by_reason.items():
            dead.add_metric([reason], n)
        yield dead
        redriven = CounterMetricFamily("vaxflow_ops_redriven", "Operator re-submissions by kind", labels=["kind"])
        for kind, n in a.redriven.items():
            redriven.add_metric([kind], n)
        yield redriven
        errors = CounterMetricFamily("vaxflow_ops_sample_errors", "Lag samples that failed")
        errors.add_metric([], s.sample_errors)
        yield errors
        duration = GaugeMetricFamily("vaxflow_ops_sample_duration_seconds", "How long the last sample took")
        duration.add_metric([], s.sample_seconds)
        yield duration


async def serve(service: OpsService, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Worker entry point: the HTTP server on ops_host:ops_port and the sampler loop."""
    service = OpsService(settings)
    await service.start()
    runner = await serve(service, settings.ops_host, settings.ops_port)
    log.info("ops service started", extra={"url": f"http://{settings.ops_host}:{settings.ops_port}/"})
    try:
        await service.sample_forever(stop, health)
    finally:
        health.ready = False
        await runner.cleanup()
        await service.stop()
