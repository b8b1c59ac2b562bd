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
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from schemas.pipeline import ReadyFile, SentReceipt, UploadFailure, encode_origin
from topics import headers as h
from topics.catalogue import DEADLETTER, READY, SENT
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import committed_consumer
from workers.base.ledger import SentLedger, encode_receipt
from workers.base.mesh.client import (
    MeshClient,
    MeshError,
    MeshPermanentError,
    MeshTLSError,
    MeshTransientError,
    TrackingInfo,
    chunk_count,
)
from workers.base.mesh.settings import own_mailbox_config
from workers.base.partition_producers import PartitionProducers, PartitionState
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.uploader.retry import Sleep, upload_retrying
from workers.uploader.routes import NoRouteError, Route, RoutingTable, load_routes

log = logging.getLogger("vaxflow.uploader")

ATTEMPTS = Counter("vaxflow_uploader_attempts_total", "MESH upload attempts by outcome", ["outcome"])
TLS_HOLDS = Counter("vaxflow_uploader_tls_holds_total", "Waits on a MESH certificate that failed verification")
FILES_SENT = Counter("vaxflow_uploader_files_sent_total", "Files recorded as sent, per recipient", ["recipient"])
BYTES_SENT = Counter("vaxflow_uploader_bytes_total", "File bytes recorded as sent, per recipient", ["recipient"])
RECOVERED = Counter("vaxflow_uploader_recovered_total", "Files found in MESH by local id, not sent again")
SKIPPED = Counter("vaxflow_uploader_skipped_total", "Ready files already in the sent ledger")
DEAD_LETTERS = Counter("vaxflow_uploader_dead_letters_total", "Files sent to the dead-letter topic", ["reason"])

# Dead-letter header with MESH's HTTP status (absent when MESH never answered or was not asked).
DLQ_MESH_STATUS: Final = "vaxflow.dlq.mesh.status"
# Ready records carry whole files: the topic allows 32 MiB, JSON base64 adds a third; leave room.
FETCH_BYTES: Final = 40 * 1024 * 1024
PRODUCE_BYTES: Final = 48 * 1024 * 1024
# After this many incomplete uploads under one local id something is badly wrong: stop, dead-letter.
MAX_GENERATIONS: Final = 20
# Files fetched per poll, per file allowed in flight: each may take minutes under retries, and polls
# must stay frequent enough (the per-poll budget in process_partition cuts a long poll short).
RECORDS_PER_POLL_PER_SLOT: Final = 4
_BODY_LIMIT: Final = 16 * 1024

_DECODE_READY = msgspec.json.Decoder(ReadyFile)
_ENCODE = msgspec.json.Encoder()


def local_id_generation(local_id: str, generation: int) -> str:
    """Generation 1 is the batcher's local id itself; later ones follow an incomplete upload."""
    return local_id if generation == 1 else f"{local_id}.g{generation}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _next_group(
    records: list[ConsumerRecord[bytes, bytes]], start: int, size: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Up to `size` records from `start` whose keys (file names) differ: two copies of one file are
    never in flight together, so the ledger check of the second sees the first's receipt."""
    group: list[ConsumerRecord[bytes, bytes]] = []
    keys: set[bytes | None] = set()
    for rec in records[start : start + size]:
        if rec.key in keys:
            break
        keys.add(rec.key)
        group.append(rec)
    return group


class _Abandoned(Exception):
    """Stop or revocation arrived while waiting to retry: nothing is in flight, leave the file."""


