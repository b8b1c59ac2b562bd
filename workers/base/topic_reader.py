"""Read a whole topic (as of now) with read_committed: for operator tools, the demo and tests."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from workers.base.kafka import offsets_probe, partitions_of, reader
from workers.base.settings import Settings


async def _high_watermarks(settings: Settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets as a read_uncommitted client sees them (every written record, markers or not)."""
    probe = offsets_probe(settings)
    await probe.start()
    try:
        return dict(await probe.end_offsets(tps))
    finally:
        await probe.stop()


async def settled_ends(
    consumer: AIOKafkaConsumer, settings: Settings, tps: list[TopicPartition], settle: float
) -> dict[TopicPartition, int]:
    """read_committed end offsets that include every transaction committed before the call.

    A transaction's commit returns to its producer once the coordinator has logged it; the
    markers reach the partitions a moment later, and until then the last stable offset (what a
    read_committed client gets as end offset) stays below the committed records. A tool that
    commits and then reads (redrive, then its ledger) would miss its own write, so while the
    stable offset is below the high watermark it is asked again for up to `settle` seconds. A
    transaction still open when the call began is not waited for beyond that.
    """
    high = await _high_watermarks(settings, tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while True:
        stable = await consumer.end_offsets(tps)
        if all(stable[tp] >= high[tp] for tp in tps) or loop.time() >= deadline:
            return {tp: min(stable[tp], high[tp]) for tp in tps}
        await asyncio.sleep(0.05)


async def read_to_end(
    settings: Settings, topic: str, timeout: float = 120.0, settle: float = 2.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `topic` up to the end offsets taken at the start of the call.

    Transactions committed before the call are included even while their markers are in
    flight (see `settled_ends`).
    """
    consumer = reader(settings, fetch_bytes=64 * 1024 * 1024, fetch_max_bytes=128 * 1024 * 1024)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await settled_ends(consumer, settings, tps, settle)
        out: list[ConsumerRecord[bytes, bytes]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout:.0f}s")
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10000)).values():
                out.extend(r for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return out
    finally:
        await consumer.stop()
