"""Unit tests of how the ack reader reads one MESH message (no broker, no sandbox)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from schemas.acks import (
    AckFormatError,
    ack_file_kind,
    ack_file_name,
    busack_failure,
    busack_report,
    render_busack_csv,
    render_busack_json,
    render_infack_failure,
    render_infack_success,
)
from schemas.pipeline import AckOutcome, SentReceipt
from topics import headers as h
from workers.ackreader.worker import (
    KIND_BUSACK,
    KIND_BUSACK_REPORT,
    KIND_INFACK,
    KIND_UNKNOWN,
    KIND_UNREADABLE,
    QUARANTINE_MAX_BYTES,
    interpret,
    origin_of,
    quarantined,
    unreadable,
)
from workers.base.mesh.client import InboxMessage

FILE = "RSV_Vaccinations_v5_X8E5B_20250101T12000000.csv"
CREATED = "20250101T12050000"
RECEIPT = SentReceipt(
    file_name=FILE, local_id="vxf-1", message_id="M1", mailbox_to="X26OT303", workflow_id="VACCINATIONS_1",
    vaccine_type="RSV", sender_ods="X8E5B", rows=3, bytes=100, sent_at="2025-01-01T12:00:00Z",
    origins=[(0, 10), (4, 11), (2, 12)],
)


def _meta(filename: str | None, message_id: str = "ACK1") -> InboxMessage:
    return InboxMessage(message_id, "DATA", "X26OT303", "X26VXF001", "VACCINATIONS_1_ACK", filename, None,
                        None, None, 1, {})


def _outcome(kind: str, data: bytes, receipt: SentReceipt | None = RECEIPT, fmt: str = "csv"):  # type: ignore[no-untyped-def]
    name = ack_file_name(FILE, kind, CREATED, fmt)  # type: ignore[arg-type]
    return interpret(_meta(name), data, receipt, ack_file_kind(name), "2025-01-01T12:06:00Z")


def test_infack_success_and_failure() -> None:
    ok = _outcome("InfAck", render_infack_success("h", CREATED))
    assert (ok.kind, ok.accepted, ok.file_name, ok.total_rows, ok.error) == (KIND_INFACK, True, FILE, 3, None)
    bad = _outcome("InfAck", render_infack_failure("h", CREATED))
    assert (bad.kind, bad.accepted) == (KIND_INFACK, False)


def test_busack_rows_map_to_origins_through_the_receipt() -> None:
    rows = [busack_failure("h", 2, "ID2^https://x", CREATED, "NHS_NUMBER invalid"),
            busack_failure("h", 9, "ID9^https://x", CREATED, None)]  # row 9: beyond the receipt
    csv_outcome = _outcome("BusAck", render_busack_csv(rows))
    assert (csv_outcome.kind, csv_outcome.accepted) == (KIND_BUSACK, False)
    assert [(r.row, r.origin, r.local_id) for r in csv_outcome.failed_rows] == [
        (2, (4, 11), "ID2^https://x"), (9, None, "ID9^https://x")]
    report = busack_report(provider="RAVS", batch_file_key=FILE, message_id="h", total_records=3,
                           failures=rows[:1], ingestion_start=1, ingestion_end=2, generated=datetime.now(UTC))
    json_outcome = _outcome("BusAck", render_busack_json(report), fmt="json")
    assert (json_outcome.kind, json_outcome.total_rows) == (KIND_BUSACK_REPORT, 3)
    assert [(r.row, r.origin) for r in json_outcome.failed_rows] == [(2, (4, 11))]
    clean = _outcome("BusAck", render_busack_csv([]))
    assert clean.accepted
    assert clean.failed_rows == []


def test_without_a_receipt_the_outcome_says_so() -> None:
    outcome = _outcome("BusAck", render_busack_csv([busack_failure("h", 1, "A^B", CREATED, "x")]), receipt=None)
    assert outcome.failed_rows[0].origin is None
    assert outcome.error is not None
    assert "receipt" in outcome.error
    assert origin_of(None, 1) is None


def test_unknown_and_unreadable_messages_are_published_as_unknown() -> None:
    stray = interpret(_meta("notes.txt"), b"hello", None, None, "t")
    assert (stray.kind, stray.accepted, stray.file_name) == (KIND_UNKNOWN, False, "notes.txt")
    nameless = interpret(_meta(None, "MID"), b"", None, None, "t")
    assert nameless.file_name == "MID"


def test_an_unreadable_ack_raises_and_is_quarantined_with_its_reason_and_bytes() -> None:
    """interpret raises AckFormatError; the worker's quarantine keeps the bytes, the reason and
    the MESH message id (issue 16)."""
    name = ack_file_name(FILE, "InfAck", CREATED)
    data = b"not|an|infack\r\n"
    with pytest.raises(AckFormatError) as caught:
        interpret(_meta(name), data, RECEIPT, ack_file_kind(name), "t")
    q = unreadable(_meta(name, "MID7"), name, data, RECEIPT, ack_file_kind(name), caught.value, "t")
    assert (q.outcome.kind, q.outcome.accepted, q.outcome.content, q.reason) == (KIND_UNREADABLE, False, data, "format")
    assert q.outcome.file_name == FILE  # keyed by the batch file it answers, as its other acks are
    assert q.outcome.error is not None
    assert "InfAck" in q.outcome.error
    assert h.header(q.headers, h.DLQ_MESH_MESSAGE_ID) == b"MID7"
    assert h.header(q.headers, h.SOURCE_FILE) == name.encode()
    assert h.header(q.headers, h.DLQ_EXC_CLASS) == b"AckFormatError"


def test_an_unforeseen_fault_is_quarantined_by_class_and_place_only() -> None:
    name = ack_file_name(FILE, "BusAck", CREATED)
    try:
        int("\u00b2secret")
    except ValueError as exc:
        q = unreadable(_meta(name), name, b"x", None, ack_file_kind(name), exc, "t")
    assert q.reason == "unexpected"
    assert q.outcome.error is not None
    assert "ValueError at test_workers_ackreader_interpret.py:" in q.outcome.error
    assert "secret" not in q.outcome.error
    assert b"secret" not in b"".join(v for _, v in q.headers)


def test_a_big_message_is_kept_up_to_the_bound_and_marked_truncated() -> None:
    data = b"x" * (QUARANTINE_MAX_BYTES + 5)
    q = quarantined(message_id="M", ack_file="a", file_name="a", data=data, reason="format", exc_class="E",
                    message="m", received_at="t")
    assert q.outcome.content == data[:QUARANTINE_MAX_BYTES]
    assert h.header(q.headers, h.SOURCE_TRUNCATED) == str(len(data)).encode()


def test_a_file_name_of_non_utf8_bytes_is_made_printable() -> None:
    odd = b"RSV\xff_InfAck".decode("utf-8", "surrogateescape")
    outcome = interpret(_meta(odd), b"hello", None, None, "t")
    assert outcome.ack_file == "RSV\ufffd_InfAck"
    assert msgspec.json.decode(msgspec.json.encode(outcome), type=AckOutcome) == outcome
