"""Extended-attribute (EA) files through the real sandbox, the simulated NHS England and the ack reader.

An EA file NHS England accepts gets no acknowledgement, so its outcome on vaccination.acks is the
ack reader's kind "Delivered", from MESH tracking, once the simulator has taken the message; a
refused one (no COVID C/U/D permission, a bad name) gets an InfAck failure, linked through its sent
receipt to the origins of its rows. Judged from the acks topic, the simulator's record and our inbox.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import decoded, pipeline_settings, read_topic, unique_instant
from support.topics import ensure
from support.workers import running

from schemas.extended import ExtendedAttribute, extended_file_name, render_extended
from schemas.pipeline import AckOutcome, Origin, SentReceipt
from topics.catalogue import ACKS, SENT
from vaxflow.dev.mesh_sandbox import MailboxRole
from vaxflow.dev.nhs_sim.worker import EXTENDED_ATTRIBUTES, FORWARDED, INVALID_NAME, NO_PERMISSION, NhsSimulator
from workers.ackreader import worker as ackreader
from workers.ackreader.delivery import KIND_DELIVERED
from workers.ackreader.worker import KIND_INFACK
from workers.base.kafka import idempotent_producer
from workers.base.ledger import SentLedger, encode_receipt
from workers.base.runtime import Health
from workers.base.settings import Settings

pytestmark = pytest.mark.integration

URI = "https://supplier.example/vaccinations"


class _EAFile(msgspec.Struct, frozen=True):
    name: str
    ods: str
    vaccine_type: str
    content: bytes
    origins: list[Origin]
    row_ids: list[str]


def _ea_file(rng: random.Random, ods: str, vaccine_type: str, events: list[int], *, name: str | None = None) -> _EAFile:
    """One EA row per attribute, an event's k attributes on k consecutive rows, all from its origin."""
    rows: list[ExtendedAttribute] = []
    origins: list[Origin] = []
    for n, attributes in enumerate(events):
        unique_id = uuid.UUID(int=rng.getrandbits(128)).hex
        origin = (rng.randrange(6), rng.randrange(10**9))
        for a in range(attributes):
            rows.append(ExtendedAttribute(
                VACCINATION_UNIQUE_ID=unique_id, VACCINATION_UNIQUE_ID_URI=URI, ACTION_FLAG="NEW",
                ATTRIBUTE_ID=f"ATTR{n}{a}", ATTRIBUTE_DISPLAYED_TEXT="shown", ATTRIBUTE_VALUE="value",
                RECORDED_DATE="20250601",
            ))
            origins.append(origin)
    return _EAFile(
        name=name or extended_file_name(ods, unique_instant(rng)), ods=ods, vaccine_type=vaccine_type,
        content=render_extended(rows), origins=origins, row_ids=[f"{r.VACCINATION_UNIQUE_ID}^{URI}" for r in rows],
    )


async def _send_and_record(settings: Settings, mesh: MeshSandboxHandle, files: list[_EAFile]) -> dict[str, str]:
    """Each file to the Immunisation mailbox, as the uploader sends an EA file, and its SentReceipt
    in the ledger; the MESH message id of each."""
    ids: dict[str, str] = {}
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        async with mesh.client(MailboxRole.SENDER) as ours:
            for f in files:
                local_id = f"ea-{uuid.uuid4().hex}"
                ids[f.name] = await ours.send("X26OT303", "VACCINATIONS_1", f.content, filename=f.name,
                                              local_id=local_id)
                receipt = SentReceipt(
                    file_name=f.name, local_id=local_id, message_id=ids[f.name], mailbox_to="X26OT303",
                    workflow_id="VACCINATIONS_1", vaccine_type=f.vaccine_type, sender_ods=f.ods,
                    rows=len(f.origins), bytes=len(f.content),
                    sent_at=datetime.now(UTC).isoformat(timespec="milliseconds"), origins=f.origins,
                )
                await producer.send_and_wait(settings.topic(SENT.name), encode_receipt(receipt), key=f.name.encode())
    finally:
        await producer.stop()
    return ids


def _outcomes(records: list[ConsumerRecord[bytes, bytes]], names: set[str]) -> list[AckOutcome]:
    return [o for o in decoded(records, AckOutcome) if o.file_name in names]


