"""validator + batcher against the real broker: every event ends in exactly one place.

The invariant checked in each test (docs/architecture.md, "Exactly once"): the origins of all events produced
to the raw topic are partitioned, without overlap and without gaps, into rows of ready files and
records of the rejected topic; file names are never reused; every file reads back as valid.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import msgspec
import orjson
import pytest
from fixtures_kafka import KafkaHandle
from mesh_pipeline_support import end_offsets
from pipeline_support import (
    ProcessWorker,
    TaskWorker,
    kill_and_restart,
    kill_schedule,
    produce_paced,
    read_all,
    settings_env,
)
from support.placement import Fault, Placement, SentLoad, assert_mid_stream, nothing_more_arrives, settle_seconds
from support.settings import scoped_settings
from support.topics import ensure
from support.workers import wait_for

from schemas.batchfile import read_file
from schemas.batchkey import encode_key
from schemas.permissions import default_permissions
from schemas.pipeline import ReadyFile, decode_origin
from schemas.validate import validate_record
from topics import headers as h
from topics.catalogue import READY, REJECTED, VALID
from vaxflow.dev.loadgen import Generated, generate, produce
from workers.base.kafka import idempotent_producer
from workers.base.runtime import WorkerMain
from workers.base.settings import Settings
from workers.batcher.worker import run as run_batcher
from workers.validator.worker import run as run_validator

pytestmark = pytest.mark.integration

_READY = msgspec.json.Decoder(ReadyFile)


_PIPELINE_DEFAULTS = {"window_seconds": 4, "grace_seconds": 1, "max_rows_per_file": 40}


def pipeline_settings(base: Settings, tmp_path: Path, **overrides: object) -> Settings:
    return scoped_settings(base, tmp_path, _PIPELINE_DEFAULTS, overrides)


async def outcome(settings: Settings) -> tuple[list[ReadyFile], list[tuple[int, int]]]:
    records = await read_all(settings, settings.topic(READY.name))
    files = [_READY.decode(r.value or b"") for r in records]
    # Keyed by batch key, so one key's files share a ready partition in window order (issue 16).
    assert [r.key for r in records] == [encode_key(f.vaccine_type, f.sender_ods) for f in files]
    rejected = [
        decode_origin(h.header(r.headers, h.ORIGIN) or b"")
        for r in await read_all(settings, settings.topic(REJECTED.name))
    ]
    return files, rejected


async def rejected_values(settings: Settings) -> list[bytes]:
    """The rejected topic's values: the validator forwards each refused event's own bytes."""
    return [r.value or b"" for r in await read_all(settings, settings.topic(REJECTED.name))]


async def output_count(settings: Settings) -> int:
    files, rejected = await outcome(settings)
    return len(files) + len(rejected)


async def no_more_output(settings: Settings) -> None:
    """Nothing more reaches the ready or rejected topic for a window, its grace and 5 s more."""
    await nothing_more_arrives(partial(output_count, settings), settle_seconds(settings), "ready files or rejections")


async def measured(what: str, at: float, produced: int, settings: Settings, load: SentLoad) -> Fault:
    """A fault's in-flight count: of the `produced` events on the raw topic when it was injected,
    those in no ready file's rows and not rejected (read after a kill or hand-over, so a lower bound;
    read just before a broker restart, which nothing can be read during)."""
    files, _ = await outcome(settings)
    placed = load.placed([f.content for f in files], await rejected_values(settings))
    return Fault(what, at, produced, len(set(range(produced)) - placed))


async def check_placed(
    settings: Settings, payloads: list[bytes], invalid: frozenset[int], coords: list[tuple[int, int]]
) -> Placement:
    """Both checks: the workers' records (origins) and the files' own rows matched to what was sent."""
    files, rejected = await outcome(settings)
    check_exactly_once(files, rejected, coords, invalid)
    placement = SentLoad(payloads, invalid).check(
        {f"{n}:{f.file_name}": f.content for n, f in enumerate(files)}, await rejected_values(settings),
        where="ready-file",
    )
    print(f"\n[exactly-once] {placement.summary()}")
    return placement


async def settled(settings: Settings, total: int) -> bool:
    files, rejected = await outcome(settings)
    return sum(f.rows for f in files) + len(rejected) >= total


async def all_placed(settings: Settings, total: int, timeout: float) -> None:
    """All `total` events in files or rejected within `timeout` s, and then nothing more arrives."""
    await wait_for(partial(settled, settings, total), timeout, "all events in files or rejected")
    await no_more_output(settings)


async def check_after_faults(
    label: str, faults: list[Fault], settings: Settings, load: Generated, coords: list[tuple[int, int]]
) -> None:
    """After a run with faults injected: each fault landed mid-stream, and every event of `load`
    is in exactly one place (check_placed)."""
    print(f"\n[{label}] {'; '.join(map(str, faults))}")
    assert_mid_stream(faults, len(load.payloads))
    await check_placed(settings, load.payloads, load.invalid, coords)


async def run_batcher_until_settled(settings: Settings, total: int, timeout: float = 60) -> None:
    """The batcher alone as a task until all `total` valid records are in files or rejected."""
    batcher = TaskWorker(run_batcher, settings).start()
    try:
        await wait_for(partial(settled, settings, total), timeout, f"all {total} valid records placed")
    finally:
        await batcher.close()


def window_starts(first_ms: int, length_ms: int, count: int) -> list[str]:
    """ReadyFile.window_start of `count` consecutive windows from the one starting at `first_ms`."""
    return [datetime.fromtimestamp((first_ms + length_ms * w) / 1000, UTC).isoformat() for w in range(count)]


async def run_until_settled(settings: Settings, total: int, timeout: float = 120, *, settle: bool = False) -> None:
    """Validator and batcher as tasks in this loop until all `total` events are placed (and, with
    `settle`, then for a settle period in which nothing more may arrive)."""
    validator = TaskWorker(run_validator, settings).start()
    batcher = TaskWorker(run_batcher, settings).start()
    try:
        await wait_for(partial(settled, settings, total), timeout, "all events in files or rejected")
        if settle:
            await no_more_output(settings)
    finally:
        await validator.close()
        await batcher.close()


def check_exactly_once(
    files: list[ReadyFile], rejected: list[tuple[int, int]], coords: list[tuple[int, int]], invalid: frozenset[int]
) -> None:
    in_files = [tuple(o) for f in files for o in f.origins]
    counts = Counter(in_files + rejected)
    duplicates = [o for o, n in counts.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} origins in more than one place"
    assert set(counts) == set(coords), "some events are in no place (lost) or unknown origins appeared"
    assert set(rejected) == {coords[i] for i in invalid}
    names = [f.file_name for f in files]
    assert len(names) == len(set(names)), "a file name was reused"
    # The batcher's own side of it: every valid record it consumed is in one file's manifest, once.
    consumed = Counter((r.partition, o) for f in files for r in f.valid_ranges for o in range(r.first, r.last + 1))
    assert all(partition >= 0 for partition, _ in consumed), "a file's valid ranges do not name their partition"
    assert max(consumed.values(), default=1) == 1, "a valid record is in two files' manifests"
    assert all(sum(r.last - r.first + 1 for r in f.valid_ranges) == f.rows for f in files)
    permissions = default_permissions()
    for f in files:
        parsed = read_file(
            f.content,
            vaccine_type=f.vaccine_type,
            sender_ods=f.sender_ods,
            validator=partial(validate_record, permissions=permissions),
        )
        assert not parsed.failures, f"{f.file_name} has rows that fail validation"
        assert len(parsed.rows) == f.rows == len(f.origins)


async def test_validator_and_batcher_exactly_once(kafka_settings: Settings, tmp_path: Path) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path)
    await ensure(settings)
    load = generate(4000, invalid_fraction=0.05, seed=1)
    coords = await produce(settings, load.payloads, load.keys)
    await run_until_settled(settings, len(coords), settle=True)
    await check_placed(settings, load.payloads, load.invalid, coords)
    files, _ = await outcome(settings)
    assert any(f.part > 0 for f in files), "row cap should have split some window into parts"
    archived = list((tmp_path / "archive").rglob("*.csv"))
    assert len(archived) == len(files)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in archived)


async def test_sigkill_validator_and_batcher(kafka_settings: Settings, tmp_path: Path) -> None:
    """Three SIGKILLs of each worker at random instants while 20,000 events arrive (production is
    paced to outlast the kills); at each kill, events produced and not yet placed are counted."""
    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=3, max_rows_per_file=1000)
    await ensure(settings)
    load = generate(20000, invalid_fraction=0.05, seed=2)
    sent_load = SentLoad(load.payloads, load.invalid)
    env = settings_env(settings)
    workers = {
        name: ProcessWorker(name, env, tmp_path / f"{name}.log").start() for name in ("validator", "batcher")
    }
    schedule = kill_schedule(workers, random.Random(7), 1.0, 4.0)
    sent: list[tuple[int, int]] = []
    seconds = sum(pause for _, pause in schedule) + 2 * len(schedule)  # each kill's measurement takes a moment too
    faults_done = asyncio.Event()
    produce_task = asyncio.create_task(
        produce_paced(settings, load.payloads, load.keys, seconds=seconds, sent=sent, hold_last=faults_done)
    )
    try:
        faults = await kill_and_restart(workers, schedule, sent, partial(measured, settings=settings, load=sent_load))
        faults_done.set()
        coords = await produce_task
        await all_placed(settings, len(coords), 240)
    finally:
        faults_done.set()
        for worker in workers.values():
            worker.terminate()
    await check_after_faults("kill-test", faults, settings, load, coords)


async def check_hand_over_midstream(
    kafka_settings: Settings,
    tmp_path: Path,
    moving: WorkerMain,
    staying: WorkerMain,
    *,
    events: int,
    seed: int,
    max_rows_per_file: int,
    join_after: float,
    leave_after: float,
) -> None:
    """While events flow, a second `moving` worker joins its group, then the first one leaves
    (its partitions move twice); `staying` runs throughout. Then every event is in exactly one
    place."""
    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=3, max_rows_per_file=max_rows_per_file)
    await ensure(settings)
    load = generate(events, invalid_fraction=0.05, seed=seed)
    sent_load = SentLoad(load.payloads, load.invalid)
    other = TaskWorker(staying, settings).start()
    first = TaskWorker(moving, settings).start()
    second: TaskWorker | None = None
    sent: list[tuple[int, int]] = []
    faults: list[Fault] = []
    faults_done = asyncio.Event()
    try:
        # Paced to outlast both hand-overs (as fast as possible, the load was all placed before the leave).
        seconds = join_after + leave_after + 4
        produce_task = asyncio.create_task(
            produce_paced(settings, load.payloads, load.keys, seconds=seconds, sent=sent, hold_last=faults_done)
        )
        started = time.monotonic()
        await asyncio.sleep(join_after)
        produced, at = len(sent), time.monotonic() - started
        second = TaskWorker(moving, settings).start()
        faults.append(await measured("second joins", at, produced, settings, sent_load))
        await asyncio.sleep(leave_after)
        produced, at = len(sent), time.monotonic() - started
        await first.close()
        faults.append(await measured("first leaves", at, produced, settings, sent_load))
        faults_done.set()
        coords = await produce_task
        await all_placed(settings, len(coords), 180)
    finally:
        faults_done.set()
        await other.close()
        await first.close()
        if second is not None:
            await second.close()
    await check_after_faults("hand-over", faults, settings, load, coords)


async def test_two_batchers_rebalance_midstream(kafka_settings: Settings, tmp_path: Path) -> None:
    """A second batcher joins the group mid-stream, then the first leaves: partitions move twice."""
    await check_hand_over_midstream(
        kafka_settings, tmp_path, run_batcher, run_validator,
        events=12000, seed=3, max_rows_per_file=200, join_after=3, leave_after=6,
    )  # fmt: skip


async def test_two_validators_rebalance_midstream(kafka_settings: Settings, tmp_path: Path) -> None:
    """A second validator joins mid-stream, then the first leaves, while batches are in hand.

    Each validator keeps a batch per partition in flight (validated, committing) while it polls
    the others; partitions move twice under that. (Revocation waits for those batches, but a
    batch cut off would only abort its transaction: with the wait removed this still passed. A
    loop that let one partition have two batches in flight failed here and in the test above.)
    """
    await check_hand_over_midstream(
        kafka_settings, tmp_path, run_validator, run_batcher,
        events=15000, seed=4, max_rows_per_file=500, join_after=2, leave_after=4,
    )  # fmt: skip


async def test_broker_restart_midstream(kafka: KafkaHandle, kafka_settings: Settings, tmp_path: Path) -> None:
    """The broker goes down and comes back while events flow through worker processes."""
    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=3, max_rows_per_file=500)
    await ensure(settings)
    load = generate(10000, invalid_fraction=0.05, seed=4)
    sent_load = SentLoad(load.payloads, load.invalid)
    coords = await produce(settings, load.payloads[:5000], load.keys[:5000])
    env = settings_env(settings)
    workers = [ProcessWorker(name, env, tmp_path / f"{name}.log").start() for name in ("validator", "batcher")]
    try:
        started = time.monotonic()
        # The outage starts once the validator's first transaction is in (not after a fixed sleep).
        await wait_for(partial(validated_some, settings), 60, "the validator's first output")
        at = time.monotonic() - started
        # Measured just before the broker stops: read after it, the restart's seconds let the
        # batcher's window close and every event is placed by then.
        fault = await measured("broker restart", at, len(coords), settings, sent_load)
        await asyncio.to_thread(kafka.restart)
        coords += await produce(settings, load.payloads[5000:], load.keys[5000:])
        await all_placed(settings, len(coords), 240)
    finally:
        for worker in workers:
            worker.terminate()
    await check_after_faults("broker-restart", [fault], settings, load, coords)


async def validated_some(settings: Settings) -> bool:
    ends = [*(await end_offsets(settings, VALID.name)).values(), *(await end_offsets(settings, REJECTED.name)).values()]
    return sum(ends) > 0


async def test_poison_input_never_stalls_a_partition(kafka_settings: Settings, tmp_path: Path) -> None:
    """Garbage on the raw topic (not JSON, wrong types, huge, control characters, delimiter and quote
    characters) goes to the rejected topic; valid events behind it on the same partition still
    reach files, and values with | " ¬ and quotes come out intact in the file."""
    settings = pipeline_settings(kafka_settings, tmp_path)
    await ensure(settings)
    good = generate(200, invalid_fraction=0.0, seed=8)
    tricky = orjson.loads(good.payloads[0])
    tricky["record"]["VACCINE_MANUFACTURER"] = 'Maker | "Quoted" ¬ Ltd'
    poison = [
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b'{"vaccine_type": 1}',
        b"[1, 2, 3]",
        b'{"vaccine_type": "FLU", "sender_ods": "YGM41", "source_system": "x", "record": {"NHS_NUMBER": "12\\n34"}}',
        b"{" + b'"a":' * 10 + b"}",
        b"x" * 900_000,
    ]
    payloads = [*poison, orjson.dumps(tricky), *good.payloads[1:]]
    keys = [b"FLU|YGM41"] * len(payloads)  # one partition: poison first, valid events behind it
    coords = await produce(settings, payloads, keys)
    await run_until_settled(settings, len(coords), settle=True)
    await check_placed(settings, payloads, frozenset(range(len(poison))), coords)
    files, _ = await outcome(settings)
    makers = {
        row.record.VACCINE_MANUFACTURER
        for f in files
        for row in read_file(f.content, vaccine_type=f.vaccine_type, sender_ods=f.sender_ods).rows
        if row.record is not None
    }
    assert 'Maker | "Quoted" ¬ Ltd' in makers


