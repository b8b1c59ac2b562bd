"""Extended-attribute (EA) files in the ack reader, without a broker or sandbox: the InfAck failure
named from an EA key, the Delivered/Undelivered outcomes MESH tracking allows, the bounded book of
files awaiting one, and the poll's order with stand-ins for MESH, the ledger and Kafka."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from schemas.acks import ack_file_kind, ack_file_name, render_infack_failure
from schemas.extended import extended_file_name
from schemas.pipeline import AckOutcome, SentReceipt
from workers.ackreader.delivery import (
    KIND_DELIVERED,
    KIND_UNDELIVERED,
    DeliveryBook,
    delivery_outcome,
    sent_epoch,
    settled_name,
)
from workers.ackreader.worker import KIND_INFACK, AckReader, interpret
from workers.base.ledger import SentLedger
from workers.base.mesh.client import InboxMessage, MeshClient, MeshPermanentError, MeshTransientError, TrackingInfo
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.base.topic_reader import TopicFollower

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EA = extended_file_name("YGM41", datetime(2025, 6, 1, 11, 0, tzinfo=UTC))
CREATED = "20250601T12050000"


def _receipt(name: str = EA, *, message_id: str = "SENT1", sent: datetime = NOW, rows: int = 3) -> SentReceipt:
    return SentReceipt(
        file_name=name, local_id=f"vxf-{name}", message_id=message_id, mailbox_to="X26OT303",
        workflow_id="VACCINATIONS_1", vaccine_type="COVID", sender_ods="YGM41", rows=rows, bytes=100,
        sent_at=sent.isoformat(timespec="milliseconds"), origins=[(1, 10), (1, 10), (2, 7)][:rows],
    )


def _tracking(status: str, message_id: str = "SENT1", **more: Any) -> TrackingInfo:
    return TrackingInfo(message_id=message_id, local_id=None, workflow_id="VACCINATIONS_1", filename=EA,
                        recipient="X26OT303", status=status, success=None, uploaded_at=None, **more)


def _record(key: str | None, value: bytes | None, timestamp_ms: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="acks", partition=0, offset=0, timestamp=timestamp_ms, timestamp_type=0,
        key=key.encode() if key is not None else None, value=value, checksum=None,
        serialized_key_size=0, serialized_value_size=0, headers=(),
    )


# ------------------------------------------------------------------------- InfAck for an EA file


def test_an_infack_named_from_an_ea_key_is_recognised_and_linked_through_its_receipt() -> None:
    ack = ack_file_name(EA, "InfAck", CREATED)
    assert ack == EA.removesuffix(".csv") + f"_InfAck_{CREATED}.csv"
    name = ack_file_kind(ack)
    assert name is not None
    assert (name.kind, name.batch_file_key) == ("InfAck", EA)
    meta = InboxMessage("ACK1", "DATA", "X26OT303", "X26VXF001", "VACCINATIONS_1_ACK", ack, None, None, None, 1, {})
    outcome = interpret(meta, render_infack_failure("h", CREATED), _receipt(), name, "t")
    assert (outcome.kind, outcome.accepted, outcome.file_name, outcome.total_rows, outcome.error) == (
        KIND_INFACK, False, EA, 3, None)


# ---------------------------------------------------------------------------- tracking verdicts


def test_only_acknowledged_is_delivered_and_only_a_final_failure_is_undelivered() -> None:
    receipt = _receipt()
    delivered = delivery_outcome(receipt, _tracking("acknowledged"), "t")
    assert delivered == AckOutcome(file_name=EA, ack_file="", kind=KIND_DELIVERED, mesh_message_id="SENT1",
                                   accepted=True, total_rows=3, received_at="t")
    # "accepted" is in the recipient's inbox, not yet taken; "uploading" not even complete
    assert delivery_outcome(receipt, _tracking("accepted"), "t") is None
    assert delivery_outcome(receipt, _tracking("uploading"), "t") is None
    lost = delivery_outcome(receipt, _tracking("undeliverable", status_code="14",
                                               status_description="Message not collected"), "t")
    assert lost is not None
    assert (lost.kind, lost.accepted, lost.mesh_message_id, lost.total_rows) == (KIND_UNDELIVERED, False, "SENT1", 3)
    assert lost.error == "MESH tracking status undeliverable: 14 Message not collected"
    errored = delivery_outcome(receipt, _tracking("error"), "t")
    assert errored is not None
    assert (errored.kind, errored.error) == (KIND_UNDELIVERED, "MESH tracking status error")


def test_sent_at_is_read_only_with_an_offset() -> None:
    assert sent_epoch("2025-06-01T12:00:00.000+00:00") == NOW.timestamp()
    assert sent_epoch("2025-06-01T12:00:00Z") == NOW.timestamp()
    assert sent_epoch("2025-06-01T12:00:00") is None
    assert sent_epoch("yesterday") is None


# ------------------------------------------------------------------------------------- the book


def test_the_book_takes_only_unsettled_ea_receipts_within_the_horizon() -> None:
    book = DeliveryBook(horizon=3600, per_poll=10)
    now = NOW.timestamp()
    assert book.offer(_receipt(), now)
    assert not book.offer(_receipt("RSV_Vaccinations_v5_X8E5B_20250101T12000000.csv"), now)
    assert not book.offer(_receipt(extended_file_name("YGA", NOW), sent=NOW - timedelta(hours=2)), now)
    assert not book.offer(msgspec.structs.replace(_receipt(extended_file_name("YGJ", NOW)), sent_at="soon"), now)
    settled = extended_file_name("YGMYW", NOW)
    book.settle(settled, now)
    assert not book.offer(_receipt(settled), now)
    assert book.offer(_receipt(), now)  # offered again (the ledger re-read): still one entry
    assert list(book.pending) == [EA]


def test_the_book_hands_out_at_most_per_poll_round_robin_and_forgets_what_ages_out() -> None:
    book = DeliveryBook(horizon=3600, per_poll=2)
    now = NOW.timestamp()
    names = [extended_file_name(ods, NOW) for ods in ("YGA", "YGJ", "YGM41")]
    for n, name in enumerate(names):
        book.offer(_receipt(name, sent=NOW - timedelta(minutes=30 - n)), now)
    assert book.due(now) == names[:2]
    for name in names[:2]:
        book.checked(name)
    assert book.due(now) == [names[2], names[0]]
    book.settle(names[2], now)
    assert book.due(now) == names[:2]
    # 31 minutes on, the first file (sent 30 minutes before NOW) is past the one-hour horizon
    later = now + 31 * 60
    assert book.due(later) == names[1:2]
    assert book.is_settled(names[2])
    assert not DeliveryBook(horizon=3600, per_poll=2).is_settled(names[2])
    # and a settlement older than the horizon is dropped too: memory stays a horizon's worth
    assert book.due(now + 2 * 3600) == []
    assert book.settled == {}
    with pytest.raises(ValueError, match="per_poll"):
        DeliveryBook(horizon=3600, per_poll=0)


def test_acks_topic_records_settle_ea_files_and_others_are_skipped_by_key() -> None:
    def outcome(kind: str, name: str = EA) -> bytes:
        return msgspec.json.encode(AckOutcome(file_name=name, ack_file="", kind=kind, mesh_message_id="M",
                                              accepted=True, received_at="t"))

    assert settled_name(_record(EA, outcome(KIND_DELIVERED))) == EA
    assert settled_name(_record(EA, outcome(KIND_INFACK))) == EA
    assert settled_name(_record(EA, outcome("unreadable"))) == EA
    assert settled_name(_record(EA, outcome("unknown"))) is None  # keyed by a stray message's own name
    assert settled_name(_record("RSV_Vaccinations_v5_X8E5B_20250101T12000000.csv", b"not even json")) is None
    assert settled_name(_record(EA, b"{broken")) is None
    assert settled_name(_record(None, outcome(KIND_DELIVERED))) is None
    assert settled_name(_record(EA, None)) is None


# -------------------------------------------------------------------------- the poll, stand-ins


@dataclass
class _Mesh:
    """Our inbox and the tracking answers (a status, or an exception to raise)."""

    messages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    status: dict[str, str | Exception] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)
    tracked: list[str] = field(default_factory=list)

    async def inbox(self) -> list[str]:
        return [m for m in self.messages if m not in self.acknowledged]

    async def download(self, message_id: str) -> tuple[InboxMessage, bytes]:
        name, data = self.messages[message_id]
        return InboxMessage(message_id, "DATA", "X26OT303", "X26VXF001", "W", name, None, None, None, 1, {}), data

    async def acknowledge(self, message_id: str) -> None:
        self.acknowledged.append(message_id)

    async def tracking(self, message_id: str) -> TrackingInfo | None:
        self.tracked.append(message_id)
        answer = self.status.get(message_id)
        if isinstance(answer, Exception):
            raise answer
        return None if answer is None else _tracking(answer, message_id)


@dataclass
class _Ledger:
    receipts: dict[str, SentReceipt]

    async def catch_up(self) -> int:
        return 0

    def find(self, file_name: str) -> SentReceipt | None:
        return self.receipts.get(file_name)

    def get(self, file_name: str) -> SentReceipt | None:
        return self.receipts.get(file_name)


@dataclass
class _Producer:
    sent: list[AckOutcome] = field(default_factory=list)

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes, headers: Any = None) -> None:
        outcome = msgspec.json.decode(value, type=AckOutcome)
        assert key == outcome.file_name.encode()
        self.sent.append(outcome)


def _reader(mesh: _Mesh, receipts: list[SentReceipt], producer: _Producer, per_poll: int = 10) -> AckReader:
    book = DeliveryBook(horizon=7 * 86_400, per_poll=per_poll)
    for r in receipts:
        book.offer(r, datetime.now(UTC).timestamp())
    return AckReader(Settings(), cast(MeshClient, mesh), cast(SentLedger, _Ledger({r.file_name: r for r in receipts})),
                     cast(AIOKafkaProducer, producer), Health(), book=book)


def _fresh(name: str, message_id: str) -> SentReceipt:
    return _receipt(name, message_id=message_id, sent=datetime.now(UTC))


async def test_delivered_is_published_once_when_the_recipient_has_taken_the_file() -> None:
    receipt = _fresh(EA, "SENT1")
    mesh = _Mesh(status={"SENT1": "accepted"})
    producer = _Producer()
    reader = _reader(mesh, [receipt], producer)
    await reader.poll_once()
    assert producer.sent == []  # waiting in NHS England's inbox is not delivered
    mesh.status["SENT1"] = "acknowledged"
    await reader.poll_once()
    [outcome] = producer.sent
    assert (outcome.kind, outcome.accepted, outcome.file_name, outcome.mesh_message_id, outcome.total_rows) == (
        KIND_DELIVERED, True, EA, "SENT1", 3)
    await reader.poll_once()
    assert len(producer.sent) == 1
    assert mesh.tracked == ["SENT1", "SENT1"]  # settled: never asked about again


async def test_an_infack_failure_read_in_the_same_poll_wins_over_delivered() -> None:
    receipt = _fresh(EA, "SENT1")
    ack = ack_file_name(EA, "InfAck", CREATED)
    mesh = _Mesh(messages={"ACK1": (ack, render_infack_failure("h", CREATED))}, status={"SENT1": "acknowledged"})
    producer = _Producer()
    reader = _reader(mesh, [receipt], producer)
    await reader.poll_once()
    assert [(o.kind, o.accepted, o.file_name) for o in producer.sent] == [(KIND_INFACK, False, EA)]
    await reader.poll_once()
    assert len(producer.sent) == 1


async def test_tracking_is_bounded_per_poll_and_a_failure_is_retried_next_poll() -> None:
    names = [extended_file_name(ods, NOW) for ods in ("YGA", "YGJ", "YGM41", "YGMYW")]
    receipts = [_fresh(name, f"S{n}") for n, name in enumerate(names)]
    mesh = _Mesh(status={"S0": MeshTransientError("MESH is down"), "S1": "acknowledged",
                         "S2": MeshPermanentError(403, "no"), "S3": "acknowledged"})
    producer = _Producer()
    reader = _reader(mesh, receipts, producer, per_poll=3)
    await reader.poll_once()
    assert mesh.tracked == ["S0"]  # a transient failure ends the round
    assert producer.sent == []
    mesh.status["S0"] = "acknowledged"
    mesh.tracked.clear()
    await reader.poll_once()
    assert mesh.tracked == ["S1", "S2", "S3"]  # the next three, the one that failed now last in line
    assert {o.mesh_message_id for o in producer.sent} == {"S1", "S3"}
    mesh.tracked.clear()
    await reader.poll_once()
    assert mesh.tracked == ["S0", "S2"]
    assert {o.mesh_message_id for o in producer.sent} == {"S0", "S1", "S3"}


async def test_after_a_restart_what_is_on_the_acks_topic_is_not_published_again() -> None:
    receipt = _fresh(EA, "SENT1")
    mesh = _Mesh(status={"SENT1": "acknowledged"})
    producer = _Producer()
    reader = _reader(mesh, [receipt], producer)
    earlier = AckOutcome(file_name=EA, ack_file="", kind=KIND_DELIVERED, mesh_message_id="SENT1", accepted=True,
                         total_rows=3, received_at="t")
    reader.settle_from(_record(EA, msgspec.json.encode(earlier), int(datetime.now(UTC).timestamp() * 1000)))
    await reader.poll_once()
    assert producer.sent == []
    assert mesh.tracked == []


async def test_a_receipt_gone_from_the_ledger_is_forgotten_and_vaccination_files_are_not_tracked() -> None:
    gone = _fresh(EA, "SENT1")
    batch = _fresh("RSV_Vaccinations_v5_X8E5B_20250101T12000000.csv", "SENT2")
    mesh = _Mesh(status={"SENT1": "acknowledged", "SENT2": "acknowledged"})
    producer = _Producer()
    reader = _reader(mesh, [gone, batch], producer)
    cast(_Ledger, reader.ledger).receipts.pop(EA)
    await reader.poll_once()
    assert (producer.sent, mesh.tracked) == ([], [])
    assert reader.book is not None
    assert reader.book.pending == {}


class _FailingFollower:
    async def catch_up(self) -> None:
        raise KafkaError("TopicAuthorizationFailed")


async def test_when_the_acks_topic_cannot_be_read_nothing_is_tracked_but_the_inbox_is_read() -> None:
    receipt = _fresh(EA, "SENT1")
    ack = ack_file_name(EA, "InfAck", CREATED)
    mesh = _Mesh(messages={"ACK1": (ack, render_infack_failure("h", CREATED))}, status={"SENT1": "acknowledged"})
    producer = _Producer()
    reader = _reader(mesh, [receipt], producer)
    reader.acks_seen = cast(TopicFollower, _FailingFollower())
    assert await reader.poll_once() == 1
    assert mesh.tracked == []
    assert [o.kind for o in producer.sent] == [KIND_INFACK]
