"""Reading a batcher partition's remembered identities back from its changelog topic.

The changelog (vaccination.batcher.identities, compacted, partition-aligned with the valid topic)
holds one record per identity, written in the same transaction as the batcher state that covers
it, so what is read back here is exactly what the committed offsets already account for. Records
older than the horizon are dropped by the topic's own retention (cleanup.policy compact,delete)
and skipped here too.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import TopicPartition

from workers.base.kafka import reader
from workers.base.settings import KafkaSettings
from workers.batcher.identities import Entry, IdentityTable, hour_of

log = logging.getLogger("vaxflow.batcher")

RESTORE_TIMEOUT_SECONDS = 900.0


async def restore_identities(settings: KafkaSettings, topic: str, partition: int, *, horizon_ms: int) -> IdentityTable:
    """The identities of valid partition `partition` first seen within the horizon."""
    consumer = reader(settings, fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    started = time.monotonic()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        table = IdentityTable(expected=end - begin)
        oldest = hour_of(int(time.time() * 1000) - horizon_ms)
        consumer.seek(tp, begin)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTORE_TIMEOUT_SECONDS
        while await consumer.position(tp) < end:
            if loop.time() > deadline:
                raise TimeoutError(f"could not read the identities of valid partition {partition}")
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)
            for record in batch.get(tp, []):
                if record.offset >= end or record.key is None:
                    continue
                if record.value is None:
                    table.discard(int.from_bytes(record.key, "big"))
                    continue
                entry = Entry.from_record(record.key, record.value)
                if entry.hour >= oldest:
                    table.put_words(entry.key, entry.digest, entry.origin, entry.seen)
        table.shrink()
        log.info(
            "identities restored",
            extra={"partition": partition, "identities": len(table), "records": end - begin,
                   "seconds": round(time.monotonic() - started, 3)},
        )
        return table
    finally:
        await consumer.stop()


async def restore_all(
    settings: KafkaSettings, topic: str, partitions: list[TopicPartition], *, horizon_ms: int
) -> dict[TopicPartition, IdentityTable]:
    tables = await asyncio.gather(
        *(restore_identities(settings, topic, tp.partition, horizon_ms=horizon_ms) for tp in partitions)
    )
    return dict(zip(partitions, tables, strict=True))
