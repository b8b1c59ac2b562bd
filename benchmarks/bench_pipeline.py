"""End-to-end throughput, raw -> ready files, beside a plain aiokafka consume loop over the same topic.

Starts its own Kafka broker (the project's jars, a temporary home), produces a realistic mix (all
seed vaccine types, many senders, 5% invalid) to the raw topic, then measures in the same run:
  * baseline: a plain aiokafka consumer reading every raw record (no processing);
  * vaxflow: the validator and the batcher as two processes (one per core), from start until every
    event is in a ready file or on the rejected topic (transactions, guards and all).
The ratio of the two rates is the figure (the machine is shared and noisy). Memory per buffered
event is measured in-process with tracemalloc on the batcher's window structure.
Run: `python -m benchmarks.bench_pipeline [--events N] [--runs R]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from benchmarks.report import write_section
from schemas.batchfile import render_row
from schemas.event import ValidEvent
from schemas.permissions import default_permissions
from schemas.validate import validate_event
from topics.catalogue import RAW, VALID
from topics.ensure import ensure_topics
from vaxflow.dev import kafka_broker
from vaxflow.kafka_clients import admin_client
from vaxflow.loadgen import generate, produce
from vaxflow.settings import Settings
from workers.batcher.windows import PartitionWindows

SECTION = "## End to end (raw → ready files)"


async def plain_consume(settings: Settings, topic: str, expect: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # a topic created moments ago
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.perf_counter()
        seen = 0
        while seen < expect:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                seen += len(records)
        return expect / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def drained(settings: Settings) -> bool:
    """Both groups have committed everything: cheap (offsets only), so polling it does not steal the
    CPU the workers are measured on. The valid topic is transactional: its end offset includes the
    commit marker after the last record, hence `end - 1`."""
    admin = admin_client(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        for group, catalogue_topic, markers in (
            (settings.group(settings.validator_group), RAW.name, 0),
            (settings.group(settings.batcher_group), VALID.name, 1),
        ):
            topic = settings.topic(catalogue_topic)
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            ends = await consumer.end_offsets(tps)
            try:
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            except KafkaError:  # the group's coordinator is not there yet: not drained
                return False
            for tp in tps:
                meta = committed.get(tp)
                have = meta.offset if meta is not None and meta.offset >= 0 else 0
                if ends[tp] > 0 and have < ends[tp] - markers:
                    return False
        return True
    finally:
        await consumer.stop()
        await admin.close()


async def pipeline_run(base: Settings, payloads: list[bytes], keys: list[bytes], home: Path) -> tuple[float, float]:
    """One run in a fresh namespace: produce, then time validator + batcher processes to completion."""
    settings = base.model_copy(update={"topic_namespace": f"b{uuid.uuid4().hex[:8]}"})
    admin = admin_client(settings)
    await admin.start()
    await ensure_topics(admin, namespace=settings.topic_namespace)
    await admin.close()
    await produce(settings, payloads, keys)
    baseline = await plain_consume(settings, settings.topic(RAW.name), len(payloads))
    env = {**os.environ, **settings.as_environment()}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", f"workers.{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(home / f"{n}.log", "ab"),
        )
        for n in ("validator", "batcher")
    ]
    try:
        while not await drained(settings):
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(60)
    # The last window closes window+grace after its last event; that wait is latency, not work.
    work = max(elapsed - (settings.window_seconds + settings.grace_seconds), 0.001)
    return len(payloads) / work, baseline


def memory_per_event(n: int = 50_000) -> float:
    """Bytes kept alive per event held in an open window: its file row plus the bookkeeping."""
    load = generate(n, invalid_fraction=0.0, seed=9)
    permissions = default_permissions()
    valid = [
        r for r in (validate_event(p, permissions=permissions) for p in load.payloads) if isinstance(r, ValidEvent)
    ]
    windows = PartitionWindows(window_seconds=3600, grace_seconds=60, max_rows=10**9, max_bytes=10**12)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for offset, event in enumerate(valid):
        row = render_row(event.record)  # stands for the value bytes a fetch hands the batcher
        windows.add(
            offset=offset,
            timestamp_ms=now_ms,
            origin=(0, offset),
            vaccine_type=event.vaccine_type,
            sender_ods=event.sender_ods,
            row=row,
            size=len(row) + 2,
        )
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(valid)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup-events", type=int, default=50_000,
        help="one discarded run first: a fresh JVM spends whole seconds of CPU compiling the broker's hot paths",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="vaxflow-bench-"))
    layout = kafka_broker.BrokerLayout(
        version=Settings().kafka_version,
        cache_dir=Settings().cache_dir,
        home=home / "kafka",
        port=39092,
        controller_port=39093,
        heap="1g",
    )
    pid = kafka_broker.start_broker(layout)
    await kafka_broker.wait_ready(layout.bootstrap, pid=pid)
    try:
        base = Settings(
            kafka_bootstrap=layout.bootstrap,
            window_seconds=2,
            grace_seconds=0,
            max_rows_per_file=20000,
            dev_home=home,
            archive_dir=home / "archive",
        )
        load = generate(args.events, invalid_fraction=0.05, seed=11)
        if args.warmup_events:
            warm = generate(args.warmup_events, invalid_fraction=0.05, seed=12)
            rate, baseline = await pipeline_run(base, warm.payloads, warm.keys, home)
            print(f"warm-up (discarded): vaxflow {rate:,.0f} events/s, plain consume {baseline:,.0f} events/s")
        ours, plain = [], []
        for run in range(args.runs):
            rate, baseline = await pipeline_run(base, load.payloads, load.keys, home)
            ours.append(rate)
            plain.append(baseline)
            print(
                f"run {run + 1}: vaxflow {rate:,.0f} events/s, plain consume {baseline:,.0f} events/s, ratio {rate / baseline:.2f}"
            )
        per_event = memory_per_event()
    finally:
        kafka_broker.stop_broker(layout)
    med_ours, med_plain = statistics.median(ours), statistics.median(plain)
    ratios = statistics.median(o / p for o, p in zip(ours, plain, strict=True))
    text = (
        f"{SECTION}\n\n`python -m benchmarks.bench_pipeline --events {args.events} --runs {args.runs}` — "
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.python_implementation()} {platform.python_version()}, 2 cores shared.\n"
        "A realistic mix (8 seed types, many senders, 5% invalid) produced to a 6-partition raw topic; the validator and "
        "the batcher run as two processes (transactions, replay guards, archive writes included) until both consumer "
        "groups have committed everything (every event is then in a ready file or rejected; correctness is proven by "
        "the tests, not here); the final window's close wait (window + grace) is subtracted as latency. "
        "Baseline: a plain aiokafka consumer reading the same raw records, no processing, in the same run.\n\n"
        "| | events/s (median) | runs |\n|---|---:|---|\n"
        f"| vaxflow raw → ready | {med_ours:,.0f} | {', '.join(f'{x:,.0f}' for x in ours)} |\n"
        f"| plain aiokafka consume loop | {med_plain:,.0f} | {', '.join(f'{x:,.0f}' for x in plain)} |\n"
        f"| **ratio** (median of per-run pairs) | **{ratios:.2f}** | |\n\n"
        f"Memory held per buffered event in an open window (tracemalloc, 50,000 events): {per_event:,.0f} bytes.\n"
        "Targets: ≥ 20,000 events/s raw→ready on 2 cores and ≥ 40% of the plain loop.\n"
    )
    print(text)
    write_section(text)


if __name__ == "__main__":
    asyncio.run(main())
