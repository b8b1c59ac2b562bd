"""How CPU per event, files and memory grow with partitions, senders and window length.

docs/architecture.md ("Scale") asks how the figures grow, not only what they are at one point, so
this script varies one factor at a time around a base and runs the real pipeline (validator and
batcher as processes, the project's own broker) for each point:
  * partitions of the raw and valid topics (and of their state topics, which mirror them);
  * batch keys, i.e. (vaccine type, sender) pairs: national traffic has thousands of senders,
    the packaged permissions only 22, so the senders here come from a generated permissions file;
  * window length, over traffic whose ingestion times span `--span` seconds (set per record
    when producing), so a run of a few seconds still sees many windows close.
Per point it prints events/s, CPU microseconds per event of each process (the steadier figure on a
shared machine; 1e6 / µs is events per CPU second of that stage), how many files were written and
their mean rows, the batcher's state bytes written per event (its replay guard and window
bookkeeping, one record per emitting transaction), and the batcher's peak resident memory. It also
measures, in-process, the memory an open window costs and the state bytes a batch key costs.

    .venv/bin/python -m benchmarks.bench_scaling [--events 100000] [--span 600] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import platform
import random
import shutil
import statistics
import tempfile
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import orjson

from benchmarks.bench_pipeline import RunResult, pipeline_run, start_broker
from benchmarks.report import write_section
from schemas.permissions import Permissions, load_permissions
from schemas.pipeline import BatcherState, ReadyFile
from topics.catalogue import BATCHER_STATE, CATALOGUE, RAW, READY, VALID, VALIDATOR_STATE, TopicSpec
from vaxflow.dev import kafka_broker
from vaxflow.dev.samples import SEED_VACCINE_TYPES, corrupt, make_event
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end
from workers.batcher.windows import PartitionWindows

SECTION = "## Scaling (partitions, senders, window length)"


@dataclass(frozen=True, slots=True)
class Point:
    factor: str  # which factor this point varies ("base" for the shared one)
    partitions: int
    keys: int  # (vaccine type, sender) pairs the traffic is spread over
    window_seconds: int


def points(base: Point) -> list[Point]:
    """One factor at a time around `base`, base first (so it is run once and shared)."""
    out = [base]
    out += [dataclasses.replace(base, factor="partitions", partitions=p) for p in (1, 3, 12)]
    out += [dataclasses.replace(base, factor="keys", keys=k) for k in (48, 4800)]
    out += [dataclasses.replace(base, factor="window", window_seconds=w) for w in (10, 300)]
    return out


def synthetic_senders(keys: int) -> tuple[bytes, list[tuple[str, str]]]:
    """A permissions file whose senders hold C, U and D for every seed type, and the batch keys.

    Keys go round the eight seed types, so `keys` of them need `keys / 8` senders.
    """
    senders = [f"B{n:05d}" for n in range(-(-keys // len(SEED_VACCINE_TYPES)))]
    grants = [f"{t}.CRUD" for t in SEED_VACCINE_TYPES]
    config = [{"supplier": "BENCH", "ods_codes": senders, "permissions": grants}]
    pairs = [
        (SEED_VACCINE_TYPES[i % len(SEED_VACCINE_TYPES)], senders[i // len(SEED_VACCINE_TYPES)]) for i in range(keys)
    ]
    return json.dumps(config).encode(), pairs


@dataclass(frozen=True, slots=True)
class Corpus:
    payloads: list[bytes]
    keys: list[bytes]
    timestamps_ms: list[int]


def corpus(n: int, pairs: list[tuple[str, str]], permissions: Permissions, span_s: int, seed: int) -> Corpus:
    """`n` events spread evenly over the keys, 5% invalid, ingested in order over `span_s` seconds.

    The span ends an hour before the last whole hour, so every window of a length dividing an hour
    (and the next few, where a late event would go) is closable by the wall clock when read: no run
    waits for a window to end, whatever its length.
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    end_ms = int(now.timestamp() * 1000) // 3_600_000 * 3_600_000 - 3_600_000
    start_ms = end_ms - span_s * 1000
    payloads: list[bytes] = []
    keys: list[bytes] = []
    stamps: list[int] = []
    for i in range(n):
        vaccine_type, sender = pairs[rng.randrange(len(pairs))]
        event = make_event(rng, vaccine_type, sender, permissions=permissions, now=now)
        if rng.random() < 0.05:
            event = corrupt(rng, event)
        payloads.append(orjson.dumps(event))
        keys.append(f"{vaccine_type}|{sender}".encode())
        stamps.append(start_ms + i * span_s * 1000 // n)
    return Corpus(payloads, keys, stamps)


def specs_with(partitions: int) -> list[TopicSpec]:
    """The catalogue with the raw and valid topics (and their state topics) at `partitions`."""
    resized = {RAW.name, VALID.name, VALIDATOR_STATE.name, BATCHER_STATE.name}
    return [dataclasses.replace(s, partitions=partitions) if s.name in resized else s for s in CATALOGUE]


@dataclass(frozen=True, slots=True)
class Census:
    files: int
    rows: int
    state_records: int
    state_bytes: int


async def census(settings: Settings) -> Census:
    """What the run's batcher wrote: ready files and their rows, state records and their bytes."""
    ready = await read_to_end(settings, settings.topic(READY.name))
    decode = msgspec.json.Decoder(ReadyFile).decode
    rows = sum(decode(r.value).rows for r in ready if r.value)
    states = await read_to_end(settings, settings.topic(BATCHER_STATE.name))
    return Census(len(ready), rows, len(states), sum(len(r.value or b"") for r in states))


def window_costs(keys: int) -> tuple[float, float]:
    """(bytes per open window beyond its events, bytes per batch key in the batcher's state record).

    Open windows: the same `keys` rows held once in `keys` windows and once in one window; the
    difference is the windows' own bookkeeping. State: a BatcherState after every key has closed
    a window keeps one entry per key (late events of a key go to its next window, never a sent name).
    """
    row = b"x" * 600

    def held(spread: bool) -> int:
        windows = PartitionWindows(window_seconds=3600, grace_seconds=0, max_rows=10**9, max_bytes=10**12)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(keys):
            windows.add(
                offset=i,
                timestamp_ms=0,
                origin=(0, i),
                vaccine_type="COVID",
                sender_ods=f"B{i:05d}" if spread else "B00000",
                row=row,
                size=602,
            )
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return used

    per_window = (held(True) - held(False)) / keys
    state = BatcherState(
        partition=0,
        watermark=10**9,
        emitted=[],
        version=2,
        window_ms=3_600_000,
        closed_until={
            f"{SEED_VACCINE_TYPES[i % 8]}|B{i // 8:05d}": 1_765_000_000_000 + i * 3_600_000 for i in range(keys)
        },
    )
    empty = BatcherState(partition=0, watermark=10**9, emitted=[])
    return per_window, (len(msgspec.json.encode(state)) - len(msgspec.json.encode(empty))) / keys


@dataclass(frozen=True, slots=True)
class Outcome:
    point: Point
    runs: list[RunResult]
    census: Census


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(outcomes: list[Outcome], n: int) -> str:
    head = (
        "| varied | partitions | keys | window | events/s | validator µs/event | batcher µs/event | broker µs/event "
        "| batcher events per CPU-s | files | rows/file | state bytes/event | batcher peak RSS |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for o in outcomes:
        p, c = o.point, o.census
        cpu = {
            name: _median([r.cpu_us[name] for r in o.runs if name in r.cpu_us])
            for name in ("validator", "batcher", "broker")
        }
        rss = _median([r.peak_rss_mib["batcher"] for r in o.runs if "batcher" in r.peak_rss_mib])
        lines.append(
            f"| {p.factor} | {p.partitions} | {p.keys:,} | {p.window_seconds} s | {_median([r.rate for r in o.runs]):,.0f} "
            f"| {cpu['validator']:.1f} | {cpu['batcher']:.1f} | {cpu['broker']:.1f} | {1e6 / cpu['batcher']:,.0f} "
            f"| {c.files:,} | {c.rows / max(c.files, 1):,.1f} | {c.state_bytes / n:,.1f} | {rss:,.0f} MiB |"
        )
    return head + "\n".join(lines) + "\n"


async def run_point(point: Point, n: int, span: int, runs: int, home: Path, bootstrap: str, broker_pid: int) -> Outcome:
    config, pairs = synthetic_senders(point.keys)
    permissions_file = home / f"permissions-{point.keys}.json"
    permissions_file.write_bytes(config)
    permissions = load_permissions(permissions_file)
    load = corpus(n, pairs, permissions, span, seed=point.keys)
    base = Settings(
        kafka_bootstrap=bootstrap,
        window_seconds=point.window_seconds,
        grace_seconds=0,
        max_rows_per_file=20000,
        dev_home=home,
        permissions_file=permissions_file,
    )
    results = []
    for _ in range(runs):
        # Each run archives into a folder of its own, kept until the script ends: deleting the last
        # run's tens of thousands of files just before this one made every file this run created
        # cost ~0.5 ms of kernel CPU here (ext4 without a journal passes over inodes freed in the
        # last minutes when it allocates one) — a cost of the benchmark, not of the batcher.
        archive = Path(tempfile.mkdtemp(prefix="archive-", dir=home))
        results.append(
            await pipeline_run(
                base.model_copy(update={"archive_dir": archive}),
                load.payloads,
                load.keys,
                home,
                broker_pid=broker_pid,
                specs=specs_with(point.partitions),
                timestamps_ms=load.timestamps_ms,
            )
        )
    counted = await census(base.model_copy(update={"topic_namespace": results[-1].namespace}))
    return Outcome(point, results, counted)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--span", type=int, default=600, help="seconds of ingestion time the events spread over")
    parser.add_argument("--runs", type=int, default=1, help="runs per point (medians are shown)")
    parser.add_argument("--warmup-events", type=int, default=50_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base = Point("base", partitions=6, keys=480, window_seconds=60)
    home = Path(tempfile.mkdtemp(prefix="vaxflow-scaling-"))
    layout, pid = start_broker(home, port=39192)
    outcomes: list[Outcome] = []
    try:
        await kafka_broker.wait_ready(layout.bootstrap, pid=pid)
        if args.warmup_events:
            await run_point(base, args.warmup_events, args.span, 1, home, layout.bootstrap, pid)
        for point in points(base):
            outcome = await run_point(point, args.events, args.span, args.runs, home, layout.bootstrap, pid)
            outcomes.append(outcome)
            print(table([outcome], args.events).splitlines()[-1], flush=True)
    finally:
        kafka_broker.stop_broker(layout)
        shutil.rmtree(home, ignore_errors=True)
    costs = {k: window_costs(k) for k in (480, 4800, 48000)}
    text = (
        f"{SECTION}\n\n`python -m benchmarks.bench_scaling --events {args.events} --span {args.span} --runs {args.runs}` — "
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.python_implementation()} {platform.python_version()}, 2 cores shared.\n"
        f"Raw → ready with the validator and batcher as processes, one factor varied at a time around the base "
        f"(6 partitions, 480 keys, 60 s windows); {args.events:,} events per run, 5% invalid, spread evenly over the "
        f"keys and ingested over {args.span} s of record time (so the window length decides how many files a key "
        f"gets); one discarded warm-up point first. CPU per event and peak memory come from `/proc`; files, rows and "
        f"state bytes from reading the run's ready and batcher-state topics afterwards.\n\n"
        f"{table(outcomes, args.events)}\n"
        "In-process (tracemalloc, msgspec): "
        + "; ".join(
            f"{k:,} keys: {w:,.0f} bytes per open window beyond its rows, {s:.1f} state bytes per key"
            for k, (w, s) in costs.items()
        )
        + ".\n"
    )
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    asyncio.run(main())
