"""The batcher's identity memory (workers/batcher/identities.py): bytes held per remembered
identity, and the time to restore ten million of them from the changelog topic.

`python -m benchmarks.bench_identities [--restore N] [--runs R]` prints the figures and writes the
"Identity memory" section of docs/benchmarks.md.

Memory is measured two ways: the table's own array (what the code allocates) and the growth of
the process's resident set while it fills (what the operating system sees), against a baseline
measured in the same run: the same entries in a plain Python dict of tuples, as hand-written code
would first hold them. Restore is timed against reading the same records without keeping them
(the cost of Kafka and aiokafka alone), on a broker started for the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from benchmarks.bench_pipeline import start_broker
from benchmarks.report import cpu_name, write_section
from vaxflow.dev import kafka_broker
from workers.base.batch_send import BatchSender
from workers.base.kafka import admin, idempotent_producer, reader
from workers.base.settings import Settings
from workers.batcher.identities import HOUR_BITS, Entry, IdentityTable, hour_of
from workers.batcher.identity_log import restore_identities


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _entries(n: int, seed: int) -> list[tuple[int, int, int, int]]:
    rng = random.Random(seed)
    hour = hour_of(int(time.time() * 1000))
    return [(rng.getrandbits(64) | 2, rng.getrandbits(64), rng.getrandbits(40), (i << HOUR_BITS) | hour) for i in range(n)]


def memory(n: int) -> dict[str, float]:
    """Bytes per identity: the table (array and RSS growth) and a dict of tuples (RSS growth)."""
    words = _entries(n, seed=n)
    gc.collect()
    before = _rss()
    table = IdentityTable()
    started = time.perf_counter()
    for key, digest, origin, seen in words:
        table.put_words(key, digest, origin, seen)
    insert_s = time.perf_counter() - started
    table_rss = (_rss() - before) / n
    table_array = table.nbytes() / len(table)
    del table
    gc.collect()
    before = _rss()
    plain = {key: (digest, origin, seen) for key, digest, origin, seen in words}
    dict_rss = (_rss() - before) / n
    del plain
    gc.collect()
    return {"array": table_array, "rss": table_rss, "dict_rss": dict_rss, "insert_us": insert_s / n * 1e6}


async def _fill(settings: Settings, topic: str, n: int) -> float:
    producer = idempotent_producer(settings, linger_ms=20, max_request_size=8 * 1024 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        sender = BatchSender(producer)
        now = int(time.time() * 1000)
        for key, digest, origin, seen in _entries(n, seed=1):
            k, v = Entry(key, digest, origin, seen).record()
            await sender.add(topic, v, key=k, timestamp_ms=now, headers=(), partition=0)
        await sender.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def _read_only(settings: Settings, topic: str) -> float:
    """Reading every record of the partition and dropping it: the baseline of a restore."""
    consumer = reader(settings, fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    started = time.perf_counter()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        count = 0
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)
            for record in batch.get(tp, []):
                count += record.key is not None
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def restore(n: int, runs: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="vaxflow-bench-identities-"))
    layout, pid = start_broker(home, port=39292)
    try:
        await kafka_broker.wait_ready(layout.bootstrap, timeout=120, pid=pid)
        settings = Settings(kafka_bootstrap=layout.bootstrap)
        topic = "bench.identities"
        async with admin(settings) as client:
            await client.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact,delete"})])
        fill_s = await _fill(settings, topic, n)
        restores, reads, kept = [], [], 0
        for _ in range(runs):  # interleaved, so both see the same machine
            reads.append(await _read_only(settings, topic))
            gc.collect()
            started = time.perf_counter()
            table = await restore_identities(settings, topic, 0, horizon_ms=35 * 86_400_000)
            restores.append(time.perf_counter() - started)
            kept = len(table)
            del table
            gc.collect()
        return {
            "fill_s": fill_s, "restore_s": statistics.median(restores), "read_s": statistics.median(reads),
            "restore_min": min(restores), "restore_max": max(restores), "kept": kept,
            "ratio": statistics.median(r / b for r, b in zip(restores, reads, strict=True)),
        }  # fmt: skip
    finally:
        kafka_broker.stop_broker(layout)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--restore", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    mem = {n: memory(n) for n in args.memory}
    for n, m in mem.items():
        print(f"memory {n:,}: array {m['array']:.1f} B, RSS {m['rss']:.1f} B, dict {m['dict_rss']:.1f} B, "
              f"insert {m['insert_us']:.2f} µs")  # fmt: skip
    rest = asyncio.run(restore(args.restore, args.runs))
    print(f"restore {args.restore:,}: median {rest['restore_s']:.1f} s (read-only {rest['read_s']:.1f} s), "
          f"{rest['kept']:,} kept; fill {rest['fill_s']:.1f} s")  # fmt: skip
    rows = "\n".join(
        f"| {n:,} | {m['array']:.1f} | {m['rss']:.1f} | {m['dict_rss']:.1f} | {m['dict_rss'] / m['rss']:.1f}× | "
        f"{m['insert_us']:.2f} |"
        for n, m in mem.items()
    )
    text = f"""## Identity memory (dedupe)

`python -m benchmarks.bench_identities` — the batcher's remembered identities
(workers/batcher/identities.py, decision 0018). Target: at most 64 bytes of RAM per identity.
Measured {datetime.now(UTC):%Y-%m-%d} on {cpu_name()}, shared 2-core machine.

| identities | table array, bytes each | process RSS growth, bytes each | dict of tuples (baseline), RSS bytes each | baseline / table | insert, µs each |
|---:|---:|---:|---:|---:|---:|
{rows}

The table holds four 64-bit words per slot and is kept 55–75% full, so its array is 43–59 bytes
per identity; the RSS column is the operating system's view of the same growth (a resize holds
the old and the new array for a moment). The dict column is what a plain `dict[int, tuple]` of
the same entries costs.

Restore of {args.restore:,} identities from one changelog partition (one record per identity,
8-byte key, 24-byte value) on a local broker, median of {args.runs} runs interleaved with a
read-only pass over the same records:

| | seconds (median) | slowest – fastest |
|---|---:|---:|
| `restore_identities` (read + rebuild the table) | {rest['restore_s']:.1f} | {rest['restore_max']:.1f} – {rest['restore_min']:.1f} |
| read the records only (baseline) | {rest['read_s']:.1f} | |
| ratio restore / read (median of per-run pairs) | {rest['ratio']:.2f} | |

{rest['kept']:,} identities kept after the restore. A batcher restores only the partitions it is
assigned (six valid partitions share the horizon's identities), in parallel with the state topic.
"""
    write_section(text)


if __name__ == "__main__":
    main()