async def test_batcher_reads_rows_and_version_3_records_and_dead_letters_anything_else(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """After an upgrade the valid topic may still hold ValidEvent JSON (catalogue v3) ahead of rows
    (v4, docs/decisions/0011): both end in one file, with the same bytes as a file rendered from the
    records; a record that is neither goes to the rejected topic, not lost and not in a file."""

    from schemas.batchfile import render_file, render_row
    from schemas.event import ValidEvent
    from schemas.validate import validate_event
    from topics.catalogue import VALID
    from vaxflow.dev.samples import make_valid_record

    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=2, grace_seconds=0)
    await ensure(settings)
    permissions = default_permissions()
    events = []
    for n in range(2):
        raw = msgspec.json.encode(
            {"vaccine_type": "FLU", "sender_ods": "YGM41", "source_system": "test",
             "record": make_valid_record(random.Random(n), "FLU")}
        )
        event = validate_event(raw, permissions=permissions)
        assert isinstance(event, ValidEvent), event
        events.append(event)
    key = b"FLU|YGM41"
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        valid = settings.topic(VALID.name)
        # one ingestion time for all three: two sends must not straddle a window boundary (or a retry)
        stamp = int(time.time() * 1000)
        await producer.send_and_wait(valid, msgspec.json.encode(events[0]), key=key, partition=0, timestamp_ms=stamp,
                                     headers=[(h.ORIGIN, b"0:0")])
        await producer.send_and_wait(valid, render_row(events[1].record), key=key, partition=0, timestamp_ms=stamp,
                                     headers=[(h.ORIGIN, b"0:1")])
        await producer.send_and_wait(valid, b"neither a row nor JSON", key=key, partition=0, timestamp_ms=stamp,
                                     headers=[(h.ORIGIN, b"0:2")])
    finally:
        await producer.stop()

    await run_batcher_until_settled(settings, 3)
    files, rejected = await outcome(settings)
    assert [f.origins for f in files] == [[(0, 0), (0, 1)]]
    assert files[0].content == render_file([e.record for e in events])
    assert rejected == [(0, 2)]


