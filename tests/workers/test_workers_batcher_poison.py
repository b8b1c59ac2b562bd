"""Issue 16: a valid-topic record the batcher cannot place never stops it.

A v3 record (a ValidEvent as JSON, still in the topic after an upgrade) decodes, but an envelope
that is not a canonical batch key (`flu_x`) used to fail only when its window's file was named,
inside `emit`: the transaction aborted, the worker exited, re-read the same record after the restart
and failed again, for ever, and every good record behind it waited. Judged from the topics: the
poison is on the rejected topic with its reason, the good row behind it is in a file, and the
group's committed offset is past both (the poison counts as done).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from aiokafka import TopicPartition
from support.topics import ensure
from test_workers_batcher_repeats import produce, records
from test_workers_pipeline import outcome, pipeline_settings, run_batcher_until_settled

from schemas.batchfile import render_row
from schemas.event import ValidEvent
from topics import headers as h
from topics.catalogue import REJECTED, VALID
from workers.base.kafka import group_committer
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end

pytestmark = pytest.mark.integration


async def committed_offset(settings: Settings, partition: int) -> int | None:
    consumer = group_committer(settings, settings.group(settings.batcher_group))
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(settings.topic(VALID.name), partition))
    finally:
        await consumer.stop()


async def test_a_v3_record_with_a_bad_envelope_is_rejected_and_the_next_row_goes_into_a_file(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=2, grace_seconds=0)
    await ensure(settings)
    good, legacy = records(2)
    bad_envelope = msgspec.json.encode(
        ValidEvent(vaccine_type="flu_x", sender_ods="YGM41", source_system="v3", record=legacy)
    )
    not_an_event = b'{"vaccine_type": 3}'
    not_a_row = b'"quoted, with the right key, but no row"'  # once an IndexError in the identity memory
    poison = [bad_envelope, not_an_event, not_a_row]
    await produce(settings, [*((p, f"0:{i}".encode()) for i, p in enumerate(poison)), (render_row(good), b"0:3")])

    await run_batcher_until_settled(settings, 4, timeout=30)

    files, rejected_origins = await outcome(settings)
    assert [f.origins for f in files] == [[(0, 3)]]
    assert sorted(rejected_origins) == [(0, 0), (0, 1), (0, 2)]
    rejected = {r.value: r.headers for r in await read_to_end(settings, settings.topic(REJECTED.name))}
    assert set(rejected) == set(poison)  # the original bytes
    for headers in rejected.values():
        assert h.header(headers, h.DLQ_STAGE) == b"batch"
        assert h.header(headers, h.DLQ_TOPIC) == settings.topic(VALID.name).encode()
        reasons = msgspec.json.decode(h.header(headers, h.DLQ_REASONS) or b"[]")
        assert [r["rule"] for r in reasons] == ["valid.undecodable"]
    assert b"batch key" in (h.header(rejected[bad_envelope], h.DLQ_EXC_MESSAGE) or b"")
    assert await committed_offset(settings, 0) == 4
