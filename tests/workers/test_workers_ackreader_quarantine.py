"""The ack reader's poll with stand-ins for MESH, the ledger and Kafka (no broker, no sandbox):
every poison message is published as kind "unreadable" and acknowledged, and the good message
behind it is read in the same poll (issue 16). The real-service version of this is
test_workers_ackreader_poison.py; this one also covers an outcome too large for the acks topic,
which the sandbox would need 8 MiB of acknowledgement to show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import REGISTRY

from schemas.acks import ack_file_name, busack_failure, render_busack_csv, render_infack_success
from schemas.pipeline import AckOutcome
from topics import headers as h
from workers.ackreader.worker import KIND_BUSACK, KIND_INFACK, KIND_UNREADABLE, AckReader
from workers.base.ledger import SentLedger
from workers.base.mesh.client import InboxMessage, MeshClient, MeshPermanentError
from workers.base.runtime import Health
from workers.base.settings import Settings

FILE = "RSV_Vaccinations_v5_X8E5B_20250101T12000000.csv"
CREATED = "20250101T12050000"
INFACK = ack_file_name(FILE, "InfAck", CREATED)
BUSACK = ack_file_name(FILE, "BusAck", CREATED)


@dataclass
class _Mesh:
    messages: dict[str, tuple[str, bytes | Exception]]
    acknowledged: list[str] = field(default_factory=list)

    async def inbox(self) -> list[str]:
        return [m for m in self.messages if m not in self.acknowledged]

    async def download(self, message_id: str) -> tuple[InboxMessage, bytes]:
        name, data = self.messages[message_id]
        if isinstance(data, Exception):
            raise data
        return InboxMessage(message_id, "DATA", "X26OT303", "X26VXF001", "W", name, None, None, None, 1, {}), data

    async def acknowledge(self, message_id: str) -> None:
        self.acknowledged.append(message_id)


class _Ledger:
    async def catch_up(self) -> int:
        return 0

    def find(self, file_name: str) -> None:
        return None


@dataclass
class _Producer:
    limit: int = 8 * 1024 * 1024
    sent: list[tuple[AckOutcome, list[tuple[str, bytes]]]] = field(default_factory=list)

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes, headers: Any = None) -> None:
        if len(value) > self.limit:
            raise MessageSizeTooLargeError()
        self.sent.append((msgspec.json.decode(value, type=AckOutcome), list(headers or [])))


def _quarantined(reason: str) -> float:
    return REGISTRY.get_sample_value("vaxflow_ackreader_quarantined_total", {"reason": reason}) or 0.0


def _reader(mesh: _Mesh, producer: _Producer) -> AckReader:
    settings = Settings(ack_match_grace_seconds=0.0)
    return AckReader(settings, cast(MeshClient, mesh), cast(SentLedger, _Ledger()),
                     cast(AIOKafkaProducer, producer), Health())


def _busack(row: str) -> bytes:
    good = render_busack_csv([busack_failure("h", 2, "ID^https://x", CREATED, "bad")])
    return good.replace(b"h^2", f"h^{row}".encode())


async def test_each_poison_is_quarantined_and_acknowledged_and_the_good_ack_behind_it_read() -> None:
    before = _quarantined("row_number")
    mesh = _Mesh({
        "P1": (BUSACK, _busack("\u00b2")),
        "P2": (BUSACK, _busack("9" * 5000)),
        "P3": (INFACK, render_infack_success("h", CREATED).replace(b"Success", b"S" * 200_000, 1)),
        "P4": (INFACK, MeshPermanentError(None, "", reason="message P4 is not valid gzip")),
        "P5": (b"\xff.csv".decode("utf-8", "surrogateescape"), b"x"),
        "GOOD": (INFACK, render_infack_success("h", CREATED)),
    })
    producer = _Producer()
    assert await _reader(mesh, producer).poll_once() == 6
    assert mesh.acknowledged == ["P1", "P2", "P3", "P4", "P5", "GOOD"]
    kinds = {o.mesh_message_id: o.kind for o, _ in producer.sent}
    assert kinds == {"P1": KIND_UNREADABLE, "P2": KIND_UNREADABLE, "P3": KIND_UNREADABLE, "P4": KIND_UNREADABLE,
                     "P5": "unknown", "GOOD": KIND_INFACK}
    rules = {o.mesh_message_id: msgspec.json.decode(h.header(hs, h.DLQ_REASONS) or b"[]")
             for o, hs in producer.sent if o.kind == KIND_UNREADABLE}
    assert {m: [r["rule"] for r in rs] for m, rs in rules.items()} == {
        "P1": ["ack.row_number"], "P2": ["ack.row_number"], "P3": ["ack.field_too_large"], "P4": ["ack.download"]}
    assert _quarantined("row_number") == before + 2


async def test_an_outcome_too_large_for_the_acks_topic_is_quarantined_not_retried_for_ever() -> None:
    rows = [busack_failure("h", n, f"ID{n}^https://x", CREATED, "x" * 2000) for n in range(1, 40)]
    mesh = _Mesh({"BIG": (BUSACK, render_busack_csv(rows)), "GOOD": (INFACK, render_infack_success("h", CREATED))})
    producer = _Producer(limit=50_000)  # the outcome of 39 rows of 2 kB is over it
    assert await _reader(mesh, producer).poll_once() == 2
    assert mesh.acknowledged == ["BIG", "GOOD"]
    [(big, headers), (good, _)] = producer.sent
    assert (big.kind, good.kind) == (KIND_UNREADABLE, KIND_INFACK)
    # the bytes too are over this (tiny) limit: left out, their size said (the real topic takes 8 MiB
    # and QUARANTINE_MAX_BYTES is 4 MiB, so there they are kept)
    assert big.content == b""
    assert h.header(headers, h.SOURCE_TRUNCATED) == str(len(render_busack_csv(rows))).encode()
    assert KIND_BUSACK in (big.error or "")
    assert [r["rule"] for r in msgspec.json.decode(h.header(headers, h.DLQ_REASONS) or b"[]")] == ["ack.too_large"]