async def test_a_backlog_is_cut_into_files_by_window_not_by_poll(kafka_settings: Settings, tmp_path: Path) -> None:
    """Events read an hour after their windows ended (a backlog, as after an outage) still make one
    file per window: the wall clock closes windows only once the partition is read to its end, so
    a window whose events span many polls is not cut at each poll's edge (workers.batcher.caught_up)."""

    from schemas.batchfile import render_row
    from schemas.event import ValidEvent
    from schemas.validate import validate_event
    from topics.catalogue import VALID
    from vaxflow.dev.samples import make_valid_record

    settings = pipeline_settings(
        kafka_settings, tmp_path, window_seconds=2, grace_seconds=0, max_rows_per_file=10_000, batcher_max_records=25
    )
    await ensure(settings)
    record = make_valid_record(random.Random(5), "FLU")
    raw = msgspec.json.encode({"vaccine_type": "FLU", "sender_ods": "YGM41", "source_system": "test", "record": record})
    event = validate_event(raw, permissions=default_permissions())
    assert isinstance(event, ValidEvent), event
    # distinct events (one UNIQUE_ID each): the batcher refuses repeats of one event
    rows = [render_row(msgspec.structs.replace(event.record, UNIQUE_ID=f"backlog-{i}")) for i in range(300)]
    first_window_ms = (int(time.time() * 1000) - 3_600_000) // 2000 * 2000
    stamps = [first_window_ms + i * 20 for i in range(300)]  # 100 events in each of three 2 s windows
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.topic(VALID.name),
                rows[i],
                key=b"FLU|YGM41",
                partition=0,
                timestamp_ms=stamp,
                headers=[(h.ORIGIN, f"0:{i}".encode())],
            )
            for i, stamp in enumerate(stamps)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    await run_batcher_until_settled(settings, 300)
    files, _ = await outcome(settings)
    starts = window_starts(first_window_ms, 2000, 3)
    assert sorted((f.window_start, f.rows) for f in files) == [(start, 100) for start in starts]


