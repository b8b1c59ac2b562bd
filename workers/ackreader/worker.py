"""The ack reader: our MESH inbox -> vaccination.acks, one AckOutcome per acknowledgement file.

Every `ack_poll_seconds` (production: no more often than every 5 minutes, as MESH asks) it lists
our inbox, downloads each message and recognises it by its mex-filename (schemas.acks.ack_file_kind):

- `…_InfAck_….csv`  -> kind "InfAck": the file-level verdict (accepted = header and permissions ok);
- `…_BusAck_….csv`  -> kind "BusAck": one RowOutcome per failed row;
- `…_BusAck_….json` -> kind "BusAckReport": the same failures plus the receiver's row totals;
- anything else, or an ack that cannot be parsed -> kind "unknown" (with `error`), so nothing that
  reached our mailbox disappears without a trace.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Final

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from schemas.acks import (
    AckFormatError,
    AckName,
    BusAckRow,
    ack_file_kind,
    parse_busack_csv,
    parse_busack_json,
    parse_infack,
)
from schemas.pipeline import AckOutcome, Origin, RowOutcome, SentReceipt
from topics.catalogue import ACKS
from workers.base.kafka import idempotent_producer
from workers.base.ledger import SentLedger
from workers.base.mesh.client import InboxMessage, MeshClient, MeshError, MeshPermanentError
from workers.base.mesh.settings import own_mailbox_config
from workers.base.runtime import Health
from workers.base.settings import Settings

log = logging.getLogger("vaxflow.ackreader")

KIND_INFACK: Final = "InfAck"
KIND_BUSACK: Final = "BusAck"
KIND_BUSACK_REPORT: Final = "BusAckReport"
KIND_UNKNOWN: Final = "unknown"

OUTCOMES = Counter("vaxflow_ackreader_outcomes_total", "Ack outcomes published", ["kind", "accepted"])
FAILED_ROWS = Counter("vaxflow_ackreader_failed_rows_total", "Rows NHS England reported as failed")
DEFERRED = Counter("vaxflow_ackreader_deferred_total", "Acks left in the inbox to wait for their sent receipt")
UNMATCHED = Counter("vaxflow_ackreader_unmatched_total", "Acks published without a sent receipt")
POLL_ERRORS = Counter("vaxflow_ackreader_poll_errors_total", "Inbox polls that failed", ["kind"])

_ENCODE = msgspec.json.Encoder()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def origin_of(receipt: SentReceipt | None, row: int) -> Origin | None:
    """The origin of data row `row` (1-based) of the file, when the receipt covers it."""
    if receipt is None or not 1 <= row <= len(receipt.origins):
        return None
    partition, offset = receipt.origins[row - 1]
    return partition, offset


def interpret(
    meta: InboxMessage, data: bytes, receipt: SentReceipt | None, name: AckName | None, received_at: str
) -> AckOutcome:
    """One MESH message as an AckOutcome; pure, so the mapping is testable without MESH or Kafka."""
    ack_file = meta.filename or ""
    if name is None:
        return AckOutcome(
            file_name=ack_file or meta.message_id, ack_file=ack_file, kind=KIND_UNKNOWN,
            mesh_message_id=meta.message_id, accepted=False, received_at=received_at,
            error="mex-filename is not an InfAck/BusAck file name",
        )
    file_name = receipt.file_name if receipt is not None else name.batch_file_key
    error = None if receipt is not None else "no sent receipt for this file: origins unknown"
    try:
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
    except AckFormatError as exc:
        return AckOutcome(
            file_name=file_name, ack_file=ack_file, kind=KIND_UNKNOWN, mesh_message_id=meta.message_id,
            accepted=False, received_at=received_at, error=f"unreadable {name.kind} ({name.format}): {exc}",
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
        self, settings: Settings, mesh: MeshClient, ledger: SentLedger, producer: AIOKafkaProducer, health: Health
    ) -> None:
        self.settings = settings
        self.mesh = mesh
        self.ledger = ledger
        self.producer = producer
        self.health = health
        self.topic = settings.topic(ACKS.name)
        self.first_seen: dict[str, float] = {}  # deferred message id -> monotonic time first seen

    async def poll_once(self) -> int:
        """Publish and acknowledge what is in the inbox now; returns how many messages were done."""
        await self.ledger.catch_up()
        ids = await self.mesh.inbox()
        self.first_seen = {m: t for m, t in self.first_seen.items() if m in ids}
        done = 0
        for message_id in ids:
            if await self.handle(message_id):
                done += 1
        return done

    async def handle(self, message_id: str) -> bool:
        received_at = _now_iso()
        try:
            meta, data = await self.mesh.download(message_id)
        except MeshPermanentError as exc:  # e.g. not valid gzip: publish why, then let it go
            outcome = AckOutcome(
                file_name=message_id, ack_file="", kind=KIND_UNKNOWN, mesh_message_id=message_id,
                accepted=False, received_at=received_at, error=f"download failed: {exc}"[:1000],
            )
            await self.publish(outcome)
            await self.mesh.acknowledge(message_id)
            return True
        name = ack_file_kind(meta.filename or "")
        receipt = self.ledger.find(name.batch_file_key) if name is not None else None
        if name is not None and receipt is None:
            first = self.first_seen.setdefault(message_id, time.monotonic())
            if time.monotonic() - first < self.settings.ack_match_grace_seconds:
                DEFERRED.inc()
                log.info("ack waits for its sent receipt", extra={"ack_file": meta.filename})
                return False
            UNMATCHED.inc()
        outcome = interpret(meta, data, receipt, name, received_at)
        await self.publish(outcome)
        await self.mesh.acknowledge(message_id)  # only after the outcome is safely in Kafka
        self.first_seen.pop(message_id, None)
        log.info(
            "ack published",
            extra={"file": outcome.file_name, "ack_file": outcome.ack_file, "kind": outcome.kind,
                   "accepted": outcome.accepted, "failed_rows": len(outcome.failed_rows),
                   "mesh_message_id": message_id},
        )
        return True

    async def publish(self, outcome: AckOutcome) -> None:
        await self.producer.send_and_wait(self.topic, _ENCODE.encode(outcome), key=outcome.file_name.encode())
        OUTCOMES.labels(outcome.kind, str(outcome.accepted).lower()).inc()
        FAILED_ROWS.inc(len(outcome.failed_rows))

    async def run(self, stop: asyncio.Event) -> None:
        self.health.ready = True
        while not stop.is_set():
            self.health.progress(busy=True)  # a poll under way: a hung MESH call is a stall
            try:
                done = await self.poll_once()
                self.health.detail = {"last_poll_done": done, "waiting_for_receipt": len(self.first_seen)}
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
    producer = idempotent_producer(settings, max_request_size=ACKS.max_message_bytes)
    await producer.start()
    try:
        async with MeshClient(own_mailbox_config(settings)) as mesh, SentLedger(settings) as ledger:
            await AckReader(settings, mesh, ledger, producer, health).run(stop)
    finally:
        await producer.stop()
