"""The validator: every raw event becomes exactly one valid event or one dead letter.

Consume-transform-produce in one Kafka transaction per input partition and poll: the outputs and
the input offsets commit together or not at all, so a crash (even SIGKILL mid-batch) never
yields a duplicate or a gap in vaccination.events.valid / .rejected. The valid record keeps the
raw record's timestamp (ingestion time, which the batcher windows on) and its origin header; its
value is the event's canonical file row (docs/decisions/0011-valid-topic-rows.md), so the batcher
only joins bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram

from schemas.batchfile import render_row
from schemas.event import ValidEvent
from schemas.permissions import Permissions, load_permissions
from schemas.pipeline import ValidatorState, encode_origin
from schemas.validate import rejection_for, validate_event
from topics.catalogue import RAW, REJECTED, VALID, VALIDATOR_STATE
from vaxflow.kafka_clients import committed_consumer
from vaxflow.settings import Settings
from workers import headers as h
from workers.batch_send import BatchSender
from workers.partition_producers import PartitionProducers, rewind
from workers.runtime import Health
from workers.state_store import load_state

log = logging.getLogger("vaxflow.validator")

VALIDATED = Counter("vaxflow_validator_events_total", "Events validated", ["outcome"])
REJECTED_BY_RULE = Counter("vaxflow_validator_rejections_total", "Rejection reasons", ["field", "rule"])
TXN_ABORTS = Counter("vaxflow_validator_transaction_aborts_total", "Aborted transactions")
BATCH_SECONDS = Histogram("vaxflow_validator_batch_seconds", "Time to validate and commit one batch")

_ENCODER = msgspec.json.Encoder()


def key_of(event: ValidEvent) -> bytes:
    """The valid topic's key: one batch key (vaccine type, sender) always lands on one partition."""
    return f"{event.vaccine_type}|{event.sender_ods}".encode()


class GuardedProducers(PartitionProducers):
    """Partition producers plus the replay guard of each assigned raw partition."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        super().__init__(settings, prefix=prefix)
        self.settings = settings
        self.processed_upto: dict[TopicPartition, int] = {}

    def is_ready(self, tp: TopicPartition) -> bool:
        return super().is_ready(tp) and tp in self.processed_upto

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self.processed_upto.pop(tp, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_partitions_assigned(assigned)  # fences zombies before the state is read
        topic = self.settings.topic(VALIDATOR_STATE.name)
        for tp in assigned:
            state = await load_state(self.settings, topic, tp.partition, ValidatorState)
            self.processed_upto[tp] = state.processed_upto if state else 0


async def process_partition(
    records: Sequence[ConsumerRecord[bytes, bytes]],
    tp: TopicPartition,
    producers: GuardedProducers,
    settings: Settings,
    permissions: Permissions,
    group_id: str,
) -> None:
    """Validate one partition's batch and publish the results, the guard and its offset, atomically."""
    producer = producers.producers[tp]
    valid_topic, rejected_topic = settings.topic(VALID.name), settings.topic(REJECTED.name)
    guard = producers.processed_upto.get(tp, 0)
    valid = rejected = skipped = 0
    async with producer.transaction():
        out = BatchSender(producer)
        for rec in records:
            if rec.offset < guard:
                skipped += 1  # already validated before an operator rewound the group (replay)
                continue
            raw = rec.value or b""
            origin = h.header(rec.headers, h.ORIGIN) or encode_origin((rec.partition, rec.offset))
            result = validate_event(raw, permissions=permissions)
            if isinstance(result, ValidEvent):
                await out.add(
                    valid_topic,
                    render_row(result.record),
                    key=key_of(result),
                    timestamp_ms=rec.timestamp,
                    headers=[(h.ORIGIN, origin)],
                )
                valid += 1
            else:
                rejection = rejection_for(raw, result)
                for reason in result:
                    REJECTED_BY_RULE.labels(reason.field, reason.rule).inc()
                await out.add(
                    rejected_topic,
                    raw,
                    key=(rejection.sender_ods or "").encode(),
                    timestamp_ms=rec.timestamp,
                    headers=h.dead_letter_headers(
                        topic=rec.topic,
                        partition=rec.partition,
                        offset=rec.offset,
                        stage="validate",
                        exc_class="ValidationError",
                        exc_message="; ".join(f"{r.field}:{r.rule}" for r in result),
                        origin=origin,
                        reasons=result,
                    ),
                )
                rejected += 1
        await out.flush()
        upto = max(guard, records[-1].offset + 1)
        await producer.send(
            settings.topic(VALIDATOR_STATE.name),
            _ENCODER.encode(ValidatorState(partition=tp.partition, processed_upto=upto)),
            key=str(tp.partition).encode(),
            partition=tp.partition,
        )
        await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, group_id)
    producers.processed_upto[tp] = upto
    VALIDATED.labels("valid").inc(valid)
    VALIDATED.labels("rejected").inc(rejected)
    VALIDATED.labels("replay_skipped").inc(skipped)


async def _one_partition(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    records: list[ConsumerRecord[bytes, bytes]],
    producers: GuardedProducers,
    settings: Settings,
    permissions: Permissions,
    group_id: str,
) -> None:
    if not producers.is_ready(tp):
        # assigned but its producer or its replay guard not ready yet (rebalance in progress), or
        # revoked: never process without the guard, never skip past records unprocessed
        rewind(consumer, tp, records[0].offset)
        return
    try:
        await process_partition(records, tp, producers, settings, permissions, group_id)
    except ProducerFenced:
        raise  # another instance owns this partition now: this one is a zombie
    except KafkaError:
        TXN_ABORTS.inc()
        log.exception("transaction aborted; re-reading", extra={"partition": tp.partition})
        rewind(consumer, tp, records[0].offset)


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    permissions = load_permissions(settings.permissions_file)
    group_id = settings.group(settings.validator_group)
    producers = GuardedProducers(settings, prefix=group_id)
    consumer = committed_consumer(settings, group_id=group_id, max_partition_fetch_bytes=4 * 1024 * 1024)
    consumer.subscribe([settings.topic(RAW.name)], listener=producers)
    await consumer.start()
    health.ready = True
    log.info("validator started", extra={"group": group_id})
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=settings.validator_max_batch)
            health.progress()
            if not batch:
                continue
            async with producers.lock:
                with BATCH_SECONDS.time():
                    # Each partition has its own producer and transaction, so their commits overlap
                    # instead of queueing one round trip after another.
                    await asyncio.gather(
                        *(
                            _one_partition(consumer, tp, records, producers, settings, permissions, group_id)
                            for tp, records in batch.items()
                        )
                    )
    finally:
        health.ready = False
        await consumer.stop()
        await producers.close()
