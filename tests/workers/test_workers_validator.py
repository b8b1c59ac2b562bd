"""The validator alone against the real broker: where each raw event goes, and exactly once under SIGKILL.

A valid event becomes one row on vaccination.events.valid, keyed TYPE|ODS, with the raw record's
origin header and timestamp; an invalid one (or bytes that are no event at all) goes to
vaccination.events.rejected unchanged, with its reasons and its raw coordinates. Killing the
validator mid-batch and restarting it (one transactional producer per raw partition,
workers.base.partition_producers) leaves every event on exactly one of the two topics, once.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path

import orjson
import pytest
from pipeline_support import ProcessWorker, produce_paced, read_all, settings_env
from support.placement import Fault, SentLoad, assert_mid_stream, nothing_more_arrives
from support.topics import ensure
from support.workers import running, wait_for

from schemas.batchfile import render_row
from schemas.columns import COLUMNS
from schemas.event import ValidEvent
from schemas.permissions import default_permissions
from schemas.pipeline import encode_origin
from schemas.validate import validate_event
from topics import headers as h
from topics.catalogue import RAW, REJECTED, VALID
from vaxflow.dev.loadgen import generate, produce
from workers.base.settings import Settings
from workers.validator.worker import run as run_validator

pytestmark = pytest.mark.integration

POISON = [b"not json at all", b"\xff\xfe\x00garbage", b'{"vaccine_type": 1}', b"[1, 2, 3]"]
# The header a batch file starts with, so that valid-topic rows can be read as one file's rows.
HEADER = "|".join(f'"{c}"' for c in COLUMNS).encode()


async def output_count(settings: Settings) -> int:
    valid = await read_all(settings, settings.topic(VALID.name))
    rejected = await read_all(settings, settings.topic(REJECTED.name))
    return len(valid) + len(rejected)


async def all_out(settings: Settings, total: int) -> bool:
    return await output_count(settings) >= total


async def more_out(settings: Settings, than: int) -> bool:
    return await output_count(settings) > than


async def placement_of(settings: Settings, load: SentLoad) -> tuple[bytes, list[bytes]]:
    """The valid topic's rows as one file's bytes, and the rejected topic's values."""
    rows = [r.value or b"" for r in await read_all(settings, settings.topic(VALID.name))]
    rejected = [r.value or b"" for r in await read_all(settings, settings.topic(REJECTED.name))]
    return b"\r\n".join([HEADER, *rows]) + b"\r\n", rejected


async def test_valid_events_go_to_the_valid_topic_and_invalid_ones_to_the_rejected_topic(
    kafka_settings: Settings,
) -> None:
    """Each valid event: one row on the valid topic, its canonical file row, keyed TYPE|ODS (so
    one key, one partition), with the raw record's origin and timestamp. Each invalid event and
    each piece of poison: on the rejected topic with its original bytes, its reasons, its origin
    and the raw coordinates it came from."""
    settings = kafka_settings
    await ensure(settings)
    load = generate(400, invalid_fraction=0.1, seed=21)
    payloads = [*POISON, *load.payloads]
    invalid = frozenset(range(len(POISON))) | {len(POISON) + i for i in load.invalid}
    coords = await produce(settings, payloads, [*([b"x"] * len(POISON)), *load.keys])
    raw_stamps = {(r.partition, r.offset): r.timestamp for r in await read_all(settings, settings.topic(RAW.name))}
    async with running(run_validator, settings):
        await wait_for(partial(all_out, settings, len(payloads)), 60, "every event validated")
        await nothing_more_arrives(partial(output_count, settings), 5.0, "valid or rejected records")

    sent = SentLoad(payloads, invalid)
    file, rejected_values = await placement_of(settings, sent)
    placement = sent.check({"valid topic": file}, rejected_values, where="valid-topic")
    print(f"\n[validator] {placement.summary()}")

    permissions = default_permissions()
    expected = {i: validate_event(payloads[i], permissions=permissions) for i in range(len(payloads))}
    valid_records = await read_all(settings, settings.topic(VALID.name))
    partitions_of_key: dict[bytes, set[int]] = {}
    for rec in valid_records:
        (i,) = sent.rows_of([HEADER + b"\r\n" + (rec.value or b"")])
        assert i is not None
        event = expected[i]
        assert isinstance(event, ValidEvent), i
        assert rec.key == f"{event.vaccine_type}|{event.sender_ods}".encode()
        assert rec.value == render_row(event.record)
        assert h.header(rec.headers, h.ORIGIN) == encode_origin(coords[i])
        assert rec.timestamp == raw_stamps[coords[i]]
        partitions_of_key.setdefault(rec.key, set()).add(rec.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values()), "one key on two partitions"
    assert len(partitions_of_key) > 5

    rejected_records = await read_all(settings, settings.topic(REJECTED.name))
    for rec in rejected_records:
        i = sent.by_bytes[rec.value or b""]
        reasons = expected[i]
        assert isinstance(reasons, list), i
        assert rec.value == payloads[i]
        partition, offset = coords[i]
        assert h.header(rec.headers, h.ORIGIN) == encode_origin(coords[i])
        assert h.header(rec.headers, h.DLQ_TOPIC) == settings.topic(RAW.name).encode()
        assert (h.header(rec.headers, h.DLQ_PARTITION), h.header(rec.headers, h.DLQ_OFFSET)) == (
            str(partition).encode(), str(offset).encode())
        assert h.header(rec.headers, h.DLQ_STAGE) == b"validate"
        listed = orjson.loads(h.header(rec.headers, h.DLQ_REASONS) or b"[]")
        assert listed, f"event {i} rejected without reasons"
        assert {r["rule"] for r in listed} == {r.rule for r in reasons}
        assert all(r["message"] for r in listed)