class UploadRefused(Exception):
    """The file cannot be delivered: MESH refused it, no route, or retries ran out."""

    def __init__(self, cause: BaseException, *, status: int | None, body: str, attempts: int) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.status = status
        self.body = body
        self.attempts = attempts


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: str
    local_id: str
    mailbox_to: str
    workflow_id: str
    recovered: bool
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """One ready record's fate, decided before anything is written: `poison` when the record is no
    ReadyFile; otherwise `file` plus its delivery, its refusal, or neither (already in the ledger)."""

    file: ReadyFile | None = None
    delivery: Delivery | None = None
    refused: UploadRefused | None = None
    poison: Exception | None = None


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
            settings, prefix=self.group, state=_HandOver(self), linger_ms=0, max_request_size=PRODUCE_BYTES
        )
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
            group = _next_group(records, start, self.settings.uploader_concurrency)
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
            if isinstance(outcome, _Abandoned):
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
            return Outcome(file=file, delivery=await self.deliver(file, route, halt))
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

    async def deliver(self, file: ReadyFile, route: Route, halt: asyncio.Event) -> Delivery:
        """Track, then send, retrying transient failures; raises UploadRefused or _Abandoned.

        While MESH's certificate fails verification the file is held (not counted, not
        dead-lettered) and the worker reports itself not ready until a request gets through.
        """
        sleep = self._interruptible_sleep(halt)
        while True:
            try:
                delivery = await self._deliver_bounded(file, route, sleep)
            except MeshTLSError as exc:
                TLS_HOLDS.inc()
                self.health.ready = False
                self.health.detail["mesh_tls"] = "server certificate not trusted: check VAXFLOW_MESH_CA_FILE"
                log.error("MESH certificate verification failed; holding the file until it is fixed",
                          extra={"file": file.file_name, "error": str(exc)})
                await sleep(self.settings.upload_backoff_max_seconds)
                continue
            if "mesh_tls" in self.health.detail:
                del self.health.detail["mesh_tls"]
                self.health.ready = True
            return delivery

    async def _deliver_bounded(self, file: ReadyFile, route: Route, sleep: Sleep) -> Delivery:
        attempts = 0
        try:
            async for attempt in upload_retrying(self.settings, sleep=sleep):
                with attempt:
                    attempts += 1
                    self.health.progress()
                    return await self._attempt(file, route, attempts)
        except MeshTLSError:
            raise
        except MeshTransientError as exc:
            raise UploadRefused(exc, status=exc.status, body=exc.body, attempts=attempts) from exc
        except MeshPermanentError as exc:
            raise UploadRefused(exc, status=exc.status, body=exc.body, attempts=attempts) from exc
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    async def _attempt(self, file: ReadyFile, route: Route, attempt: int) -> Delivery:
        try:
            found, local_id = await self.find_sent(file)
            if found is not None and found.complete:
                ATTEMPTS.labels("recovered").inc()
                return Delivery(
                    message_id=found.message_id,
                    local_id=local_id,
                    mailbox_to=found.recipient or route.mailbox,
                    workflow_id=found.workflow_id or route.workflow_id,
                    recovered=True,
                    attempts=attempt,
                )
            if found is not None:  # an interrupted chunked upload of this very file: finish it
                message_id = await self.resume(found, file)
                ATTEMPTS.labels("resumed").inc()
                return Delivery(
                    message_id=message_id,
                    local_id=local_id,
                    mailbox_to=found.recipient or route.mailbox,
                    workflow_id=found.workflow_id or route.workflow_id,
                    recovered=True,
                    attempts=attempt,
                )
            message_id = await self.mesh.send(
                route.mailbox,
                route.workflow_id,
                file.content,
                filename=file.file_name,
                local_id=local_id,
                chunk_size=self.settings.mesh_chunk_bytes,
            )
        except MeshTransientError:
            ATTEMPTS.labels("transient").inc()
            raise
        except MeshPermanentError:
            ATTEMPTS.labels("permanent").inc()
            raise
        ATTEMPTS.labels("sent").inc()
        return Delivery(
            message_id=message_id,
            local_id=local_id,
            mailbox_to=route.mailbox,
            workflow_id=route.workflow_id,
            recovered=False,
            attempts=attempt,
        )

    async def resume(self, found: TrackingInfo, file: ReadyFile) -> str:
        """Send the remaining chunks of `found`; a refusal is retried as transient, so the next
        attempt tracks again (the message may have completed, or expired, in between)."""
        log.warning("resuming an interrupted chunked upload",
                    extra={"file": file.file_name, "message_id": found.message_id, "chunks": found.total_chunks})
        try:
            return await self.mesh.resume(
                found.message_id, file.content, total_chunks=found.total_chunks or 0,
                chunk_size=self.settings.mesh_chunk_bytes,
            )
        except MeshPermanentError as exc:
            raise MeshTransientError(f"resume of {found.message_id} refused", status=exc.status, body=exc.body) from exc

    async def find_sent(self, file: ReadyFile) -> tuple[TrackingInfo | None, str]:
        """(what MESH holds for this file, its local id) or (None, the local id to send with).

        What MESH holds is either complete (record it, never send again) or an upload that stopped
        between chunks and can be resumed (same chunk count as this file makes now). An incomplete
        upload that cannot be resumed (the chunk size setting changed) is left to expire and the
        file goes under the next local-id generation; generations therefore exist only after such
        a case, and the walk is normally one request.
        """
        chunks = chunk_count(len(file.content), self.settings.mesh_chunk_bytes)
        for generation in range(1, MAX_GENERATIONS + 1):
            local_id = local_id_generation(file.local_id, generation)
            info = await self.mesh.track_by_local_id(local_id)
            if info is None:
                return None, local_id
            if info.filename and info.filename != file.file_name:
                raise MeshPermanentError(
                    None, "", reason=f"local id {local_id} already names another file in MESH"
                )
            if info.complete or (info.total_chunks == chunks and chunks > 1):
                return info, local_id
            log.warning("incomplete upload found in MESH that cannot be resumed; using the next local id",
                        extra={"file": file.file_name, "generation": generation, "status": info.status,
                               "chunks_in_mesh": info.total_chunks, "chunks_now": chunks})
        raise MeshPermanentError(None, "", reason=f"{MAX_GENERATIONS} incomplete uploads of {file.file_name}")

    def _interruptible_sleep(self, halt: asyncio.Event) -> Sleep:
        stop = self.stop

        async def sleep(seconds: float) -> None:
            if stop.is_set() or halt.is_set():
                raise _Abandoned()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(halt.wait())}
            done, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if done:
                raise _Abandoned()

        return sleep

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
                headers=_origin_headers(rec, file),
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
            origin=_origin_value(rec, file),
        )
        if refused.status is not None:
            headers.append((DLQ_MESH_STATUS, str(refused.status).encode()))
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


