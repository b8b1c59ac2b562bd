"""The batcher's identity memory against the real broker: repeats are refused across a restart
(the memory comes back from the changelog topic), a replay is not mistaken for a repeat, and a
NEW with different content is refused as a conflict while an UPDATE goes through."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import msgspec
import pytest
from aiokafka import TopicPartition
from pipeline_support import TaskWorker
from support.topics import ensure
from test_workers_pipeline import outcome, pipeline_settings, run_batcher_until_settled

from schemas.batchfile import render_row
from schemas.permissions import default_permissions
from schemas.record import Record
from schemas.validate import validate_record
from topics import headers as h
from topics.catalogue import REJECTED, VALID
from vaxflow.dev.samples import make_valid_record
from workers.base.kafka import group_committer, idempotent_producer
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end
from workers.batcher.identities import CONFLICT, DUPLICATE
from workers.batcher.worker import run as run_batcher

pytestmark = pytest.mark.integration

KEY = b"FLU|YGM41"


def records(n: int) -> list[Record]:
    out = []
    for i in range(n):
        record = make_valid_record(random.Random(i), "FLU")
        result = validate_record("FLU", "YGM41", record, permissions=default_permissions())
        assert isinstance(result, Record), result
        out.append(msgspec.structs.replace(result, UNIQUE_ID=f"repeat-test-{i}"))
    return out


async def produce(settings: Settings, rows: list[tuple[bytes, bytes]]) -> None:
    """(row, origin) pairs to valid partition 0, as the validator writes them."""
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        stamp = int(time.time() * 1000)
        for row, origin in rows:
            await producer.send_and_wait(settings.topic(VALID.name), row, key=KEY, partition=0, timestamp_ms=stamp,
                                         headers=[(h.ORIGIN, origin)])  # fmt: skip
    finally:
        await producer.stop()


async def rejected_by_rule(settings: Settings) -> dict[str, list[tuple[bytes, bytes]]]:
    """rule -> [(origin, first origin)] of the batcher's refusals."""
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    for r in await read_to_end(settings, settings.topic(REJECTED.name)):
        reasons = msgspec.json.decode(h.header(r.headers, h.DLQ_REASONS) or b"[]")
        for reason in reasons:
            out.setdefault(reason["rule"], []).append(
                (h.header(r.headers, h.ORIGIN) or b"", h.header(r.headers, h.FIRST_ORIGIN) or b"")
            )
    return out


async def rewind_group(settings: Settings) -> None:
    """What `vaxflow replay --to-offset 0` does to the batcher's group (the batcher is stopped)."""
    consumer = group_committer(settings, settings.group(settings.batcher_group))
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(VALID.name), p) for p in range(VALID.partitions)]
        consumer.assign(tps)
        await consumer.commit({tp: 0 for tp in tps})
    finally:
        await consumer.stop()


async def test_repeats_are_refused_after_a_restart_and_a_replay_is_not_a_repeat(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=2, grace_seconds=0, max_rows_per_file=1000)
    await ensure(settings)
    first = records(30)
    await produce(settings, [(render_row(r), f"0:{i}".encode()) for i, r in enumerate(first)])
    await run_batcher_until_settled(settings, 30)  # a first batcher: 30 rows in files, then stopped

    # after the restart: 5 exact repeats, a NEW of a known identity with other content, an UPDATE
    conflicting = msgspec.structs.replace(first[7], DOSE_AMOUNT="0.25")
    update = msgspec.structs.replace(first[8], ACTION_FLAG="update", DOSE_AMOUNT="0.25")
    second = [(render_row(first[i]), f"1:{i}".encode()) for i in range(5)]
    second += [(render_row(conflicting), b"1:100"), (render_row(update), b"1:101")]
    await produce(settings, second)
    await run_batcher_until_settled(settings, 30 + len(second))

    files, _ = await outcome(settings)
    refused = await rejected_by_rule(settings)
    assert sum(f.rows for f in files) == 31  # the 30 and the update
    assert sorted(refused[DUPLICATE]) == sorted((f"1:{i}".encode(), f"0:{i}".encode()) for i in range(5))
    assert refused[CONFLICT] == [(b"1:100", b"0:7")]
    in_files = [o for f in files for o in f.origins]
    assert len(in_files) == len(set(in_files)) == 31
    assert (1, 101) in in_files

    # a replay from offset 0: the replay guard skips what is placed; nothing is refused as a repeat
    await rewind_group(settings)
    batcher = TaskWorker(run_batcher, settings).start()
    try:  # long enough to re-read everything and close a window: a wrong file or refusal would be out
        await asyncio.sleep(8)
    finally:
        await batcher.close()
    files_after, _ = await outcome(settings)
    assert sorted(f.file_name for f in files_after) == sorted(f.file_name for f in files)  # several partitions
    assert await rejected_by_rule(settings) == refused
