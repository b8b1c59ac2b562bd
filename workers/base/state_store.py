"""Reading a partition's latest state record back from a compacted, partition-aligned state topic
(the validator's and the batcher's replay guards)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TypeVar

import msgspec
from aiokafka import TopicPartition

from workers.base.kafka import reader
from workers.base.settings import KafkaSettings

T = TypeVar("T")


async def load_state(settings: KafkaSettings, topic: str, partition: int, kind: type[T]) -> T | None:
    """The last committed state record of `partition`, reading backwards from the end in steps.

    Transaction markers occupy offsets too, so the step grows until a data record is found.
    """
    consumer = reader(settings, fetch_bytes=16 * 1024 * 1024)
    decoder = msgspec.json.Decoder(kind)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        step = 16
        while True:
            start = max(begin, end - step)
            consumer.seek(tp, start)
            last: T | None = None
            deadline = asyncio.get_running_loop().time() + 60
            while await consumer.position(tp) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"could not read batcher state of partition {partition}")
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.offset < end and record.value is not None:
                        last = decoder.decode(record.value)
            if last is not None or start == begin:
                return last
            step *= 4
    finally:
        await consumer.stop()


async def load_states(
    settings: KafkaSettings, topic: str, assigned: Iterable[TopicPartition], kind: type[T]
) -> dict[TopicPartition, T | None]:
    """The states of newly assigned partitions, read together: the group waits for the
    assignment callback, and one after another the reads grew with the partition count."""
    ordered = sorted(assigned)
    states = await asyncio.gather(*(load_state(settings, topic, tp.partition, kind) for tp in ordered))
    return dict(zip(ordered, states, strict=True))
