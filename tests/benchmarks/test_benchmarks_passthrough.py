"""The pass-through floor must move every record once, or the floor it reports is too low.

The benchmark only waits for both groups to commit to their topics' ends; a relay that dropped
or repeated records would still finish, faster. So here, against the real broker: every raw
record reaches the scratch topic exactly once (cut to a row's size), and both groups commit.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from benchmarks import passthrough
from topics.catalogue import CATALOGUE, RAW, VALID
from topics.ensure import ensure_topics
from vaxflow.dev.loadgen import generate, produce
from workers.base.kafka import admin_client
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end

pytestmark = pytest.mark.integration


async def _committed(settings: Settings, group: str, topic: str, partitions: int) -> int:
    admin = admin_client(settings)
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        offsets = await admin.list_consumer_group_offsets(settings.group(group), partitions=tps)
    except KafkaError:  # a fresh broker: the group's coordinator is not there yet
        return 0
    else:
        return sum(max(meta.offset, 0) for meta in offsets.values())
    finally:
        await admin.close()


async def test_relay_and_drain_move_every_record_once(kafka_settings: Settings) -> None:
    scratch = replace(VALID, name=passthrough.SCRATCH)
    admin = admin_client(kafka_settings)
    await admin.start()
    await ensure_topics(admin, namespace=kafka_settings.topic_namespace, specs=[*CATALOGUE, scratch])
    await admin.close()
    load = generate(3000, invalid_fraction=0.05, seed=3)
    await produce(kafka_settings, load.payloads, load.keys)

    stop = asyncio.Event()
    stages = [
        asyncio.create_task(passthrough.relay(kafka_settings, stop)),
        asyncio.create_task(passthrough.drain(kafka_settings, stop)),
    ]
    raw, target = kafka_settings.topic(RAW.name), kafka_settings.topic(passthrough.SCRATCH)
    try:
        for _ in range(120):
            relayed = await _committed(kafka_settings, passthrough.RELAY_GROUP, raw, RAW.partitions)
            drained = await _committed(kafka_settings, passthrough.DRAIN_GROUP, target, scratch.partitions)
            if relayed == len(load.payloads) and drained >= len(load.payloads):
                break
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*stages)

    assert relayed == len(load.payloads)
    copied = await read_to_end(kafka_settings, target)
    assert sorted(r.value or b"" for r in copied) == sorted(p[: passthrough.ROW_BYTES] for p in load.payloads)
    # The drain's offsets include each partition's transaction markers, so at least one per record.
    assert drained >= len(copied)
