"""The validator: every raw event becomes exactly one valid event or one dead letter.

Consume-transform-produce in one Kafka transaction per input partition and poll: the outputs and
the input offsets commit together or not at all, so a crash (even SIGKILL mid-batch) never
yields a duplicate or a gap in vaccination.events.valid / .rejected. The valid record keeps the
raw record's timestamp (ingestion time, which the batcher windows on) and its origin header; its
value is the event's canonical file row (docs/decisions/0011-valid-topic-rows.md), so the batcher
only joins bytes.

Partitions are pipelined: a partition whose transaction has committed fetches and validates its
next records while other partitions' commits are still in flight, instead of every partition
waiting for the slowest commit of a poll. On a 2-core machine a poll-wide wait left the validator
idle for about a third of each run (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram

from schemas.batchkey import encode_key
from schemas.fastpath import FAST_ROWS
from schemas.permissions import Permissions, load_permissions
from schemas.pipeline import ValidatorState, encode_origin
from schemas.validate import rejection_for, validate_event_row
from topics import headers as h
from topics.catalogue import RAW, REJECTED, VALID, VALIDATOR_STATE
from workers.base.batch_send import BatchSender
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import committed_consumer
from workers.base.partition_producers import PartitionProducers, PartitionState, rewind
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.base.state_store import load_states

log = logging.getLogger("vaxflow.validator")

VALIDATED = Counter("vaxflow_validator_events_total", "Events validated", ["outcome"])
REJECTED_BY_RULE = Counter("vaxflow_validator_rejections_total", "Rejection reasons", ["field", "rule"])
TXN_ABORTS = Counter("vaxflow_validator_transaction_aborts_total", "Aborted transactions")
BATCH_SECONDS = Histogram("vaxflow_validator_batch_seconds", "Time to validate and commit one batch")

_ENCODER = msgspec.json.Encoder()


class ReplayGuards(PartitionState):
    """The replay guard of each assigned raw partition, and the batch each has in hand."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.processed_upto: dict[TopicPartition, int] = {}
        # The batch each partition has in hand (validating or committing); at most one per partition.
        self.in_flight: dict[TopicPartition, asyncio.Task[None]] = {}

    def is_loaded(self, tp: TopicPartition) -> bool:
        return tp in self.processed_upto

    async def load(self, assigned: set[TopicPartition]) -> None:
        topic = self.settings.topic(VALIDATOR_STATE.name)
        for tp, state in (await load_states(self.settings, topic, assigned, ValidatorState)).items():
            self.processed_upto[tp] = state.processed_upto if state else 0

    async def release(self, revoked: set[TopicPartition]) -> None:
        # A batch in hand finishes (commits or aborts) while the partition is still ours; its
        # outcome, a fencing error included, is collected by the poll loop.
        pending = [task for tp, task in self.in_flight.items() if tp in revoked]
        await asyncio.gather(*pending, return_exceptions=True)

    def forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.processed_upto.pop(tp, None)


@dataclass(frozen=True)
class Stage:
    """What every batch of one validator process is validated and committed with."""

    settings: Settings
    permissions: Permissions
    group_id: str
    guards: ReplayGuards
    producers: PartitionProducers


