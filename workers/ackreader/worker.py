"""The ack reader: our MESH inbox -> vaccination.acks, one AckOutcome per acknowledgement file.

Every `ack_poll_seconds` (production: no more often than every 5 minutes, as MESH asks) it lists
our inbox, downloads each message and recognises it by its mex-filename (schemas.acks.ack_file_kind):

- `…_InfAck_….csv`  -> kind "InfAck": the file-level verdict (accepted = header and permissions ok);
- `…_BusAck_….csv`  -> kind "BusAck": one RowOutcome per failed row;
- `…_BusAck_….json` -> kind "BusAckReport": the same failures plus the receiver's row totals;
- anything else -> kind "unknown" (with `error`), so nothing that reached our mailbox disappears
  without a trace;
- an extended-attribute (EA) file's InfAck failure is named from the EA file's key, so it is read and
  linked like any other; an EA file NHS England *accepts* gets no acknowledgement at all, so MESH
  tracking of the sent message stands in for one -> kind "Delivered" or "Undelivered"
  (workers/ackreader/delivery.py says exactly when, and how memory, restarts and tracking calls
  stay bounded);
- an ack that cannot be read (bad gzip, not UTF-8, a row number like `²` or of 5,000 digits, a
  CSV field over csv's limit, any other parse fault), or whose outcome is too large for the acks
  topic -> kind "unreadable": quarantined (issue 16).

Quarantine: an unreadable message used to raise out of the poll, so the worker crash-looped on
it and never acknowledged it, and every acknowledgement behind it waited for ever. Now it is
published to vaccination.acks as kind "unreadable" with its reason (`error`), its own bytes
(`content`, as acknowledging deletes MESH's copy) and Connect-style headers (vaxflow.dlq.stage
"ack", reasons, exception class, MESH message id, file name), then acknowledged, counted in
`vaxflow_ackreader_quarantined_total{reason}` and logged without its content; the worker goes on.
The acks topic is the one the catalogue lets the ack reader write: the rejected topic holds events
and the dead-letter topic files to redrive to MESH, neither of which an acknowledgement is.

Each ack names the batch file it answers; the sent-files ledger (workers.base.ledger, the same reader
the uploader uses) gives that file's receipt, whose `origins[n-1]` is the origin of data row n, so
every failed row is linked back to the event that caused it. An ack that arrives before its
file's receipt is visible (NHS can answer faster than our ledger transaction commits) is left in
the inbox for up to `ack_match_grace_seconds` and published without origins after that. (One
inbox page, up to 500 ids, is read per poll; a page full of waiting acks would delay newer ones
by at most that grace period.)

Order per message: publish (idempotent producer, acks=all, awaited), then acknowledge in MESH.
A crash or MESH failure between the two re-delivers the message on the next poll, so the topic
is **at least once**: consumers de-duplicate by `mesh_message_id` (one outcome per MESH message).
The reverse order could lose an acknowledgement for good, which is worse. Several ack readers on
one mailbox are safe for the same reason, only wasteful. File content is never logged.

One poll: read the ledger (and the acks topic, for EA files settled meanwhile) to their ends; track
the EA files due; read the inbox; then publish Delivered/Undelivered for the tracked files that the
inbox did not just settle. Tracking *before* the inbox means an InfAck failure sent before the
recipient acknowledged the file (as the simulator does) is always read first, so it is not
preceded by a Delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge

from schemas.acks import (
    AckFormatError,
    AckName,
    BusAckRow,
    ack_file_kind,
    parse_busack_csv,
    parse_busack_json,
    parse_infack,
)
from schemas.extended import is_extended_file_name
from schemas.pipeline import AckOutcome, Origin, RowOutcome, SentReceipt
from schemas.record import Reason
from topics import headers as h
from topics.catalogue import ACKS
from workers.ackreader.delivery import DeliveryBook, delivery_outcome, settled_name
from workers.base.kafka import idempotent_producer
from workers.base.ledger import SentLedger
from workers.base.mesh.client import (
    InboxMessage,
    MeshClient,
    MeshError,
    MeshPermanentError,
    MeshTransientError,
    TrackingInfo,
)
from workers.base.mesh.settings import own_mailbox_config
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.base.topic_reader import TopicFollower

log = logging.getLogger("vaxflow.ackreader")

KIND_INFACK: Final = "InfAck"
KIND_BUSACK: Final = "BusAck"
KIND_BUSACK_REPORT: Final = "BusAckReport"
KIND_UNKNOWN: Final = "unknown"
KIND_UNREADABLE: Final = "unreadable"
STAGE: Final = "ack"
# Reasons of a quarantine besides AckFormatError's own (schemas.acks.AckFormatReason).
DOWNLOAD: Final = "download"  # MESH's answer could not be undone (not valid gzip)
UNEXPECTED: Final = "unexpected"  # any other fault while reading this one message
TOO_LARGE: Final = "too_large"  # its outcome is larger than the acks topic takes
# The most of a quarantined message's bytes kept in its outcome (the acks topic takes 8 MiB a
# record; base64 in JSON adds a third).
QUARANTINE_MAX_BYTES: Final = 4 * 1024 * 1024

OUTCOMES = Counter("vaxflow_ackreader_outcomes_total", "Ack outcomes published", ["kind", "accepted"])
FAILED_ROWS = Counter("vaxflow_ackreader_failed_rows_total", "Rows NHS England reported as failed")
DEFERRED = Counter("vaxflow_ackreader_deferred_total", "Acks left in the inbox to wait for their sent receipt")
UNMATCHED = Counter("vaxflow_ackreader_unmatched_total", "Acks published without a sent receipt")
POLL_ERRORS = Counter("vaxflow_ackreader_poll_errors_total", "Inbox polls that failed", ["kind"])
TRACKING_CALLS = Counter(
    "vaxflow_ackreader_tracking_calls_total", "MESH tracking calls for extended-attribute files", ["result"]
)
TRACKING_PENDING = Gauge(
    "vaxflow_ackreader_tracking_pending", "Extended-attribute files awaiting a MESH delivery verdict"
)
QUARANTINED = Counter(
    "vaxflow_ackreader_quarantined_total", "Unreadable inbox messages published as kind unreadable and acknowledged",
    ["reason"],
)

_ENCODE = msgspec.json.Encoder()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def origin_of(receipt: SentReceipt | None, row: int) -> Origin | None:
    """The origin of data row `row` (1-based) of the file, when the receipt covers it."""
    if receipt is None or not 1 <= row <= len(receipt.origins):
        return None
    partition, offset = receipt.origins[row - 1]
    return partition, offset


@dataclass(frozen=True, slots=True)
class Quarantine:
    """An unreadable message as it is published: its outcome, headers and the metric's reason."""

    outcome: AckOutcome
    headers: h.Headers
    reason: str


