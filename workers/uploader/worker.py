"""The uploader: vaccination.batches.ready -> MESH -> vaccination.batches.sent, each file exactly once.

MESH is not transactional, so "exactly once" here is an argument over three facts, not a
transaction (docs/decisions/0007-uploader-exactly-once.md has the long form):

1. **The ledger is checked first.** A file whose name is in the sent-files ledger (compacted topic
   vaccination.batches.sent, read to its end at start and on every partition assignment) is
   skipped. The only writer of a receipt for file F is the owner of F's ready partition (the
   ready topic is keyed by file name), and a new owner's producer fences the previous owner's
   transactional id before the ledger is read, so every receipt the previous owner committed is
   visible (or, at worst, the next fact catches the file).
2. **MESH is asked second.** Every attempt starts with `track_by_local_id(local_id)`: the batcher
   derived the local id from the file's name and content, so a file that reached MESH before a
   crash (or before an ambiguous timeout of our own POST) is found and recorded with
   recovered=True instead of being sent again. An upload left incomplete (chunks missing, so the
   recipient never sees it yet) is resumed: chunks 2..N are posted again to the same message,
   which MESH allows (a re-posted chunk replaces the one it holds). Only if it cannot be resumed
   (the chunk size changed since) does the file go under the next local-id generation
   `{local_id}.g{n}`; tracking walks those generations, so one local id never names two messages.
3. **Record, then commit, atomically.** The SentReceipt and the ready offset go in one Kafka
   transaction on the partition's own transactional producer (workers.base.partition_producers).
   A crash before the commit leaves the offset uncommitted and the receipt invisible; the next
   owner re-reads the file and fact 2 finds it in MESH. A crash after leaves both.

What remains is a zombie: an instance that lost its partition but is still inside a MESH send.
Revocation waits for the file in hand (per-partition lock), and max_poll_interval is set above the
longest possible file, so a live instance always finishes before the partition moves. Only a
process frozen for longer than the session timeout mid-request could race its successor; if both
then miss each other's message, MESH holds two messages under one local id: NHS England refuses
the second by its repeated file name, and our next tracking answers "ambiguous", which
dead-letters the file for an operator instead of sending a third copy.

Permanent MESH refusals, files with no route and retries exhausted (attempts or time) go to
vaccination.batches.deadletter as an UploadFailure with status, body and attempts plus Connect-style
headers, in one transaction with the offset. Never logged: file content or any row value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from schemas.pipeline import ReadyFile, SentReceipt, UploadFailure
from topics import headers as h
from topics.catalogue import DEADLETTER, READY, SENT
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import committed_consumer
from workers.base.ledger import SentLedger, encode_receipt
from workers.base.mesh.client import (
    MeshClient,
    MeshError,
    MeshTransientError,
)
from workers.base.mesh.settings import own_mailbox_config
from workers.base.partition_producers import PartitionProducers
from workers.base.runtime import Health
from workers.base.settings import Settings, SettingsError
from workers.uploader.delivery import MeshDelivery
from workers.uploader.handover import HandOver
from workers.uploader.outcomes import (
    Abandoned,
    Delivery,
    Outcome,
    UploadRefused,
    next_group,
    origin_headers,
    origin_value,
)
from workers.uploader.routes import NoRouteError, RoutingTable, load_routes

log = logging.getLogger("vaxflow.uploader")

FILES_SENT = Counter("vaxflow_uploader_files_sent_total", "Files recorded as sent, per recipient", ["recipient"])
BYTES_SENT = Counter("vaxflow_uploader_bytes_total", "File bytes recorded as sent, per recipient", ["recipient"])
RECOVERED = Counter("vaxflow_uploader_recovered_total", "Files found in MESH by local id, not sent again")
SKIPPED = Counter("vaxflow_uploader_skipped_total", "Ready files already in the sent ledger")
DEAD_LETTERS = Counter("vaxflow_uploader_dead_letters_total", "Files sent to the dead-letter topic", ["reason"])

# Ready records carry whole files: the topic allows 32 MiB, JSON base64 adds a third; leave room.
FETCH_BYTES: Final = 40 * 1024 * 1024
PRODUCE_BYTES: Final = 48 * 1024 * 1024
# Files fetched per poll, per file allowed in flight: each may take minutes under retries, and polls
# must stay frequent enough (the per-poll budget in process_partition cuts a long poll short).
RECORDS_PER_POLL_PER_SLOT: Final = 4
_BODY_LIMIT: Final = 16 * 1024

_DECODE_READY = msgspec.json.Decoder(ReadyFile)
_ENCODE = msgspec.json.Encoder()


class Uploader:
    """One process's uploader: the MESH session, the ledger, and the partitions it owns."""

    def __init__(
        self,
        settings: Settings,
        routes: RoutingTable,
        mesh: MeshClient,
        ledger: SentLedger,
        stop: asyncio.Event,
        health: Health,
    ) -> None:
        self.settings = settings
        self.routes = routes
        self.mesh = mesh
        self.ledger = ledger
        self.stop = stop
        self.health = health
        self.group = settings.group(settings.uploader_group)
        self.ready_topic = settings.topic(READY.name)
        self.sent_topic = settings.topic(SENT.name)
        self.deadletter_topic = settings.topic(DEADLETTER.name)
        # Set when a partition is revoked; a batch in progress holds the event it started with.
        self.halts: dict[TopicPartition, asyncio.Event] = {}
        self.locks: dict[TopicPartition, asyncio.Lock] = {}
        self.listener = PartitionProducers(
            settings, prefix=self.group, state=HandOver(self.halts, self.lock_for, ledger),
            linger_ms=0, max_request_size=PRODUCE_BYTES,
        )
        self.delivery = MeshDelivery(settings, mesh, health, stop)
        # A single file may retry for upload_max_seconds; the group must not evict us meanwhile.
        self.max_poll_interval_ms = int(max(300.0, settings.upload_max_seconds * 2 + 120.0) * 1000)

    def lock_for(self, tp: TopicPartition) -> asyncio.Lock:
        return self.locks.setdefault(tp, asyncio.Lock())

    # ------------------------------------------------------------------------------- main loop

    async def run(self) -> None:
        consumer = committed_consumer(
            self.settings,
            group_id=self.group,
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES + 8 * 1024 * 1024,
            max_poll_interval_ms=self.max_poll_interval_ms,
        )
        consumer.subscribe([self.ready_topic], listener=self.listener)
        await consumer.start()
        self.health.ready = True
        log.info("uploader started", extra={"group": self.group, "routes": len(self.routes)})
        try:
            while not self.stop.is_set():
                batch = await consumer.getmany(
                    timeout_ms=500, max_records=RECORDS_PER_POLL_PER_SLOT * self.settings.uploader_concurrency
                )
                self.health.progress()
                self.health.detail = {"ledger_files": len(self.ledger), "partitions": len(self.halts)}
                if not batch:
                    continue
                # Partitions go in parallel; within one, up to uploader_concurrency files are in
                # flight to MESH at once and their outcomes are recorded strictly in offset order.
                try:
                    async with asyncio.TaskGroup() as tasks:
                        for tp, records in batch.items():
                            tasks.create_task(self.process_partition(consumer, tp, records))
                except BaseExceptionGroup as group:
                    raise group.exceptions[0] from None  # e.g. ProducerFenced: this instance is a zombie
        finally:
            self.health.ready = False
            await consumer.stop()
            await self.listener.close()

    async def process_partition(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        halt = self.halts.get(tp)
        if halt is None:
            # Fetched before the assignment callback registered the partition (or after it was
            # revoked): hand the records back rather than let the position run past them.
            _seek(consumer, tp, records[0].offset)
            return
        budget_end = time.monotonic() + self.max_poll_interval_ms / 2000
        start = 0
        while start < len(records):
            if self.stop.is_set() or halt.is_set():
                return  # uncommitted: re-read by whoever owns the partition next
            if time.monotonic() > budget_end:
                _seek(consumer, tp, records[start].offset)  # poll again before the group thinks we died
                return
            group = next_group(records, start, self.settings.uploader_concurrency)
            async with self.lock_for(tp):
                if halt.is_set() or tp not in self.listener.producers:
                    return
                unfinished = await self.handle_group(tp, group, halt)
            if unfinished is not None:
                if not halt.is_set():
                    _seek(consumer, tp, unfinished)
                return
            start += len(group)

    async def handle_group(
        self, tp: TopicPartition, group: list[ConsumerRecord[bytes, bytes]], halt: asyncio.Event
    ) -> int | None:
        """Deliver the group's files to MESH concurrently, then record their outcomes in offset order,
        one transaction per file; returns the offset to re-read from, or None when all are recorded.

        Recording stops at the first file not finished (stop, revocation, a failed transaction):
        that file and every later one of the group stay uncommitted. A later file that did reach MESH
        is then found by tracking when it is read again, exactly as after a crash.
        """
        outcomes = await asyncio.gather(*(self.outcome_of(rec, halt) for rec in group), return_exceptions=True)
        for rec, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Abandoned):
                log.info("file left for later", extra={"partition": tp.partition, "offset": rec.offset})
                return int(rec.offset)
            if isinstance(outcome, BaseException):
                raise outcome
            try:
                await self.record(tp, rec, outcome)
            except ProducerFenced:
                raise  # another instance owns this partition's transactional id: we are a zombie
            except KafkaError:
                # Receipt or dead letter not committed: re-read the file; tracking finds it in MESH.
                log.exception("ledger transaction failed; re-reading", extra={"partition": tp.partition})
                return int(rec.offset)
        return None

    # ------------------------------------------------------------------------------- one file

    async def outcome_of(self, rec: ConsumerRecord[bytes, bytes], halt: asyncio.Event) -> Outcome:
        """What happens to one ready record, MESH included, without writing anything to Kafka."""
        try:
            file = _DECODE_READY.decode(rec.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Outcome(poison=exc)
        if file.file_name in self.ledger:
            return Outcome(file=file)
        try:
            route = self.routes.route(file.vaccine_type)
            return Outcome(file=file, delivery=await self.delivery.deliver(file, route, halt))
        except NoRouteError as exc:
            return Outcome(file=file, refused=UploadRefused(exc, status=None, body=str(exc), attempts=0))
        except UploadRefused as refused:
            return Outcome(file=file, refused=refused)

    async def record(self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], outcome: Outcome) -> None:
        if outcome.poison is not None:
            await self.dead_letter_poison(tp, rec, outcome.poison)
        elif outcome.file is None:
            raise AssertionError("an Outcome holds a file or a poison")  # pragma: no cover
        elif outcome.refused is not None:
            await self.dead_letter(tp, rec, outcome.file, outcome.refused)
        elif outcome.delivery is not None:
            await self.record_sent(tp, rec, outcome.file, outcome.delivery)
        else:
            SKIPPED.inc()
            log.info("already sent, skipping", extra={"file": outcome.file.file_name})
            await self.commit_only(tp, rec)

    # -------------------------------------------------------------------------- Kafka outputs

    async def record_sent(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], file: ReadyFile, delivery: Delivery
    ) -> None:
        receipt = SentReceipt(
            file_name=file.file_name,
            local_id=delivery.local_id,
            message_id=delivery.message_id,
            mailbox_to=delivery.mailbox_to,
            workflow_id=delivery.workflow_id,
            vaccine_type=file.vaccine_type,
            sender_ods=file.sender_ods,
            rows=file.rows,
            bytes=len(file.content),
            sent_at=_now(),
            origins=file.origins,
            recovered=delivery.recovered,
            resend_of=file.resend_of,
        )
        async with Checkpoint(self.listener.producers[tp], group_id=self.group) as step:
            await step.produce(
                self.sent_topic,
                encode_receipt(receipt),
                key=file.file_name.encode(),
                headers=origin_headers(rec, file),
            )
            step.consumed({tp: rec.offset + 1})
        self.ledger.add(msgspec.structs.replace(receipt, origins=[]))
        FILES_SENT.labels(delivery.mailbox_to).inc()
        BYTES_SENT.labels(delivery.mailbox_to).inc(len(file.content))
        if delivery.recovered:
            RECOVERED.inc()
        log.info(
            "file recorded as sent",
            extra={
                "file": file.file_name, "message_id": delivery.message_id, "recipient": delivery.mailbox_to,
                "workflow": delivery.workflow_id, "rows": file.rows, "bytes": len(file.content),
                "recovered": delivery.recovered, "attempts": delivery.attempts,
            },
        )

    async def dead_letter(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], file: ReadyFile, refused: UploadRefused
    ) -> None:
        failure = UploadFailure(
            file=file,
            status=refused.status,
            body=refused.body[:_BODY_LIMIT],
            attempts=refused.attempts,
            failed_at=_now(),
            error=f"{type(refused.cause).__name__}: {refused.cause}",
        )
        headers = h.dead_letter_headers(
            topic=rec.topic, partition=rec.partition, offset=rec.offset, stage="upload",
            exc_class=type(refused.cause).__name__, exc_message=str(refused.cause),
            origin=origin_value(rec, file),
        )
        if refused.status is not None:
            headers.append((h.DLQ_MESH_STATUS, str(refused.status).encode()))
        await self._send_with_offset(tp, rec, _ENCODE.encode(failure), file.file_name.encode(), headers)
        reason = "no_route" if isinstance(refused.cause, NoRouteError) else (
            "exhausted" if isinstance(refused.cause, MeshTransientError) else "refused")
        DEAD_LETTERS.labels(reason).inc()
        log.error(
            "file dead-lettered",
            extra={"file": file.file_name, "status": refused.status, "attempts": refused.attempts,
                   "error": str(refused.cause)[:500]},
        )

    async def dead_letter_poison(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], exc: Exception
    ) -> None:
        """A ready record that is not a ReadyFile: keep its bytes as they were, say why in headers."""
        headers = h.dead_letter_headers(
            topic=rec.topic, partition=rec.partition, offset=rec.offset, stage="upload",
            exc_class=type(exc).__name__, exc_message="ready record is not a ReadyFile",
            origin=h.header(rec.headers, h.ORIGIN) or b"",
        )
        await self._send_with_offset(tp, rec, rec.value or b"", rec.key or b"", headers)
        DEAD_LETTERS.labels("undecodable").inc()
        log.error("undecodable ready record dead-lettered", extra={"partition": tp.partition, "offset": rec.offset})

    async def commit_only(self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes]) -> None:
        async with Checkpoint(self.listener.producers[tp], group_id=self.group) as step:
            step.consumed({tp: rec.offset + 1})

    async def _send_with_offset(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], value: bytes, key: bytes, headers: h.Headers
    ) -> None:
        async with Checkpoint(self.listener.producers[tp], group_id=self.group) as step:
            await step.produce(self.deadletter_topic, value, key=key, headers=headers)
            step.consumed({tp: rec.offset + 1})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _seek(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """Rewind to a file not finished; harmless if the partition has just been taken away."""
    try:
        consumer.seek(tp, offset)
    except IllegalStateError:
        log.debug("seek skipped: partition no longer assigned", extra={"partition": tp.partition})


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Worker entry point (`python -m workers.uploader`)."""
    if settings.routes_file is None and not settings.dev_mode:
        # The packaged routes address the sandbox's mailboxes: real files must go where NHS England said.
        raise SettingsError("VAXFLOW_ROUTES_FILE is required outside development mode (the default is the sandbox's)")
    routes = load_routes(settings.routes_file)
    config = own_mailbox_config(settings, allowed_workflows=routes.workflows)
    async with MeshClient(config) as mesh, SentLedger(settings, keep_origins=False) as ledger:
        await ledger.catch_up()
        try:
            await mesh.handshake()
        except MeshError as exc:  # MESH down at start is no reason not to start: files wait
            log.warning("MESH handshake failed at start", extra={"error": str(exc)[:300]})
        await Uploader(settings, routes, mesh, ledger, stop, health).run()
