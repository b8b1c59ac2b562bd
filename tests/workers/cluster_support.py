"""Helpers for pipeline tests on the three-broker SASL_SSL cluster: the gateway as a process, a
client that posts through it, and the broker faults (leader kills, rolling restarts)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiokafka.errors import KafkaError
from fixtures_kafka import ClusterHandle, KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import pipeline_settings
from pipeline_support import ProcessWorker, settings_env

from workers.base.kafka import admin, offsets_probe, partitions_of
from workers.base.settings import Settings

T = TypeVar("T")


def cluster_pipeline_settings(
    cluster: ClusterHandle, namespace: str, mesh: MeshSandboxHandle, **overrides: Any
) -> Settings:
    """The pipeline tests' settings on the cluster, as its admin (workers get their own principals)."""
    handle = KafkaHandle(bootstrap=cluster.layout.bootstrap, layout=None, startup_seconds=0.0)
    return cluster.layout.settings(pipeline_settings(handle, namespace, mesh, **overrides))


def start_workers(
    cluster: ClusterHandle, settings: Settings, names: tuple[str, ...], logs: Path, **extra: str
) -> dict[str, ProcessWorker]:
    """Each worker in its own process, as its own principal (only its ACLs)."""
    return {
        name: ProcessWorker(
            name, settings_env(cluster.worker_settings(settings, name), **extra), logs / f"{name}.log"
        ).start()
        for name in names
    }


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"{url} not ready in {timeout:.0f} s"
            await asyncio.sleep(0.2)


@dataclass
class Posted:
    """What the gateway answered: per payload index, its raw coordinates (202) or refusal rule (400)."""

    origins: dict[int, tuple[int, int]] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    other: list[str] = field(default_factory=list)  # non-202/400 answers: (status, message)


async def post_chunk(
    http: aiohttp.ClientSession, url: str, token: str, payloads: list[bytes], indices: list[int], posted: Posted
) -> int:
    """POST the chunk once (never retried: a retry could double an event); lines refused with 400
    are recorded and the rest posted again. Returns the final status."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    while indices:
        async with http.post(url, data=b"\n".join(payloads[i] for i in indices), headers=headers) as response:
            body = await response.json()
            posted.statuses[response.status] += 1
            if response.status == 202:
                for i, event in zip(indices, body["events"], strict=True):
                    posted.origins[i] = (event["partition"], event["offset"])
                return 202
            if response.status != 400:
                posted.other.append(f"{response.status}: {body.get('message', body)}")
                return response.status
            bad = {item["line"] for item in body["lines"]}
            for item in body["lines"]:
                posted.refused[indices[item["line"] - 1]] = item["rule"]
            indices = [i for n, i in enumerate(indices, 1) if n not in bad]
    return 400


def gateway_env(port: int, send_timeout: float) -> dict[str, str]:
    return {
        "VAXFLOW_GATEWAY_PORT": str(port),
        "VAXFLOW_GATEWAY_SEND_TIMEOUT_SECONDS": str(send_timeout),
        "VAXFLOW_GATEWAY_MAX_INFLIGHT_REQUESTS": "64",
    }


async def asking_again(call: Callable[[], Awaitable[T]], tries: int = 40) -> T:
    """`call` again while the cluster answers with a Kafka error: an admin client asks a random
    node, and one restarted a moment ago may not take connections yet."""
    for _ in range(tries - 1):
        try:
            return await call()
        except KafkaError:
            await asyncio.sleep(0.5)
    return await call()


async def leader_of_busiest(settings: Settings, topic: str) -> tuple[int, int]:
    """(partition, leader node id) of `topic`'s partition with the most records."""

    async def leaders() -> dict[int, int]:
        async with admin(settings) as client:
            described = (await client.describe_topics([topic]))[0]
        return {p["partition"]: p["leader"] for p in described["partitions"]}

    async def ends() -> dict[int, int]:
        probe = offsets_probe(settings)
        await probe.start()
        try:
            offsets = await probe.end_offsets(await partitions_of(probe, topic))
        finally:
            await probe.stop()
        return {tp.partition: end for tp, end in offsets.items()}

    led = await asking_again(leaders)
    written = await asking_again(ends)
    busiest = max(written, key=lambda p: written[p])
    return busiest, led[busiest]


async def wait_fully_replicated(settings: Settings, topics: list[str], timeout: float = 120.0) -> float:
    """Seconds until every partition of `topics` has every replica in sync again (what a rolling
    restart waits for before the next broker: under-replicated partitions = 0)."""
    started = time.monotonic()
    async with admin(settings) as client:
        while True:
            try:
                described = await client.describe_topics(topics)
                lagging = [
                    (t["topic"], p["partition"]) for t in described for p in t["partitions"]
                    if len(p["isr"]) < len(p["replicas"]) or p["leader"] < 0
                ]  # fmt: skip
            except Exception as exc:  # a metadata call during a restart may fail; ask again
                lagging = [("?", repr(exc))]
            if not lagging:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, f"under-replicated after {timeout:.0f} s: {lagging[:5]}"
            await asyncio.sleep(0.5)

