"""Lag figures and Burrow-style status against the real broker.

- The figures equal kafka-consumer-groups arithmetic on a known backlog, checked independently
  with Kafka's own Java Admin client (the one kafka-consumer-groups is built on).
- A consumer that stops turns STOP, one that holds its partitions without committing turns STALL,
  and both return to OK once the validator runs again. Samples carry explicit times a minute
  apart, so the sliding window covers minutes while the test takes seconds.
- The batcher's saw-tooth commits (only when a window closes) stay OK.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from ops_support import caught_up, ops_settings
from support.topics import ensure
from support.workers import running, wait_for

from topics.catalogue import RAW, VALID
from vaxflow.dev.loadgen import generate, produce
from vaxflow.ops.burrow import Policy, Status
from vaxflow.ops.lag import LagMonitor, LagProbe
from workers.base.kafka import committed_consumer, group_committer, idempotent_producer
from workers.base.runtime import Health, health_app
from workers.base.settings import Settings
from workers.batcher import worker as batcher
from workers.validator import worker as validator

pytestmark = pytest.mark.integration

JAVA_LAG = """
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

public class GroupLag {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(props)) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(args[1]).partitionsToOffsetAndMetadata().get();
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicPartition tp : committed.keySet()) latest.put(tp, OffsetSpec.latest());
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = admin.listOffsets(latest).all().get();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : committed.entrySet()) {
                long end = ends.get(e.getKey()).offset();
                System.out.println(e.getKey().partition() + " " + e.getValue().offset() + " " + end + " "
                    + (end - e.getValue().offset()));
            }
        }
    }
}
"""


def java_group_lag(settings: Settings, group: str, tmp_path: Path) -> dict[int, tuple[int, int, int]]:
    """partition -> (committed, log end, lag) as Kafka's Java Admin client computes them."""
    java = shutil.which("java")
    libs = settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"
    if java is None or not libs.is_dir():
        pytest.skip("java or the Kafka jars are not available")
    source = tmp_path / "GroupLag.java"
    source.write_text(JAVA_LAG)
    out = subprocess.run(
        [java, "-cp", f"{libs}/*", str(source), settings.kafka_bootstrap, group],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        partition, committed, end, lag = (int(x) for x in line.split())
        rows[partition] = (committed, end, lag)
    return rows


async def test_lag_equals_consumer_group_arithmetic(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = ops_settings(kafka_settings, tmp_path)
    await ensure(settings)
    raw = settings.topic(RAW.name)
    group = settings.group(settings.validator_group)
    now_ms = int(time.time() * 1000)
    produced = {p: 10 + 3 * p for p in range(6)}
    commit = {0: 0, 1: 5, 2: 16, 3: 19, 4: 1}  # 2 and 3: fully consumed; 5: never committed
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        for p, n in produced.items():
            for i in range(n):  # record i is (n - i) minutes old
                await producer.send(raw, b"{}", partition=p, timestamp_ms=now_ms - (n - i) * 60_000)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = group_committer(settings, group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(raw, p) for p in commit])
        await consumer.commit({TopicPartition(raw, p): o for p, o in commit.items()})
    finally:
        await consumer.stop()

    started = time.monotonic()
    async with LagProbe(settings) as probe:
        found = await probe.probe({group: raw}, at=now_ms / 1000)
    members, rows = found[group]
    print(f"\n[lag] one probe of 6 partitions: {time.monotonic() - started:.2f}s")
    assert members.members == 0
    by_partition = {r.partition: r for r in rows}
    for p, n in produced.items():
        row = by_partition[p]
        base = commit.get(p, 0)
        assert row.committed == commit.get(p)
        assert row.log_end == n
        assert row.lag == n - base
        if row.lag:
            assert row.pending
            assert row.lag_seconds == pytest.approx((n - base) * 60, abs=2)
        else:
            assert row.lag_seconds == 0
            assert not row.pending

    java = await asyncio.to_thread(java_group_lag, settings, group, tmp_path)
    assert set(java) == set(commit)  # kafka-consumer-groups lists committed partitions only
    for p, (committed, end, lag) in java.items():
        assert (by_partition[p].committed, by_partition[p].log_end, by_partition[p].lag) == (committed, end, lag)


async def test_stopped_consumer_turns_stop_and_stalled_one_stall_then_ok(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = ops_settings(kafka_settings, tmp_path)
    await ensure(settings)
    raw = settings.topic(RAW.name)
    group = settings.group(settings.validator_group)
    load = generate(400, seed=11)
    monitor = LagMonitor(settings, groups={group: raw}, policies={group: Policy(window=4, min_samples=3)})
    t = time.time()
    minute = iter(range(0, 10_000, 60))

    async def status() -> tuple[Status, set[Status]]:
        snapshot = await monitor.sample(at=t + next(minute))
        view = snapshot.groups[0]
        return view.status, {p.verdict.status for p in view.partitions}

    async with monitor:
        await produce(settings, load.payloads[:100], load.keys[:100])
        async with running(validator.run, settings):
            await wait_for(partial(caught_up, settings, group, raw), 60, "validator caught up")
            assert (await status())[0] is Status.OK

        # stopped: nobody owns the partitions while records arrive
        await produce(settings, load.payloads[100:200], load.keys[100:200])
        first = await status()
        second = await status()
        print(f"\n[lag] stopped consumer: {first} then {second}")
        assert second == (Status.ERR, {Status.STOP})

        async with running(validator.run, settings):
            await wait_for(partial(caught_up, settings, group, raw), 60, "validator caught up again")
            assert (await status()) == (Status.OK, {Status.OK})

        # stalled: a member holds every partition but never commits
        idle = committed_consumer(settings, raw, group_id=group)
        await idle.start()
        try:
            await wait_for(partial(_assigned, idle), 30, "idle member assigned")
            await produce(settings, load.payloads[200:300], load.keys[200:300])
            seen = [await status() for _ in range(4)]
            print(f"[lag] idle member: {seen}")
            assert seen[-1] == (Status.ERR, {Status.STALL})
            assert all(s[1] <= {Status.OK, Status.STALL} for s in seen)
        finally:
            await idle.stop()

        async with running(validator.run, settings):
            await wait_for(partial(caught_up, settings, group, raw), 60, "validator caught up after the stall")
            assert (await status()) == (Status.OK, {Status.OK})


async def _assigned(consumer: AIOKafkaConsumer) -> bool:
    await consumer.getmany(timeout_ms=200, max_records=1)
    return bool(consumer.assignment())


async def test_batcher_saw_tooth_is_not_stall(kafka_settings: Settings, tmp_path: Path, unused_tcp_port: int) -> None:
    """Real validator + batcher, 3 s windows, a steady trickle of events, one sample a second."""
    settings = ops_settings(kafka_settings, tmp_path, window_seconds=3, grace_seconds=1,
                            ops_batcher_metrics_urls=f"http://127.0.0.1:{unused_tcp_port}/metrics")
    await ensure(settings)
    valid = settings.topic(VALID.name)
    group = settings.group(settings.batcher_group)
    from aiohttp import web

    runner = web.AppRunner(health_app(Health(), "batcher"), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    load = generate(1200, invalid_fraction=0.0, seed=12)
    monitor = LagMonitor(settings, groups={group: valid})
    statuses: list[Status] = []
    still: list[int] = []
    held_seen = 0
    try:
        async with monitor, running(validator.run, settings), running(batcher.run, settings):
            for i in range(0, 1200, 60):  # ~20 s of traffic, one sample per second
                await produce(settings, load.payloads[i:i + 60], load.keys[i:i + 60])
                snapshot = await monitor.sample()
                view = snapshot.groups[0]
                statuses += [p.verdict.status for p in view.partitions]
                held_seen = max(held_seen, sum((p.lag.held or 0) for p in view.partitions))
                for history in monitor.histories.values():
                    window = list(history.samples)
                    if len(window) >= 3 and window[-1].effective_lag and len({s.committed for s in window[-3:]}) == 1:
                        still.append(len(window))
                await asyncio.sleep(1)
    finally:
        await runner.cleanup()
    counts = {s: statuses.count(s) for s in set(statuses)}
    print(f"\n[lag] batcher statuses over {len(statuses)} partition samples: {counts}; "
          f"held events seen: {held_seen}; samples with the committed offset still under lag: {len(still)}")
    assert still, "the batcher should have held its committed offset still while lag grew (saw-tooth)"
    assert held_seen > 0
    assert set(statuses) == {Status.OK}
