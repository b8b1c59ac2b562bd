"""Issue 16 against the real MESH sandbox and broker: unreadable acknowledgements never stop the ack reader.

Each poison message below once crash-looped the worker before it acknowledged anything, so the
good acknowledgement sent after them was never read. Judged from what was produced (the acks
topic) and what MESH still holds (our inbox), not from the worker's logs.
"""

from __future__ import annotations

import msgspec
import pytest
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import empty_inbox, pipeline_settings, read_topic
from mesh_poison_support import send_raw, send_raw_filename
from support.topics import ensure
from support.workers import running

from schemas.acks import ack_file_name, busack_failure, render_busack_csv, render_infack_success
from schemas.pipeline import AckOutcome
from topics import headers as h
from topics.catalogue import ACKS
from vaxflow.dev.mesh_sandbox import MailboxRole
from workers.ackreader import worker as ackreader
from workers.ackreader.worker import KIND_INFACK, KIND_UNKNOWN, KIND_UNREADABLE

pytestmark = pytest.mark.integration

TO, WORKFLOW = "X26VXF001", "VACCINATIONS_1_ACK"
CREATED = "20250101T12050000"


def busack_with_row(row: str) -> bytes:
    good = render_busack_csv([busack_failure("h", 2, "ID^https://x", CREATED, "bad")])
    return good.replace(b"h^2", f"h^{row}".encode())


async def test_unreadable_acks_are_quarantined_acknowledged_and_the_next_ack_is_read(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle
) -> None:
    settings = pipeline_settings(kafka, namespace, mesh_sandbox, ack_match_grace_seconds=0.0)
    await ensure(settings)
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        await empty_inbox(ours)  # what earlier tests left there (an EA InfAck failure) is not ours to count
    batch = "RSV_Vaccinations_v5_X8E5B_20250101T12000000.csv"
    infack_name = ack_file_name(batch, "InfAck", CREATED)
    busack_name = ack_file_name(batch, "BusAck", CREATED)
    huge_field = render_infack_success("h", CREATED).replace(b"Success", b"S" * 200_000, 1)
    superscript = busack_with_row("\u00b2")
    digits = busack_with_row("9" * 5000)
    sent: dict[str, tuple[str, bytes]] = {}  # message id -> (what, bytes)
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        for what, name, data in (
            ("field_too_large", infack_name, huge_field),
            ("row_number", busack_name, superscript),
            ("row_number", busack_name, digits),
        ):
            mid = await imms.send(TO, WORKFLOW, data, filename=name, local_id=f"{namespace}-{len(sent)}")
            sent[mid] = (what, data)
        bad_gzip = await send_raw(imms, TO, WORKFLOW, b"this is not gzip", filename=infack_name,
                                  local_id=f"{namespace}-gz", gzip_claimed=True)
        sent[bad_gzip] = ("download", b"")
        odd_name = await send_raw_filename(imms, TO, WORKFLOW, b"hello", filename=b"caf\xe9-\xff.txt",
                                           local_id=f"{namespace}-name")
        sent[odd_name] = ("unknown", b"")
        good = await imms.send(TO, WORKFLOW, render_infack_success("h", CREATED), filename=infack_name,
                               local_id=f"{namespace}-good")

    def complete(records: list) -> bool:  # type: ignore[type-arg]
        ids = {msgspec.json.decode(r.value, type=AckOutcome).mesh_message_id for r in records}
        return {*sent, good} <= ids

    async with running(ackreader.run, settings):
        records = await read_topic(settings, ACKS.name, until=complete, timeout=60)

    by_id = {}
    for r in records:
        outcome = msgspec.json.decode(r.value, type=AckOutcome)
        assert outcome.mesh_message_id not in by_id  # one record per MESH message
        by_id[outcome.mesh_message_id] = (outcome, r.headers)
    assert set(by_id) == {*sent, good}

    assert by_id[good][0].kind == KIND_INFACK  # the good ack behind the poison was read
    assert by_id[good][0].accepted
    for mid, (what, data) in sent.items():
        outcome, headers = by_id[mid]
        if what == "unknown":  # not named as an ack: published as before, its name made printable
            assert outcome.kind == KIND_UNKNOWN
            assert outcome.ack_file == "caf\ufffd-\ufffd.txt"
            continue
        assert outcome.kind == KIND_UNREADABLE
        assert not outcome.accepted
        assert outcome.content == data  # kept: MESH's copy is gone once acknowledged
        assert h.header(headers, h.DLQ_STAGE) == b"ack"
        assert h.header(headers, h.DLQ_MESH_MESSAGE_ID) == mid.encode()
        reasons = msgspec.json.decode(h.header(headers, h.DLQ_REASONS) or b"[]")
        assert [r["rule"] for r in reasons] == [f"ack.{what}"]
        if what != "download":
            assert h.header(headers, h.SOURCE_FILE) == outcome.ack_file.encode()
        assert outcome.error is not None
        assert "9999999999" not in outcome.error  # the reason, not the file's values

    # Every one of them was acknowledged: MESH holds none of our messages any more.
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        assert not {*sent, good} & set(await ours.inbox())
