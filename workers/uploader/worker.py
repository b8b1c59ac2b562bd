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
import contextlib
import functools
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from schemas.batchkey import encode_key
from schemas.pipeline import ReadyFile, SentReceipt, UploadFailure
from topics import headers as h
from topics.catalogue import DEADLETTER, READY, SENT
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import committed_consumer
from workers.base.ledger import SentLedger, encode_receipt
from workers.base.mesh.client import MeshClient, MeshError
from workers.base.mesh.settings import own_mailbox_config
from workers.base.partition_producers import PartitionProducers
from workers.base.runtime import Health
from workers.base.settings import Settings, SettingsError
from workers.uploader.delivery import MeshDelivery
from workers.uploader.handover import HandOver
from workers.uploader.lanes import PartitionLanes
from workers.uploader.outage import MeshAvailability
from workers.uploader.outcomes import (
    Abandoned,
    Delivery,
    Outcome,
    UploadRefused,
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
        # Set when a partition is revoked; a lane working on it holds the event it started with.
        self.halts: dict[TopicPartition, asyncio.Event] = {}
        self.locks: dict[TopicPartition, asyncio.Lock] = {}
        self.work: dict[TopicPartition, PartitionWork] = {}
        self.failure: BaseException | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.listener = PartitionProducers(
            settings, prefix=self.group,
            state=HandOver(self.halts, self.lock_for, ledger, self.drain),
            linger_ms=0, max_request_size=PRODUCE_BYTES,
        )
        self.availability = MeshAvailability(health)
        self.delivery = MeshDelivery(settings, mesh, health, stop, self.availability)
        # Files wait in lanes, not in the poll loop, so polls stay frequent; but a revocation waits
        # for the MESH requests in flight, each up to the client's total timeout.
        self.max_poll_interval_ms = int((2 * mesh.config.total_timeout + 120.0) * 1000)

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
        self.consumer = consumer
        consumer.subscribe([self.ready_topic], listener=self.listener)
        await consumer.start()
        self.health.ready = True
        log.info("uploader started", extra={"group": self.group, "routes": len(self.routes)})
        try:
            while not self.stop.is_set():
                if self.failure is not None:
                    raise self.failure  # e.g. ProducerFenced in a lane: this instance is a zombie
                batch = await consumer.getmany(timeout_ms=500, max_records=self.settings.uploader_max_waiting)
                self.health.progress(busy=bool(batch))
                self.health.detail["ledger_files"] = len(self.ledger)
                self.health.detail["partitions"] = len(self.halts)
                for tp, records in batch.items():
                    self.admit(consumer, tp, records)
        except asyncio.CancelledError:
            # Killed, not stopped: nothing is finished or recorded any more (as after SIGKILL).
            for work in self.work.values():
                for task in work.tasks:
                    task.cancel()
            raise
        finally:
            self.health.ready = False
            for halt in list(self.halts.values()):
                halt.set()  # waits end at once; requests in flight finish and are recorded
            await asyncio.gather(*(self.drain(tp) for tp in list(self.work)), return_exceptions=True)
            await consumer.stop()
            await self.listener.close()

    def admit(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Put each record at the end of its key's lane, starting idle lanes; pause when full.

        A record that does not fit is handed back (seek) and the partition paused: at most
        `uploader_max_waiting` files of a partition are held, however long MESH is away.
        """
        halt = self.halts.get(tp)
        if halt is None or halt.is_set():
            # Fetched before the assignment callback registered the partition (or after it was
            # revoked): hand the records back rather than let the position run past them.
            _seek(consumer, tp, records[0].offset)
            return
        work = self.work.get(tp)
        if work is None:
            work = self.work[tp] = PartitionWork(
                PartitionLanes(self.settings.uploader_max_waiting), halt,
                asyncio.Semaphore(self.settings.uploader_concurrency),
            )
        for rec in records:
            if work.lanes.full:
                _seek(consumer, tp, rec.offset)
                consumer.pause(tp)
                work.paused = True
                return
            item = _decode(rec)
            lane = lane_of(rec, item)
            self.availability.add_waiting(1)
            if work.lanes.admit(rec.offset, lane, item):
                task = asyncio.create_task(self.run_lane(tp, work, lane), name=f"uploader-lane-{tp.partition}")
                work.tasks.add(task)
                task.add_done_callback(functools.partial(self._lane_ended, work))

    def _lane_ended(self, work: PartitionWork, task: asyncio.Task[None]) -> None:
        work.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None and self.failure is None:
            self.failure = exc

    async def drain(self, tp: TopicPartition) -> None:
        """Wait for the partition's lanes to end (its halt is set): requests in flight finish and
        record their outcome, waits are abandoned, the rest stays uncommitted for the next owner."""
        work = self.work.get(tp)
        if work is None:
            return
        work.halt.set()
        while pending := [task for task in work.tasks if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.work.get(tp) is work:
            del self.work[tp]
            self.availability.add_waiting(-work.lanes.unfinished)

    async def run_lane(self, tp: TopicPartition, work: PartitionWork, lane: Hashable) -> None:
        """One batch key's files of one partition, strictly one after another, in offset order.

        A file is finished when its outcome (receipt, dead letter or skip) is committed together
        with the partition's commit point; a file waiting out a MESH failure keeps every later
        file of its lane waiting, and no other lane.
        """
        while (head := work.lanes.head(lane)) is not None:
            offset, item = head
            if self.stop.is_set() or work.halt.is_set():
                return  # uncommitted: re-read by whoever owns the partition next
            async with self.lock_for(tp):  # an assignment in progress: wait for the ledger
                if work.halt.is_set() or tp not in self.listener.producers:
                    return
            try:
                outcome = await self.outcome_of(item, work.halt, work.slots)
            except Abandoned:
                log.info("file left for later", extra={"partition": tp.partition, "offset": offset})
                return
            if not await self.record_finished(tp, work, offset, item, outcome):
                return
            work.lanes.finish(lane)
            self.availability.add_waiting(-1)
            if work.paused and not work.lanes.full and self.consumer is not None and not work.halt.is_set():
                work.paused = False
                with contextlib.suppress(IllegalStateError):
                    self.consumer.resume(tp)

    async def record_finished(
        self, tp: TopicPartition, work: PartitionWork, offset: int, item: Ready, outcome: Outcome
    ) -> bool:
        """Commit the outcome with the partition's new commit point; False if the partition went.

        A failed transaction (broker away) is retried, the delivery itself is not repeated; stop or
        revocation ends the retries and leaves the file to be re-read (tracking finds it in MESH).
        """
        sleep = self.delivery.interruptible_sleep(work.halt)
        wait = 0.5
        while True:
            try:
                async with self.lock_for(tp):
                    if tp not in self.listener.producers or self.work.get(tp) is not work:
                        return False
                    await self.record(tp, item.rec, outcome, work.lanes.commit_after(offset))
                return True
            except ProducerFenced:
                raise  # another instance owns this partition's transactional id: we are a zombie
            except KafkaError:
                log.exception("ledger transaction failed; retrying", extra={"partition": tp.partition})
            try:
                await sleep(wait)
            except Abandoned:
                return False
            wait = min(wait * 2, 10.0)

    # ------------------------------------------------------------------------------- one file

    async def outcome_of(self, item: Ready, halt: asyncio.Event, slots: asyncio.Semaphore) -> Outcome:
        """What happens to one ready record, MESH included, without writing anything to Kafka."""
        if item.poison is not None or item.file is None:
            return Outcome(poison=item.poison)
        file = item.file
        if file.file_name in self.ledger:
            return Outcome(file=file)
        try:
            route = self.routes.route_file(file.file_name, file.vaccine_type)
            return Outcome(file=file, delivery=await self.delivery.deliver(file, route, halt, slots))
        except NoRouteError as exc:
            return Outcome(file=file, refused=UploadRefused(exc, status=None, body=str(exc), attempts=0))
        except UploadRefused as refused:
            return Outcome(file=file, refused=refused)

    async def record(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], outcome: Outcome, upto: int
    ) -> None:
        """Write the outcome and commit the partition up to `upto` (its lowest file not finished
        once this one is), in one transaction."""
        if outcome.poison is not None:
            await self.dead_letter_poison(tp, rec, outcome.poison, upto)
        elif outcome.file is None:
            raise AssertionError("an Outcome holds a file or a poison")  # pragma: no cover
        elif outcome.refused is not None:
            await self.dead_letter(tp, rec, outcome.file, outcome.refused, upto)
        elif outcome.delivery is not None:
            await self.record_sent(tp, rec, outcome.file, outcome.delivery, upto)
        else:
            SKIPPED.inc()
            log.info("already sent, skipping", extra={"file": outcome.file.file_name})
            await self.commit_only(tp, upto)

    # -------------------------------------------------------------------------- Kafka outputs

    async def record_sent(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], file: ReadyFile, delivery: Delivery, upto: int
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
            step.consumed({tp: upto})
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
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], file: ReadyFile, refused: UploadRefused,
        upto: int,
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
        await self._send_with_offset(tp, upto, _ENCODE.encode(failure), file.file_name.encode(), headers)
        reason = "no_route" if isinstance(refused.cause, NoRouteError) else "refused"
        DEAD_LETTERS.labels(reason).inc()
        log.error(
            "file dead-lettered",
            extra={"file": file.file_name, "status": refused.status, "attempts": refused.attempts,
                   "error": str(refused.cause)[:500]},
        )

    async def dead_letter_poison(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], exc: Exception, upto: int
    ) -> None:
        """A ready record that is not a ReadyFile: keep its bytes as they were, say why in headers."""
        headers = h.dead_letter_headers(
            topic=rec.topic, partition=rec.partition, offset=rec.offset, stage="upload",
            exc_class=type(exc).__name__, exc_message="ready record is not a ReadyFile",
            origin=h.header(rec.headers, h.ORIGIN) or b"",
        )
        await self._send_with_offset(tp, upto, rec.value or b"", rec.key or b"", headers)
        DEAD_LETTERS.labels("undecodable").inc()
        log.error("undecodable ready record dead-lettered", extra={"partition": tp.partition, "offset": rec.offset})

    async def commit_only(self, tp: TopicPartition, upto: int) -> None:
        async with Checkpoint(self.listener.producers[tp], group_id=self.group) as step:
            step.consumed({tp: upto})

    async def _send_with_offset(
        self, tp: TopicPartition, upto: int, value: bytes, key: bytes, headers: h.Headers
    ) -> None:
        async with Checkpoint(self.listener.producers[tp], group_id=self.group) as step:
            await step.produce(self.deadletter_topic, value, key=key, headers=headers)
            step.consumed({tp: upto})


@dataclass(frozen=True, slots=True)
class Ready:
    """A ready record as a lane holds it: decoded once, or the reason it cannot be."""

    rec: ConsumerRecord[bytes, bytes]
    file: ReadyFile | None
    poison: Exception | None = None


@dataclass(eq=False)
class PartitionWork:
    """One assigned partition's lanes, their tasks, its halt and its MESH request slots."""

    lanes: PartitionLanes[Ready]
    halt: asyncio.Event
    slots: asyncio.Semaphore
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    paused: bool = False


def _decode(rec: ConsumerRecord[bytes, bytes]) -> Ready:
    try:
        return Ready(rec, _DECODE_READY.decode(rec.value or b""))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Ready(rec, None, exc)


def lane_of(rec: ConsumerRecord[bytes, bytes], item: Ready) -> Hashable:
    """The batch key from the file itself (so records keyed otherwise, e.g. by file name before
    catalogue v6, still share their key's lane); an undecodable record gets a lane of its own."""
    if item.file is not None:
        return encode_key(item.file.vaccine_type, item.file.sender_ods)
    return ("undecodable", rec.offset)


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
