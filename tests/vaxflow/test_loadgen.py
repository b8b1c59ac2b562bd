"""The load generator's producer against the real broker: ingestion times as given, or now."""

from __future__ import annotations

import time

import pytest

from topics.catalogue import RAW
from topics.ensure import ensure_topics
from vaxflow.dev.loadgen import generate, produce
from workers.base.kafka import admin
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end

pytestmark = pytest.mark.integration


async def _raw_topic(settings: Settings) -> None:
    async with admin(settings) as client:
        await ensure_topics(client, namespace=settings.topic_namespace, specs=[RAW])


async def test_records_carry_the_given_ingestion_times(kafka_settings: Settings) -> None:
    await _raw_topic(kafka_settings)
    load = generate(40, seed=3)
    stamps = [1_700_000_000_000 + 15_000 * i for i in range(40)]  # ten minutes of traffic, in 2023
    coords = await produce(kafka_settings, load.payloads, load.keys, timestamps_ms=stamps)
    records = {(r.partition, r.offset): r for r in await read_to_end(kafka_settings, kafka_settings.topic(RAW.name))}
    assert [records[c].timestamp for c in coords] == stamps
    assert [records[c].value for c in coords] == load.payloads


async def test_without_times_records_are_stamped_now(kafka_settings: Settings) -> None:
    await _raw_topic(kafka_settings)
    load = generate(5, seed=4)
    before = int(time.time() * 1000)
    await produce(kafka_settings, load.payloads, load.keys)
    records = await read_to_end(kafka_settings, kafka_settings.topic(RAW.name))
    assert len(records) == 5
    assert all(before - 1000 <= r.timestamp <= int(time.time() * 1000) + 1000 for r in records)
