"""`vaxflow redrive`: put dead letters back into the pipeline after the cause has been fixed.

- From `vaccination.events.rejected` (the validator's rejections): the original bytes go back to
  the raw topic, to the raw partition they first arrived on, with their `vaxflow.origin` header, so
  the event keeps its identity: the validator takes the origin from the header, every file row and
  acknowledgement still leads back to the first arrival. The validator's replay guard does not
  skip them: they are new offsets.
- From `vaccination.batches.deadletter` (files MESH refused or that ran out of retries): the same
  ReadyFile goes back to the ready topic, under its own name (it was never sent, so the name is
  free; a name already in the sent ledger is not redriven).

Only what can be redriven is: a rejection from the file source (a row of a provider's file that
never became an event) or an undecodable file record cannot, and the report says so.

Idempotent by the redrive ledger (vaxflow.ops.ledger): each re-submission and its ledger entry
are written in one transaction, and a later run leaves recorded dead letters alone. The header
`vaxflow.redrive.count` says how often this origin (or file) has been redriven, counting this time.
Dry run unless `execute`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from aiokafka.structs import ConsumerRecord

from schemas.batchkey import encode_key
from schemas.pipeline import UploadFailure
from topics import headers as h
from topics.catalogue import DEADLETTER, RAW, READY, REJECTED, SENT
from vaxflow.ops import ledger as ops_ledger
from vaxflow.ops.activity import deadletter_reason, rejection_reasons
from vaxflow.ops.scan import Meter, Silent, stream
from workers.base.checkpoint import Checkpoint
from workers.base.ledger import SentLedger
from workers.base.settings import Settings, TopicSettings

SOURCES = ("rejected", "deadletter")
FILTER_KEYS = ("reason", "vaccine", "sender")

_FAILURE = msgspec.json.Decoder(UploadFailure)
_ENCODE = msgspec.json.Encoder()


class RedriveError(ValueError):
    """The request cannot be carried out as given (unknown source or filter)."""


@dataclass(frozen=True, slots=True)
class RedriveFilter:
    """All given conditions must hold; values compare case-insensitively, reason as a substring
    of any of the dead letter's reasons ("sender_ods:permission", "ValidationError", "MeshPermanentError 403")."""

    reason: str | None = None
    vaccine: str | None = None
    sender: str | None = None

    @classmethod
    def parse(cls, items: Iterable[str]) -> RedriveFilter:
        values: dict[str, str] = {}
        for item in items:
            for part in item.split(","):
                name, sep, value = part.partition("=")
                name = name.strip().lower()
                if not sep or name not in FILTER_KEYS or not value.strip():
                    raise RedriveError(f"filter {part!r}: expected one of {', '.join(k + '=…' for k in FILTER_KEYS)}")
                values[name] = value.strip()
        return cls(**values)

    def matches(self, reasons: list[str], vaccine: str | None, sender: str | None) -> bool:
        if self.reason and not any(self.reason.lower() in r.lower() for r in reasons):
            return False
        if self.vaccine and (vaccine or "").upper() != self.vaccine.upper():
            return False
        return not (self.sender and (sender or "").upper() != self.sender.upper())


@dataclass(frozen=True, slots=True)
class Candidate:
    """One dead letter to re-submit, and where to."""

    source: str
    """Its coordinates '{topic}:{partition}:{offset}' (the ledger key)."""
    target_topic: str
    target_partition: int | None
    key: bytes | None
    value: bytes
    origin: bytes
    reasons: tuple[str, ...]
    file_name: str | None = None


@dataclass(slots=True)
class RedriveReport:
    source: str
    topic: str
    filters: RedriveFilter
    execute: bool
    scanned: int = 0
    matched: int = 0
    already_redriven: int = 0
    already_sent: int = 0
    not_redrivable: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    submitted: int = 0
    candidates: list[Candidate] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "topic": self.topic,
            "filters": {k: v for k, v in _filter_dict(self.filters).items() if v},
            "execute": self.execute,
            "scanned": self.scanned,
            "matched": self.matched,
            "already_redriven": self.already_redriven,
            "already_sent": self.already_sent,
            "not_redrivable": dict(self.not_redrivable),
            "to_redrive": len(self.candidates),
            "to_redrive_by_reason": dict(self.by_reason.most_common()),
            "submitted": self.submitted,
        }


def _filter_dict(f: RedriveFilter) -> dict[str, str | None]:
    return {"reason": f.reason, "vaccine": f.vaccine, "sender": f.sender}


def _event_fields(value: bytes | None) -> tuple[str | None, str | None]:
    """(vaccine_type, sender_ods) of a raw event envelope, when it can be read."""
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(event, dict):
        return None, None
    vt, ods = event.get("vaccine_type"), event.get("sender_ods")
    return (vt if isinstance(vt, str) else None), (ods if isinstance(ods, str) else None)


async def plan_redrive(
    settings: Settings, source: str, filters: RedriveFilter | None = None, *, meter: Meter | None = None
) -> RedriveReport:
    """Scan the dead-letter topic and list what a redrive would re-submit (nothing is written)."""
    if source not in SOURCES:
        raise RedriveError(f"--from must be one of {', '.join(SOURCES)}")
    filters = filters or RedriveFilter()
    topic = settings.topic((REJECTED if source == "rejected" else DEADLETTER).name)
    report = RedriveReport(source=source, topic=topic, filters=filters, execute=False)
    done = await ops_ledger.read_ledger(settings)
    sent: SentLedger | None = None
    if source == "deadletter":
        sent = SentLedger(settings, keep_origins=False, topic=settings.topic(SENT.name))
        await sent.start()
        await sent.catch_up()
    try:
        async for record in stream(settings, topic, meter=meter, what=f"scanning {topic}"):
            report.scanned += 1
            if source == "rejected":
                candidate = _rejected_candidate(settings, record, filters, report)
            else:
                candidate = _deadletter_candidate(settings, record, filters, report, sent)
            if candidate is None:
                continue
            if candidate.source in done:
                report.already_redriven += 1
                continue
            report.candidates.append(candidate)
            for reason in candidate.reasons:
                report.by_reason[reason] += 1
    finally:
        if sent is not None:
            await sent.stop()
    return report


