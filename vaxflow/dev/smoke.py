"""The smallest end-to-end proof that the local stack works: one event in, the same event out."""

from __future__ import annotations

import time
import uuid

import orjson
from aiokafka import TopicPartition

from topics.catalogue import RAW
from workers.base.kafka import committed_consumer, idempotent_producer
from workers.base.settings import Settings


async def smoke(settings: Settings) -> dict[str, object]:
    """Produce one event to the raw topic and read it back by offset with a fresh consumer."""
    topic = settings.topic(RAW.name)
    marker = uuid.uuid4().hex
    event = {"vaccine_type": "FLU", "sender_ods": "YGM41", "source_system": f"smoke-{marker}", "record": {}}
    started = time.monotonic()
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, orjson.dumps(event), key=b"FLU|YGM41")
    finally:
        await producer.stop()
    consumer = committed_consumer(settings, group_id=f"vaxflow-smoke-{marker}")
    await consumer.start()
    try:
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        batch = await consumer.getmany(tp, timeout_ms=10000, max_records=1)
        records = batch.get(tp, [])
        if not records or orjson.loads(records[0].value or b"{}") != event:
            raise RuntimeError("smoke event was not read back")
    finally:
        await consumer.stop()
    return {
        "topic": topic,
        "partition": meta.partition,
        "offset": meta.offset,
        "round_trip_ms": round((time.monotonic() - started) * 1000, 1),
    }