def _origin_value(rec: ConsumerRecord[bytes, bytes], file: ReadyFile) -> bytes:
    found = h.header(rec.headers, h.ORIGIN)
    if found:
        return found
    return encode_origin(file.origins[0]) if file.origins else b""


def _origin_headers(rec: ConsumerRecord[bytes, bytes], file: ReadyFile) -> h.Headers:
    value = _origin_value(rec, file)
    return [(h.ORIGIN, value)] if value else []


def _seek(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """Rewind to a file not finished; harmless if the partition has just been taken away."""
    try:
        consumer.seek(tp, offset)
    except IllegalStateError:
        log.debug("seek skipped: partition no longer assigned", extra={"partition": tp.partition})


class _HandOver(PartitionState):
    """The uploader's hand-over rules: an attempt in flight finishes before its partition goes, and
    a new partition's files wait until its producer exists and the sent ledger is read to its end."""

    def __init__(self, uploader: Uploader) -> None:
        self.uploader = uploader

    @contextlib.asynccontextmanager
    async def assigning(self, assigned: set[TopicPartition]) -> AsyncIterator[None]:
        # The fetcher may hand out records of these partitions before this callback ends; holding
        # their locks makes processing wait until the producer exists and the ledger is read.
        for tp in assigned:
            self.uploader.halts[tp] = asyncio.Event()
        async with contextlib.AsyncExitStack() as held:
            for tp in sorted(assigned):
                await held.enter_async_context(self.uploader.lock_for(tp))
            yield

    async def load(self, assigned: set[TopicPartition]) -> None:
        applied = await self.uploader.ledger.catch_up()
        log.info(
            "partitions assigned; ledger read to its end",
            extra={"partitions": sorted(tp.partition for tp in assigned), "ledger_records": applied,
                   "ledger_files": len(self.uploader.ledger)},
        )

    async def release(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            halt = self.uploader.halts.pop(tp, None)
            if halt is not None:
                halt.set()  # a backoff wait gives up at once
        for tp in revoked:
            async with self.uploader.lock_for(tp):
                pass  # the attempt in flight finishes and records its outcome before we let go


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Worker entry point (`python -m workers.uploader`)."""
    routes = load_routes(settings.routes_file)
    config = own_mailbox_config(settings, allowed_workflows=routes.workflows)
    async with MeshClient(config) as mesh, SentLedger(settings, keep_origins=False) as ledger:
        await ledger.catch_up()
        try:
            await mesh.handshake()
        except MeshError as exc:  # MESH down at start is no reason not to start: files wait
            log.warning("MESH handshake failed at start", extra={"error": str(exc)[:300]})
        await Uploader(settings, routes, mesh, ledger, stop, health).run()