def _rejected_candidate(
    settings: TopicSettings, record: ConsumerRecord[bytes, bytes], filters: RedriveFilter, report: RedriveReport
) -> Candidate | None:
    reasons = rejection_reasons(record.headers)
    vaccine, sender = _event_fields(record.value)
    if sender is None and record.key:
        sender = record.key.decode("utf-8", "replace")
    if not filters.matches(reasons, vaccine, sender):
        return None
    report.matched += 1
    stage = (h.header(record.headers, h.DLQ_STAGE) or b"").decode("utf-8", "replace")
    from_topic = (h.header(record.headers, h.DLQ_TOPIC) or b"").decode("utf-8", "replace")
    if stage != "validate" or from_topic != settings.topic(RAW.name):
        report.not_redrivable[f"stage {stage or 'unknown'}: not an event of the raw topic"] += 1
        return None
    origin = h.header(record.headers, h.ORIGIN)
    partition_header = h.header(record.headers, h.DLQ_PARTITION)
    if not origin or record.value is None:
        report.not_redrivable["no origin header or no value"] += 1
        return None
    key = encode_key(vaccine, sender) if vaccine and sender else record.key
    return Candidate(
        source=ops_ledger.coordinates(record.topic, record.partition, record.offset),
        target_topic=settings.topic(RAW.name),
        target_partition=int(partition_header) if partition_header and partition_header.isdigit() else None,
        key=key,
        value=record.value,
        origin=origin,
        reasons=tuple(reasons),
    )


def _deadletter_candidate(
    settings: TopicSettings,
    record: ConsumerRecord[bytes, bytes],
    filters: RedriveFilter,
    report: RedriveReport,
    sent: SentLedger | None,
) -> Candidate | None:
    reason = deadletter_reason(record.headers)
    try:
        failure = _FAILURE.decode(record.value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError):
        if filters.matches([reason], None, None):
            report.matched += 1
            report.not_redrivable["not a ReadyFile (undecodable ready record)"] += 1
        return None
    file = failure.file
    if not filters.matches([reason, failure.error], file.vaccine_type, file.sender_ods):
        return None
    report.matched += 1
    if sent is not None and file.file_name in sent:
        report.already_sent += 1
        return None
    return Candidate(
        source=ops_ledger.coordinates(record.topic, record.partition, record.offset),
        target_topic=settings.topic(READY.name),
        target_partition=None,  # the batch key: the partitioner puts it with its key's other files
        key=encode_key(file.vaccine_type, file.sender_ods),
        value=_ENCODE.encode(file),
        origin=h.header(record.headers, h.ORIGIN) or b"",
        reasons=(reason,),
        file_name=file.file_name,
    )


async def execute_redrive(
    settings: Settings, report: RedriveReport, *, meter: Meter | None = None, batch: int = 500
) -> RedriveReport:
    """Re-submit the planned candidates: each with its ledger entry, in transactions of `batch`."""
    meter = meter or Silent()
    report.execute = True
    if not report.candidates:
        return report
    previous = await ops_ledger.read_ledger(settings)
    counts: Counter[str] = Counter()
    for entry in previous.values():
        counts[entry.file_name or entry.origin or ""] += 1
    producer = ops_ledger.ops_producer(settings, f"redrive-{report.source}")
    await producer.start()
    meter.begin(f"redriving to {report.candidates[0].target_topic}", len(report.candidates))
    try:
        for start in range(0, len(report.candidates), batch):
            chunk = report.candidates[start:start + batch]
            entries = []
            async with Checkpoint(producer) as step:
                for c in chunk:
                    identity = c.file_name or c.origin.decode()
                    counts[identity] += 1
                    # A new timestamp on purpose: the event is ingested again now, and the batcher
                    # windows on ingestion time (an old one would only make it a late event).
                    headers = [(h.ORIGIN, c.origin)] if c.origin else []
                    headers += [
                        (h.REDRIVE_COUNT, str(counts[identity]).encode()),
                        (h.REDRIVE_FROM, c.source.encode()),
                    ]
                    await step.produce(
                        c.target_topic, c.value, key=c.key, partition=c.target_partition, headers=headers
                    )
                    entries.append(
                        ops_ledger.new_entry(
                            kind=report.source, source=c.source, target_topic=c.target_topic,
                            origin=c.origin.decode() or None, file_name=c.file_name, redrive_count=counts[identity],
                        )
                    )
                ops_ledger.record(step, settings, entries)
            report.submitted += len(chunk)
            meter.advance(len(chunk))
    finally:
        meter.end()
        await producer.stop()
    return report


async def redrive(
    settings: Settings,
    source: str,
    filters: RedriveFilter | None = None,
    *,
    execute: bool = False,
    meter: Meter | None = None,
) -> RedriveReport:
    report = await plan_redrive(settings, source, filters, meter=meter)
    if execute:
        await execute_redrive(settings, report, meter=meter)
    return report
