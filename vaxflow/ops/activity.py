"""What the pipeline has done, read incrementally from its output topics for the dashboard.

Files sent (the sent ledger), acknowledgements (the acks topic), dead letters by reason (the
rejected and deadletter topics) and redrives (the redrive ledger) are all in Kafka already, so
the ops service reads them instead of asking each worker: a worker restart loses its counters,
the topics do not. One group-less consumer follows all of them from the beginning and each refresh
reads only what is new, so the cost is proportional to the traffic, not to the topics' size.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from schemas.pipeline import AckOutcome, SentReceipt
from topics import headers as h
from topics.catalogue import ACKS, DEADLETTER, REDRIVE_LEDGER, REJECTED, SENT
from workers.base.settings import Settings
from workers.base.topic_reader import TopicFollower

log = logging.getLogger("vaxflow.ops.activity")

_RECEIPT = msgspec.json.Decoder(SentReceipt)
_ACK = msgspec.json.Decoder(AckOutcome)


def rejection_reasons(headers: list[tuple[str, bytes]] | None) -> list[str]:
    """"field:rule" for every reason a rejected record carries, or its exception class if none."""
    raw = h.header(headers, h.DLQ_REASONS)
    if raw:
        try:
            listed = orjson.loads(raw)
            found = [f"{r.get('field', '?')}:{r.get('rule', '?')}" for r in listed if isinstance(r, dict)]
            if found:
                return found
        except orjson.JSONDecodeError:
            pass
    exc = h.header(headers, h.DLQ_EXC_CLASS)
    return [exc.decode("utf-8", "replace") if exc else "unknown"]


def deadletter_reason(headers: list[tuple[str, bytes]] | None) -> str:
    """Exception class, plus MESH's HTTP status when MESH answered (the uploader's header)."""
    exc = (h.header(headers, h.DLQ_EXC_CLASS) or b"unknown").decode("utf-8", "replace")
    status = h.header(headers, h.DLQ_MESH_STATUS)
    return f"{exc} {status.decode()}" if status else exc


@dataclass(slots=True)
class Activity:
    """Running totals since the topics' beginnings."""

    sent: dict[str, int] = field(default_factory=dict)
    """file name -> rows (compacted ledger: a name counts once)."""
    sent_bytes: int = 0
    sent_by_type: Counter[str] = field(default_factory=Counter)
    resends: int = 0
    acked: dict[str, bool] = field(default_factory=dict)
    """file name -> InfAck accepted."""
    busack_failed_rows: int = 0
    acks_unmatched: int = 0
    rejected_total: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    rejected_by_stage: Counter[str] = field(default_factory=Counter)
    deadletter_total: int = 0
    deadletter_by_reason: Counter[str] = field(default_factory=Counter)
    redriven: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "files_sent": len(self.sent),
            "rows_sent": sum(self.sent.values()),
            "bytes_sent": self.sent_bytes,
            "files_sent_by_type": dict(self.sent_by_type.most_common()),
            "resends": self.resends,
            "files_acknowledged": len(self.acked),
            "infack_accepted": sum(self.acked.values()),
            "infack_refused": sum(not v for v in self.acked.values()),
            "busack_failed_rows": self.busack_failed_rows,
            "acks_unmatched": self.acks_unmatched,
            "rejected_total": self.rejected_total,
            "rejected_by_reason": dict(self.rejected_by_reason.most_common(30)),
            "rejected_by_stage": dict(self.rejected_by_stage),
            "deadletter_total": self.deadletter_total,
            "deadletter_by_reason": dict(self.deadletter_by_reason.most_common(30)),
            "redriven": dict(self.redriven),
        }


class ActivityReader:
    """Follows the output topics and folds every new record into an `Activity`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = {
            settings.topic(SENT.name): self._sent,
            settings.topic(ACKS.name): self._ack,
            settings.topic(REJECTED.name): self._rejected,
            settings.topic(DEADLETTER.name): self._deadletter,
            settings.topic(REDRIVE_LEDGER.name): self._redrive,
        }
        self.activity = Activity()
        # Topics may be created after the service starts: the follower looks for them on each refresh.
        self.follower = TopicFollower(settings, list(self.topics), self._route)

    async def start(self) -> None:
        await self.follower.start()

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError, OSError, RuntimeError):
            await self.follower.stop()

    def _route(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.topics[record.topic](record)

    async def refresh(self, timeout: float = 10.0) -> int:
        """Read every topic up to its end as of now (or for `timeout`); returns the records applied."""
        before = self.follower.records_read
        with contextlib.suppress(TimeoutError):  # the rest is read on the next refresh
            await self.follower.catch_up(timeout)
        return self.follower.records_read - before

    def _sent(self, record: ConsumerRecord[bytes, bytes]) -> None:
        name = (record.key or b"").decode("utf-8", "replace")
        a = self.activity
        if record.value is None:
            a.sent.pop(name, None)  # tombstone: an operator allowed a deliberate re-send of this name
            return
        try:
            receipt = _RECEIPT.decode(record.value)
        except msgspec.DecodeError:
            return
        if receipt.file_name not in a.sent:
            a.sent_by_type[receipt.vaccine_type] += 1
            a.sent_bytes += receipt.bytes
            a.resends += receipt.resend_of is not None
        a.sent[receipt.file_name] = receipt.rows

    def _ack(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            outcome = _ACK.decode(record.value or b"")
        except msgspec.DecodeError:
            return
        a = self.activity
        if outcome.kind == "InfAck":
            a.acked[outcome.file_name] = outcome.accepted
        elif outcome.kind == "BusAck":
            a.busack_failed_rows += len(outcome.failed_rows)
        if outcome.error:
            a.acks_unmatched += 1

    def _rejected(self, record: ConsumerRecord[bytes, bytes]) -> None:
        a = self.activity
        a.rejected_total += 1
        for reason in rejection_reasons(record.headers):
            a.rejected_by_reason[reason] += 1
        stage = h.header(record.headers, h.DLQ_STAGE)
        a.rejected_by_stage[stage.decode("utf-8", "replace") if stage else "unknown"] += 1

    def _deadletter(self, record: ConsumerRecord[bytes, bytes]) -> None:
        a = self.activity
        a.deadletter_total += 1
        a.deadletter_by_reason[deadletter_reason(record.headers)] += 1

    def _redrive(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            return
        try:
            kind = orjson.loads(record.value).get("kind", "unknown")
        except (orjson.JSONDecodeError, AttributeError):
            return
        self.activity.redriven[str(kind)] += 1