async def test_a_raw_backlog_is_cut_by_window_while_the_validator_works_through_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """The backlog sits upstream (raw) and the validator feeds it to the batcher in small
    transactions: the batcher keeps reaching the end of the valid topic, but records keep coming,
    so its windows close on stream time and each window still makes one file (Batcher.clock_for)."""
    from vaxflow.dev.samples import make_valid_record

    settings = pipeline_settings(
        kafka_settings, tmp_path, window_seconds=2, grace_seconds=0, max_rows_per_file=10_000, validator_max_batch=20
    )
    await ensure(settings)
    rng = random.Random(8)
    envelope = {"vaccine_type": "FLU", "sender_ods": "YGM41", "source_system": "test"}
    payloads = [msgspec.json.encode({**envelope, "record": make_valid_record(rng, "FLU")}) for _ in range(300)]
    first_window_ms = (int(time.time() * 1000) - 3_600_000) // 2000 * 2000
    stamps = [first_window_ms + i * 20 for i in range(300)]  # 100 events in each of three 2 s windows
    await produce(settings, payloads, [b"FLU|YGM41"] * 300, timestamps_ms=stamps)
    await run_until_settled(settings, 300, timeout=90)
    files, rejected = await outcome(settings)
    assert rejected == []
    starts = window_starts(first_window_ms, 2000, 3)
    assert sorted((f.window_start, f.rows) for f in files) == [(start, 100) for start in starts]