def quarantined(
    *, message_id: str, ack_file: str, file_name: str, data: bytes, reason: str, exc_class: str, message: str,
    received_at: str,
) -> Quarantine:
    """The quarantine record of one message (module docstring); pure. `message` holds no content."""
    kept = data[:QUARANTINE_MAX_BYTES]
    outcome = AckOutcome(
        file_name=file_name, ack_file=ack_file, kind=KIND_UNREADABLE, mesh_message_id=message_id, accepted=False,
        received_at=received_at, error=h.printable(message)[:1000], content=kept,
    )
    headers = h.quarantine_headers(
        stage=STAGE, exc_class=exc_class, exc_message=message, mesh_message_id=message_id, file_name=ack_file,
        reasons=[Reason(field="file", rule=f"ack.{reason}", message=h.printable(message)[:1000])],
    )
    if len(kept) < len(data):
        headers.append((h.SOURCE_TRUNCATED, str(len(data)).encode()))
    return Quarantine(outcome, headers, reason)


def unreadable(
    meta: InboxMessage, ack_file: str, data: bytes, receipt: SentReceipt | None, name: AckName | None,
    exc: Exception, received_at: str,
) -> Quarantine:
    """The quarantine of a message `interpret` failed on: AckFormatError with its own reason and
    message (which hold no values); anything else as "unexpected", named by class and place only."""
    what = f"{name.kind} ({name.format})" if name is not None else "message"
    reason: str
    if isinstance(exc, AckFormatError):
        reason, message = exc.reason, f"unreadable {what}: {exc}"
    else:
        reason, message = UNEXPECTED, f"unreadable {what}: {type(exc).__name__} at {_where(exc)}"
    file_name = receipt.file_name if receipt else name.batch_file_key if name else ack_file or meta.message_id
    return quarantined(
        message_id=h.printable(meta.message_id), ack_file=ack_file, file_name=file_name, data=data, reason=reason,
        exc_class=type(exc).__name__, message=message, received_at=received_at,
    )


