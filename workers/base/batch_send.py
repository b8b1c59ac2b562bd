"""Producing many records through aiokafka's BatchBuilder instead of one `send()` each.

`send()` costs tens of microseconds of Python per record (partitioning, accumulator bookkeeping,
a future per record); the validator writes one record per event, so that cost bounded its rate.
Building whole batches per partition keeps the producer's idempotence and transactions (a batch
goes through the same accumulator and is registered with the transaction) at a fraction of it.
Partitions are chosen with aiokafka's own default partitioner (Java's murmur2), so a key lands on
the same partition as it would through `send()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER = DefaultPartitioner()
# aiokafka's murmur2 is pure Python; the keys (vaccine type | sender) are few, so remember them.
_CHOSEN: dict[tuple[bytes, int], int] = {}
_CHOSEN_LIMIT = 100_000


def partition_for(key: bytes, partitions: list[int]) -> int:
    slot = (key, len(partitions))
    chosen = _CHOSEN.get(slot)
    if chosen is None:
        if len(_CHOSEN) >= _CHOSEN_LIMIT:
            _CHOSEN.clear()
        chosen = _CHOSEN[slot] = _PARTITIONER(key, partitions, partitions)
    return chosen


class BatchSender:
    """Collects records per (topic, partition) and hands full batches to the producer."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._builders: dict[tuple[str, int], Any] = {}
        self._partitions: dict[str, list[int]] = {}
        self._futures: list[asyncio.Future[object]] = []

    async def _partitions_of(self, topic: str) -> list[int]:
        known = self._partitions.get(topic)
        if known is None:
            known = sorted(await self._producer.partitions_for(topic))
            self._partitions[topic] = known
        return known

    async def add(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes,
        timestamp_ms: int,
        headers: Sequence[tuple[str, bytes]],
        partition: int | None = None,
    ) -> None:
        """One record, to `partition` if given (a partition-aligned state topic), else by its key."""
        if partition is None:
            partitions = self._partitions.get(topic) or await self._partitions_of(topic)
            partition = partition_for(key, partitions)
        slot = (topic, partition)
        builder = self._builders.get(slot)
        if builder is None:
            builder = self._builders[slot] = self._producer.create_batch()
        if builder.append(key=key, value=value, timestamp=timestamp_ms, headers=list(headers)) is None:
            self._futures.append(await self._producer.send_batch(builder, topic, partition=partition))
            builder = self._builders[slot] = self._producer.create_batch()
            if builder.append(key=key, value=value, timestamp=timestamp_ms, headers=list(headers)) is None:
                raise ValueError("record larger than a whole batch")

    async def flush(self) -> None:
        """Hand every open batch to the producer and wait until the broker has them.

        Each builder is closed first: aiokafka lets an open batch linger (linger_ms) for more
        records, which here can never come, so every transaction would idle that long.
        """
        for (topic, partition), builder in self._builders.items():
            builder.close()
            self._futures.append(await self._producer.send_batch(builder, topic, partition=partition))
        self._builders.clear()
        if self._futures:
            await asyncio.gather(*self._futures)
        self._futures.clear()