async def test_ea_files_end_with_delivered_or_an_infack_failure_linked_to_their_origins(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka, namespace, mesh_sandbox, nhs_sim_files_dir=tmp_path / "received")
    await ensure(settings)
    rng = random.Random(uuid.uuid4().int)
    good = _ea_file(rng, "YGM41", "COVID", [2, 1])  # two events: 2 attributes, then 1
    flu_only = _ea_file(rng, "V0V8L", "FLU", [1, 2])  # MAVIS holds no COVID permission at all
    bad_name = _ea_file(rng, "YGA", "COVID", [1], name=extended_file_name("YGA", unique_instant(rng)).replace(
        "_v1_5_", "_v1_4_"))
    files = {f.name: f for f in (good, flu_only, bad_name)}
    message_ids = await _send_and_record(settings, mesh_sandbox, list(files.values()))

    def complete(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        seen = {(o.file_name, o.kind) for o in _outcomes(records, set(files))}
        return {(good.name, KIND_DELIVERED), (flu_only.name, KIND_INFACK), (bad_name.name, KIND_INFACK)} <= seen

    sim = NhsSimulator(settings)
    sim_stop = asyncio.Event()
    sim_task = asyncio.create_task(sim.run(sim_stop, Health()))
    try:
        async with running(ackreader.run, settings):
            records = await read_topic(settings, ACKS.name, until=complete, timeout=60, settle=2.0)
    finally:
        sim_stop.set()
        await asyncio.wait_for(sim_task, 60)

    outcomes = _outcomes(records, set(files))
    by = {(o.file_name, o.kind): o for o in outcomes}
    assert len(outcomes) == 3  # exactly one each: no Delivered for a refused file, nothing twice

    # (i) Accepted: NHS England forwarded it and sent nothing; MESH tracking is the outcome.
    delivered = by[(good.name, KIND_DELIVERED)]
    assert (delivered.accepted, delivered.total_rows, delivered.mesh_message_id, delivered.ack_file,
            delivered.error, delivered.failed_rows) == (True, 3, message_ids[good.name], "", None, [])
    [received] = sim.files(good.name)
    assert (received.outcome, received.family, received.acks_sent) == (FORWARDED, EXTENDED_ATTRIBUTES, [])
    assert (received.rows, received.row_valid, received.row_ids) == (3, [True] * 3, good.row_ids)
    assert received.attribute_ids == ["ATTR00", "ATTR01", "ATTR10"]
    assert (tmp_path / "received" / received.message_id / good.name).read_bytes() == good.content

    # (ii) Refused: an InfAck failure named from the EA key, linked through the receipt to the origins.
    async with SentLedger(settings) as ledger:
        await ledger.catch_up()
        for f, outcome_name in ((flu_only, NO_PERMISSION), (bad_name, INVALID_NAME)):
            infack = by[(f.name, KIND_INFACK)]
            assert (infack.accepted, infack.total_rows, infack.error) == (False, len(f.origins), None)
            assert infack.ack_file.startswith(f.name.removesuffix(".csv") + "_InfAck_")
            assert infack.mesh_message_id != message_ids[f.name]  # the InfAck's own message
            receipt = ledger.find(infack.file_name)
            assert receipt is not None
            assert receipt.origins == f.origins  # every EA row back to its event, repeated per attribute
            [refused] = sim.files(f.name)
            assert (refused.outcome, refused.family, refused.acks_sent) == (
                outcome_name, EXTENDED_ATTRIBUTES, [infack.ack_file])

    # A restarted ack reader reads the acks topic back and publishes no second Delivered.
    async with running(ackreader.run, settings):
        await asyncio.sleep(10 * settings.ack_poll_seconds)
    again = await read_topic(settings, ACKS.name, timeout=3)
    assert len(_outcomes(again, set(files))) == 3

    # Our inbox holds none of the InfAcks any more: each was read and acknowledged.
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        left = [(await ours.download(m))[0].filename or "" for m in await ours.inbox()]
    assert not [n for n in left if any(n.startswith(f.removesuffix(".csv")) for f in files)]
