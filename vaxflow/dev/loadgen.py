"""A load generator: a realistic mix of events (all seed vaccine types, many senders and source
systems, a share of invalid ones) produced straight to the raw topic.

Used by the demo, the end-to-end tests and the benchmarks, so all three exercise the same mix.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer

from schemas.batchkey import encode_key
from topics.catalogue import RAW
from vaxflow.dev.samples import corrupt, make_event
from workers.base.kafka import idempotent_producer
from workers.base.settings import Settings


@dataclass(frozen=True, slots=True)
class Generated:
    """The events and which of them were made invalid on purpose."""

    payloads: list[bytes]
    keys: list[bytes]
    invalid: frozenset[int]


def generate(n: int, *, invalid_fraction: float = 0.05, seed: int = 0) -> Generated:
    rng = random.Random(seed)
    payloads: list[bytes] = []
    keys: list[bytes] = []
    invalid: set[int] = set()
    for i in range(n):
        event = make_event(rng)
        if rng.random() < invalid_fraction:
            event = corrupt(rng, event)
            invalid.add(i)
        payloads.append(orjson.dumps(event))
        keys.append(encode_key(str(event.get("vaccine_type")), str(event.get("sender_ods"))))
    return Generated(payloads, keys, frozenset(invalid))


async def produce(
    settings: Settings,
    payloads: Sequence[bytes],
    keys: Sequence[bytes] | None = None,
    *,
    producer: AIOKafkaProducer | None = None,
    window: int = 5000,
    timestamps_ms: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Produce every payload to the raw topic (acks=all, idempotent); return their (partition, offset).

    At most `window` sends are in flight, so memory stays bounded however many events are sent.
    `timestamps_ms` sets each record's ingestion time (default: now), so a benchmark can replay
    traffic that arrived over an hour in a few seconds and still see an hour of windows.
    """
    topic = settings.topic(RAW.name)
    own = producer is None
    if producer is None:
        producer = idempotent_producer(settings, linger_ms=20, max_batch_size=512 * 1024)
        await producer.start()
    coords: list[tuple[int, int]] = []
    try:
        for start in range(0, len(payloads), window):
            futures = [
                await producer.send(
                    topic,
                    payloads[i],
                    key=keys[i] if keys else None,
                    timestamp_ms=timestamps_ms[i] if timestamps_ms is not None else None,
                )
                for i in range(start, min(start + window, len(payloads)))
            ]
            for meta in await asyncio.gather(*futures):
                coords.append((meta.partition, meta.offset))
    finally:
        if own:
            await producer.stop()
    return coords
