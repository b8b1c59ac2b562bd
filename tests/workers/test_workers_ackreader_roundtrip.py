"""Uploader -> MESH -> simulated NHS England -> MESH -> ack reader -> vaccination.acks, for real.

The acknowledgements must come back linked to the events: a failed BusAck row names the origin
of the event in that row (via the sent receipt's origins list).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import FileFactory, decoded, pipeline_settings, produce_ready, read_topic
from support.topics import ensure
from support.workers import running

from schemas.checkfile import main as check_file
from schemas.pipeline import AckOutcome
from topics.catalogue import ACKS
from vaxflow.dev.mesh_sandbox import MailboxRole
from vaxflow.dev.nhs_sim.worker import PROCESSED, NhsSimulator, kept_file
from workers.ackreader import worker as ackreader
from workers.ackreader.worker import KIND_BUSACK, KIND_BUSACK_REPORT, KIND_INFACK, KIND_UNKNOWN
from workers.base.runtime import Health
from workers.uploader import worker as uploader

pytestmark = pytest.mark.integration


async def test_round_trip_links_row_failures_to_origins(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    settings = pipeline_settings(
        kafka, namespace, mesh_sandbox,
        nhs_sim_log_file=tmp_path / "received.jsonl", nhs_sim_files_dir=tmp_path / "received",
    )
    await ensure(settings)
    make = FileFactory()
    rsv = make.ready("RSV", 4, invalid_rows=[3])  # row 3: NHS number with a wrong check digit
    flu = make.ready("FLU", 2)
    stray_name = f"not-an-ack-{namespace}.txt"
    expected = {rsv.file_name, flu.file_name, stray_name}

    sim = NhsSimulator(settings)
    sim_stop = asyncio.Event()
    sim_task = asyncio.create_task(sim.run(sim_stop, Health()))
    try:
        async with running(ackreader.run, settings), running(uploader.run, settings):
            await produce_ready(settings, [rsv, flu])
            # Something in our inbox that is no acknowledgement at all.
            async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
                await imms.send("X26VXF001", "VACCINATIONS_1_ACK", b"hello", filename=stray_name,
                                local_id=f"stray-{namespace}")

            def complete(records: list) -> bool:  # type: ignore[type-arg]
                outcomes = decoded(records, AckOutcome)
                seen = {(o.file_name, o.kind) for o in outcomes}
                batch = {(n, k) for n in (rsv.file_name, flu.file_name)
                         for k in (KIND_INFACK, KIND_BUSACK, KIND_BUSACK_REPORT)}
                return batch <= seen and (stray_name, KIND_UNKNOWN) in seen

            records = await read_topic(settings, ACKS.name, until=complete, timeout=60)
    finally:
        sim_stop.set()
        await sim_task

    outcomes = [o for o in decoded(records, AckOutcome) if o.file_name in expected]
    by = {(o.file_name, o.kind): o for o in outcomes}
    assert len(outcomes) == 7  # exactly one outcome per MESH message: nothing published twice
    assert len({o.mesh_message_id for o in outcomes}) == 7
    assert all(r.key.decode() == o.file_name for r, o in zip(records, decoded(records, AckOutcome), strict=True))

    # File level: both files passed the header and permission checks.
    for f in (rsv, flu):
        infack = by[(f.file_name, KIND_INFACK)]
        assert infack.accepted
        assert infack.error is None
        assert infack.total_rows == f.rows
        assert infack.ack_file.startswith(f.file_name.removesuffix(".csv") + "_InfAck_")

    # Row level: RSV row 3 failed and points back at the event that made it; FLU is clean.
    for kind in (KIND_BUSACK, KIND_BUSACK_REPORT):
        bad = by[(rsv.file_name, kind)]
        assert not bad.accepted
        assert bad.total_rows == 4
        [row] = bad.failed_rows
        assert row.row == 3
        assert row.origin == rsv.origins[2]
        assert row.response_code == "30002"
        assert "NHS" in row.message.upper()
        good = by[(flu.file_name, kind)]
        assert good.accepted
        assert good.failed_rows == []
        assert good.total_rows == 2
    record_3 = sim.files(rsv.file_name)[0]
    assert by[(rsv.file_name, KIND_BUSACK)].failed_rows[0].local_id == record_3.row_ids[2]

    stray = by[(stray_name, KIND_UNKNOWN)]
    assert not stray.accepted
    assert stray.error

    # What "NHS England" received: each file once, every row accounted for, no event twice.
    received = {r.file_name: r for r in sim.received if r.file_name in expected}
    assert set(received) == {rsv.file_name, flu.file_name}
    assert all(len(sim.files(n)) == 1 for n in received)
    assert received[rsv.file_name].outcome == PROCESSED
    assert received[rsv.file_name].row_valid == [True, True, False, True]
    assert received[flu.file_name].row_valid == [True, True]
    assert received[rsv.file_name].mailbox == "X26OT303"
    assert received[flu.file_name].mailbox == "X26DPS001"
    assert sim.repeated_row_ids() == {}
    # The kept copies are what check-file judges: it agrees with the simulated receiver.
    for name, rec in received.items():
        path = kept_file(settings, rec)
        assert path is not None
        assert path.read_bytes() == (rsv if name == rsv.file_name else flu).content
        assert (check_file([str(path)]) == 0) == all(rec.row_valid)
    # The log is the same record, for tools that run outside the test process.
    logged = (tmp_path / "received.jsonl").read_text().splitlines()
    assert sum(1 for line in logged if rsv.file_name in line or flu.file_name in line) == 2

    # Everything was acknowledged: nothing of ours is left in our inbox.
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        leftover = set()
        for message_id in await ours.inbox():
            meta, _ = await ours.download(message_id)
            leftover.add(meta.filename)
        assert not {n for n in leftover if n and any(n.startswith(x.removesuffix(".csv")) for x in expected)}