def _where(exc: BaseException) -> str:
    """`file:line` of the innermost frame: where an unforeseen fault arose, without its message
    (which may quote the file's values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename.rpartition('/')[2]}:{frames[-1].lineno}" if frames else "?"


def interpret(
    meta: InboxMessage, data: bytes, receipt: SentReceipt | None, name: AckName | None, received_at: str
) -> AckOutcome:
    """One MESH message as an AckOutcome; pure, so the mapping is testable without MESH or Kafka.

    Raises AckFormatError (with its reason) when the bytes are not the ack the name says.
    """
    ack_file = h.printable(meta.filename or "")
    if name is None:
        return AckOutcome(
            file_name=ack_file or meta.message_id, ack_file=ack_file, kind=KIND_UNKNOWN,
            mesh_message_id=meta.message_id, accepted=False, received_at=received_at,
            error="mex-filename is not an InfAck/BusAck file name",
        )
    file_name = receipt.file_name if receipt is not None else name.batch_file_key
    error = None if receipt is not None else "no sent receipt for this file: origins unknown"
    if name.kind == "InfAck":
        infack = parse_infack(data)
        return AckOutcome(
            file_name=file_name, ack_file=ack_file, kind=KIND_INFACK, mesh_message_id=meta.message_id,
            accepted=infack.success, total_rows=receipt.rows if receipt else None,
            received_at=received_at, error=error,
        )
    if name.format == "csv":
        rows = parse_busack_csv(data)
        return AckOutcome(
            file_name=file_name, ack_file=ack_file, kind=KIND_BUSACK, mesh_message_id=meta.message_id,
            accepted=not rows, total_rows=receipt.rows if receipt else None,
            failed_rows=[_row_outcome(receipt, row) for row in rows], received_at=received_at, error=error,
        )
    report = parse_busack_json(data)
    failed = [
        RowOutcome(
            row=f.row_id, origin=origin_of(receipt, f.row_id), local_id=f.local_id,
            response_code=f.response_code, severity=f.severity, message=f.operation_outcome,
        )
        for f in report.failures
    ]
    return AckOutcome(
        file_name=file_name, ack_file=ack_file, kind=KIND_BUSACK_REPORT, mesh_message_id=meta.message_id,
        accepted=report.summary.failed == 0 and not failed, total_rows=report.summary.total_records,
        failed_rows=failed, received_at=received_at, error=error,
    )


def _row_outcome(receipt: SentReceipt | None, row: BusAckRow) -> RowOutcome:
    number = row.row_number
    return RowOutcome(
        row=number, origin=origin_of(receipt, number), local_id=row.LOCAL_ID,
        response_code=row.RESPONSE_CODE, severity=row.ISSUE_SEVERITY, message=row.OPERATION_OUTCOME,
    )


class AckReader:
    """Polls one mailbox; `poll_once` is the unit tests drive directly."""

    def __init__(
        self, settings: Settings, mesh: MeshClient, ledger: SentLedger, producer: AIOKafkaProducer, health: Health,
        *, book: DeliveryBook | None = None, acks_seen: TopicFollower | None = None,
    ) -> None:
        """`book` (fed by the ledger's `on_receipt`) turns on EA delivery tracking; `acks_seen`, a
        follower of the acks topic applying `settle_from`, lets what is already there settle files."""
        self.settings = settings
        self.mesh = mesh
        self.ledger = ledger
        self.producer = producer
        self.health = health
        self.topic = settings.topic(ACKS.name)
        self.first_seen: dict[str, float] = {}  # deferred message id -> monotonic time first seen
        self.book = book
        self.acks_seen = acks_seen

    async def poll_once(self) -> int:
        """Publish and acknowledge what is in the inbox now, and the EA delivery outcomes tracking
        allows; returns how many inbox messages were done."""
        await self.ledger.catch_up()
        tracked = await self.track() if await self.acks_read() else []
        ids = await self.mesh.inbox()
        self.first_seen = {m: t for m, t in self.first_seen.items() if m in ids}
        done = 0
        for message_id in ids:
            if await self.handle(message_id):
                done += 1
        await self.publish_tracked(tracked)
        return done

    async def acks_read(self) -> bool:
        """Read the acks topic to its end; False when that fails. Then this poll tracks nothing (it
        cannot know what is settled) but still reads the inbox: acknowledgements never wait on
        delivery tracking."""
        if self.acks_seen is None:
            return True
        try:
            await self.acks_seen.catch_up()
        except (KafkaError, TimeoutError) as exc:
            POLL_ERRORS.labels(f"acks_read_{type(exc).__name__}").inc()
            log.warning("acks topic not readable; EA delivery tracking waits", extra={"error": str(exc)[:300]})
            return False
        return True

    def settle_from(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """The acks follower's `apply`: an outcome for an EA file (from any ack reader) settles it."""
        name = settled_name(record)
        if name is not None and self.book is not None:
            self.book.settle(name, record.timestamp / 1000)

    async def track(self) -> list[tuple[SentReceipt, TrackingInfo]]:
        """Ask MESH about the EA files due (at most `per_poll`); those with a verdict.

        A transient MESH failure ends this round (MESH is likely down for all of them); a permanent
        one for one message skips it. Either way the file stays pending, at the back of the queue.
        """
        book = self.book
        if book is None:
            return []
        verdicts: list[tuple[SentReceipt, TrackingInfo]] = []
        for name in book.due(time.time()):
            receipt = self.ledger.get(name)
            if receipt is None:
                book.forget(name)
                continue
            try:
                info = await self.mesh.tracking(receipt.message_id)
            except MeshTransientError as exc:
                TRACKING_CALLS.labels("failed").inc()
                book.checked(name)  # to the back: one message MESH keeps failing on starves no other
                log.warning("MESH tracking failed; tried again next poll", extra={"error": str(exc)[:300]})
                break
            except MeshError as exc:
                TRACKING_CALLS.labels("failed").inc()
                book.checked(name)
                log.warning("MESH tracking refused for one message", extra={
                    "file": name, "mesh_message_id": receipt.message_id, "error": str(exc)[:300]})
                continue
            book.checked(name)
            if info is None:
                TRACKING_CALLS.labels("unknown").inc()
            elif info.acknowledged or info.undeliverable:
                TRACKING_CALLS.labels("verdict").inc()
                verdicts.append((receipt, info))
            else:
                TRACKING_CALLS.labels("waiting").inc()
        TRACKING_PENDING.set(len(book.pending))
        return verdicts

    async def publish_tracked(self, verdicts: list[tuple[SentReceipt, TrackingInfo]]) -> None:
        """Publish each verdict not settled meanwhile (by an InfAck read in this very poll)."""
        book = self.book
        if book is None:
            return
        for receipt, info in verdicts:
            outcome = delivery_outcome(receipt, info, _now_iso())
            if outcome is None or book.is_settled(receipt.file_name):
                continue
            await self.publish(outcome)  # a Kafka failure leaves it pending: tracked again next poll
            book.settle(receipt.file_name, time.time())
            log.info("extended-attribute file outcome from MESH tracking", extra={
                "file": outcome.file_name, "kind": outcome.kind, "accepted": outcome.accepted,
                "mesh_message_id": outcome.mesh_message_id})
        TRACKING_PENDING.set(len(book.pending))

    async def handle(self, message_id: str) -> bool:
        received_at = _now_iso()
        try:
            meta, data = await self.mesh.download(message_id)
        except MeshPermanentError as exc:  # e.g. not valid gzip: set aside with why, then let it go
            await self.quarantine(message_id, quarantined(
                message_id=message_id, ack_file="", file_name=message_id, data=b"", reason=DOWNLOAD,
                exc_class=type(exc).__name__, message=f"download failed: {exc}", received_at=received_at,
            ))
            return True
        ack_file = h.printable(meta.filename or "")  # a name of non-UTF-8 bytes could not be encoded
        name = ack_file_kind(ack_file)
        receipt = self.ledger.find(name.batch_file_key) if name is not None else None
        if name is not None and receipt is None:
            first = self.first_seen.setdefault(message_id, time.monotonic())
            if time.monotonic() - first < self.settings.ack_match_grace_seconds:
                DEFERRED.inc()
                log.info("ack waits for its sent receipt", extra={"ack_file": ack_file})
                return False
            UNMATCHED.inc()
        try:
            outcome = interpret(meta, data, receipt, name, received_at)
        except Exception as exc:  # any fault of this one message: set it aside and go on
            await self.quarantine(message_id, unreadable(meta, ack_file, data, receipt, name, exc, received_at))
            self.first_seen.pop(message_id, None)
            return True
        try:
            await self.publish(outcome)
        except MessageSizeTooLargeError:  # would fail on every poll, and hold up the acks behind it
            await self.quarantine(message_id, quarantined(
                message_id=outcome.mesh_message_id, ack_file=ack_file, file_name=outcome.file_name, data=data,
                reason=TOO_LARGE, exc_class="MessageSizeTooLargeError", received_at=received_at,
                message=f"{outcome.kind} outcome of {len(outcome.failed_rows)} rows is over the acks topic's limit",
            ))
            self.first_seen.pop(message_id, None)
            return True
        await self.mesh.acknowledge(message_id)  # only after the outcome is safely in Kafka
        self.first_seen.pop(message_id, None)
        if outcome.kind != KIND_UNKNOWN:  # an unknown message is keyed by its own name, not a file we sent
            self.settle(outcome.file_name)
        log.info(
            "ack published",
            extra={"file": outcome.file_name, "ack_file": outcome.ack_file, "kind": outcome.kind,
                   "accepted": outcome.accepted, "failed_rows": len(outcome.failed_rows),
                   "mesh_message_id": message_id},
        )
        return True

    async def quarantine(self, message_id: str, q: Quarantine) -> None:
        """Publish an unreadable message's record, then acknowledge it in MESH (the same order, and
        the same at-least-once, as an outcome); count and log it without its content."""
        try:
            await self.publish(q.outcome, q.headers)
        except MessageSizeTooLargeError:  # only when the topic takes less than QUARANTINE_MAX_BYTES
            size = len(q.outcome.content or b"")
            without = msgspec.structs.replace(q.outcome, content=b"")
            await self.publish(without, [*q.headers, (h.SOURCE_TRUNCATED, str(size).encode())])
        await self.mesh.acknowledge(message_id)
        self.settle(q.outcome.file_name)
        QUARANTINED.labels(q.reason).inc()
        log.warning(
            "unreadable ack quarantined",
            # the reason word and the exception class only: a parser's message may quote a byte or
            # two of the file (gzip's does); the full `error` is in the record on the acks topic
            extra={"reason": q.reason, "exception": (h.header(q.headers, h.DLQ_EXC_CLASS) or b"").decode(),
                   "ack_file": q.outcome.ack_file, "mesh_message_id": q.outcome.mesh_message_id,
                   "bytes": len(q.outcome.content or b"")},
        )

    def settle(self, file_name: str) -> None:
        """An acknowledgement of an EA file was published: its fate is NHS England's word, not
        MESH tracking's (an unreadable one is for an operator to judge)."""
        if self.book is not None and is_extended_file_name(file_name):
            self.book.settle(file_name, time.time())

    async def publish(self, outcome: AckOutcome, headers: h.Headers | None = None) -> None:
        await self.producer.send_and_wait(
            self.topic, _ENCODE.encode(outcome), key=outcome.file_name.encode(), headers=headers or None
        )
        OUTCOMES.labels(outcome.kind, str(outcome.accepted).lower()).inc()
        FAILED_ROWS.inc(len(outcome.failed_rows))

    async def run(self, stop: asyncio.Event) -> None:
        self.health.ready = True
        while not stop.is_set():
            self.health.progress(busy=True)  # a poll under way: a hung MESH call is a stall
            try:
                done = await self.poll_once()
                self.health.detail = {
                    "last_poll_done": done, "waiting_for_receipt": len(self.first_seen),
                    "awaiting_delivery": len(self.book.pending) if self.book is not None else 0,
                }
            except (MeshError, KafkaError) as exc:
                # Transient or not, the next poll tries again: an unacknowledged message is redone.
                POLL_ERRORS.labels(type(exc).__name__).inc()
                log.warning("inbox poll failed", extra={"error": str(exc)[:300]})
            self.health.progress(busy=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.ack_poll_seconds)
        self.health.ready = False


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Worker entry point (`python -m workers.ackreader`)."""
    book = DeliveryBook(horizon=settings.ack_delivery_horizon_seconds, per_poll=settings.ack_tracking_per_poll)
    since_ms = int((time.time() - settings.ack_delivery_horizon_seconds) * 1000)

    def offer(receipt: SentReceipt) -> None:
        book.offer(receipt, time.time())

    producer = idempotent_producer(settings, max_request_size=ACKS.max_message_bytes)
    await producer.start()
    try:
        async with (
            MeshClient(own_mailbox_config(settings)) as mesh,
            SentLedger(settings, on_receipt=offer) as ledger,
        ):
            reader = AckReader(settings, mesh, ledger, producer, health, book=book)
            # The acks topic from the horizon on: what this or another ack reader already published
            # settles an EA file, so a restart publishes no second Delivered.
            async with TopicFollower(
                settings, [settings.topic(ACKS.name)], reader.settle_from,
                fetch_bytes=ACKS.max_message_bytes + 1024 * 1024, since_ms=since_ms,
            ) as acks_seen:
                reader.acks_seen = acks_seen
                await reader.run(stop)
    finally:
        await producer.stop()