async def test_sigkill_mid_batch_leaves_every_event_on_one_topic_once(kafka_settings: Settings, tmp_path: Path) -> None:
    """The validator as a process, SIGKILLed three times and restarted. Each kill waits until the
    previous instance's successor is at work (its output grew) and a slice of events has just
    landed on the raw topic, so the kill meets a validator with events in hand; the events produced
    and not yet validated are counted at each. Then every event is on the valid or the rejected
    topic exactly once: its transactions, and the fencing of its per-partition producers, leave no
    duplicate and no gap."""
    settings = kafka_settings.model_copy(update={"validator_max_batch": 50})
    await ensure(settings)
    load = generate(12_000, invalid_fraction=0.05, seed=31)
    sent_load = SentLoad(load.payloads, load.invalid)
    validator = ProcessWorker("validator", settings_env(settings), tmp_path / "validator.log").start()
    sent: list[tuple[int, int]] = []
    faults: list[Fault] = []
    faults_done = asyncio.Event()
    try:
        produce_task = asyncio.create_task(
            produce_paced(settings, load.payloads, load.keys, seconds=40.0, slices=50, sent=sent, hold_last=faults_done)
        )
        started, out_at_kill = time.monotonic(), 0
        for _ in range(3):
            await wait_for(partial(more_out, settings, out_at_kill), 60, "the (restarted) validator at work")
            before = len(sent)
            await wait_for(lambda before=before: len(sent) > before, 10, "the next slice on the raw topic",
                           interval=0.005)
            produced = len(sent)
            validator.kill()
            # Read with the validator dead: what its committed transactions had placed at the kill.
            file, rejected = await placement_of(settings, sent_load)
            placed = sent_load.placed([file], rejected)
            out_at_kill = await output_count(settings)
            faults.append(Fault("kill validator", time.monotonic() - started, produced,
                                len(set(range(produced)) - placed)))
            validator.start()
        faults_done.set()
        coords = await produce_task
        await wait_for(partial(all_out, settings, len(coords)), 120, "every event validated")
        await nothing_more_arrives(partial(output_count, settings), 5.0, "valid or rejected records")
    finally:
        faults_done.set()
        validator.terminate()
    print(f"\n[validator-kill] {'; '.join(map(str, faults))}")
    assert_mid_stream(faults, len(load.payloads))
    file, rejected = await placement_of(settings, sent_load)
    placement = sent_load.check({"valid topic": file}, rejected, where="valid-topic")
    print(f"[validator-kill] {placement.summary()}")