async def process_partition(stage: Stage, records: Sequence[ConsumerRecord[bytes, bytes]], tp: TopicPartition) -> None:
    """Validate one partition's batch and publish the results, the guard and its offset, atomically."""
    settings, permissions, group_id, guards = stage.settings, stage.permissions, stage.group_id, stage.guards
    producer = stage.producers.producers[tp]
    valid_topic, rejected_topic = settings.topic(VALID.name), settings.topic(REJECTED.name)
    guard = guards.processed_upto.get(tp, 0)
    valid = rejected = skipped = 0
    async with Checkpoint(producer, group_id=group_id) as step:
        out = step.sink(BatchSender(producer))
        for rec in records:
            if rec.offset < guard:
                skipped += 1  # already validated before an operator rewound the group (replay)
                continue
            raw = rec.value or b""
            origin = h.header(rec.headers, h.ORIGIN) or encode_origin((rec.partition, rec.offset))
            result = validate_event_row(raw, permissions=permissions, native=settings.native_validation)
            if isinstance(result, tuple):
                vaccine_type, sender_ods, row, extended = result
                await out.add(
                    valid_topic,
                    row,
                    key=encode_key(vaccine_type, sender_ods),
                    timestamp_ms=rec.timestamp,
                    headers=[(h.ORIGIN, origin), (h.EXTENDED, extended)] if extended else [(h.ORIGIN, origin)],
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
        upto = max(guard, records[-1].offset + 1)
        step.state(
            settings.topic(VALIDATOR_STATE.name),
            _ENCODER.encode(ValidatorState(partition=tp.partition, processed_upto=upto)),
            key=str(tp.partition).encode(),
            partition=tp.partition,
        )
        step.consumed({tp: records[-1].offset + 1})
    guards.processed_upto[tp] = upto
    VALIDATED.labels("valid").inc(valid)
    VALIDATED.labels("rejected").inc(rejected)
    VALIDATED.labels("replay_skipped").inc(skipped)


async def _one_partition(
    stage: Stage, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
) -> None:
    if not stage.producers.is_ready(tp):
        # assigned but its producer or its replay guard not ready yet (rebalance in progress), or
        # revoked: never process without the guard, never skip past records unprocessed
        rewind(consumer, tp, records[0].offset)
        return
    try:
        with BATCH_SECONDS.time():
            await process_partition(stage, records, tp)
    except ProducerFenced:
        raise  # another instance owns this partition now: this one is a zombie
    except KafkaError:
        TXN_ABORTS.inc()
        log.exception("transaction aborted; re-reading", extra={"partition": tp.partition})
        rewind(consumer, tp, records[0].offset)


def _collect(in_flight: dict[TopicPartition, asyncio.Task[None]]) -> None:
    """Forget finished batches; re-raise what ended one badly (ProducerFenced: this is a zombie)."""
    for tp, task in list(in_flight.items()):
        if task.done():
            del in_flight[tp]
            task.result()


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    permissions = load_permissions(settings.permissions_file)
    group_id = settings.group(settings.validator_group)
    guards = ReplayGuards(settings)
    producers = PartitionProducers(settings, prefix=group_id, state=guards)
    in_flight = guards.in_flight
    stage = Stage(settings, permissions, group_id, guards, producers)
    consumer = committed_consumer(settings, group_id=group_id, max_partition_fetch_bytes=4 * 1024 * 1024)
    consumer.subscribe([settings.topic(RAW.name)], listener=producers)
    await consumer.start()
    health.ready = True
    fast_path = settings.native_validation and FAST_ROWS is not None
    if settings.native_validation and FAST_ROWS is None:
        log.warning("compiled validation fast path not installed (./scripts/setup builds it); validating in Python")
    log.info("validator started", extra={"group": group_id, "fast_path": fast_path})
    try:
        while not stop.is_set():
            _collect(in_flight)
            # Only partitions without a batch in hand are polled: the records of the others stay
            # in the fetcher's buffer, so each partition's transactions remain strictly in order.
            # (No partitions named means all of them, so that call is made only with none in hand.)
            free = [tp for tp in consumer.assignment() if tp not in in_flight]
            batch = (
                await consumer.getmany(
                    *free, timeout_ms=0 if in_flight else 500, max_records=settings.validator_max_batch
                )
                if free or not in_flight
                else {}
            )
            health.progress(busy=bool(batch) or bool(in_flight))
            for tp, records in batch.items():
                in_flight[tp] = asyncio.create_task(
                    _one_partition(stage, consumer, tp, records)
                )
            if in_flight and not batch:
                await asyncio.wait(in_flight.values(), timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
    finally:
        health.ready = False
        # SIGTERM: batches in hand commit (or abort) before the group is left.
        await asyncio.gather(*in_flight.values(), return_exceptions=True)
        await consumer.stop()
        await producers.close()
