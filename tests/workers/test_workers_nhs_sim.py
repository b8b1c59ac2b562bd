"""The development NHS England simulator against the real sandbox: the receiver's file-level rules
and the acknowledgement files it sends back (spec digest sections a, b, e)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import FileFactory, pipeline_settings

from schemas.acks import ack_file_kind, parse_busack_csv, parse_busack_json, parse_infack
from schemas.batchfile import render_file
from vaxflow.dev.mesh_sandbox import MailboxRole
from vaxflow.dev.nhs_sim.worker import (
    DUPLICATE,
    EMPTY,
    INVALID_FILE,
    INVALID_NAME,
    NO_PERMISSION,
    PROCESSED,
    NhsSimulator,
)

pytestmark = pytest.mark.integration


async def _acks_for(mesh: MeshSandboxHandle, stems: set[str]) -> dict[str, list[tuple[str, bytes]]]:
    """Our inbox's ack files for the given batch-file stems, acknowledged as they are read."""
    found: dict[str, list[tuple[str, bytes]]] = {s: [] for s in stems}
    async with mesh.client(MailboxRole.SENDER) as ours:
        for message_id in await ours.inbox():
            meta, data = await ours.download(message_id)
            name = meta.filename or ""
            stem = next((s for s in stems if name.startswith(s + "_")), None)
            if stem is not None:
                found[stem].append((name, data))
                await ours.acknowledge(message_id)
    return found


async def test_simulator_applies_the_receivers_file_rules(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka, namespace, mesh_sandbox, nhs_sim_log_file=tmp_path / "log.jsonl")
    make = FileFactory()
    good = make.ready("MMR", 3, invalid_rows=[2])
    empty_name = make.ready("HPV", 1).file_name
    unauthorised = make.ready("RSV", 1, name_ods="V0V8L")  # MAVIS holds no RSV permission
    bad_header = make.ready("MMR", 1)
    sends = [
        (good.file_name, good.content),
        (good.file_name, good.content),  # the same name again: a duplicate
        (f"Flu_Vaccination_v5_YGM41_{uuid.uuid4().hex[:6]}.csv", b"x"),  # 'Vaccination' singular
        (empty_name, render_file([])),  # header only
        (unauthorised.file_name, unauthorised.content),
        (bad_header.file_name, b"\xef\xbb\xbf" + bad_header.content),  # a BOM breaks the header
    ]
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        for name, data in sends:
            await ours.send("X26OT303", "VACCINATIONS_1", data, filename=name, local_id=f"sim-{uuid.uuid4().hex}")

    sim = NhsSimulator(settings, dev_config=mesh_sandbox.mailboxes)
    sim.mailboxes = ["X26OT303"]
    await sim.poll_once()
    names = {name for name, _ in sends}
    outcomes = [(r.file_name, r.outcome) for r in sim.received if r.file_name in names]
    assert outcomes == [
        (good.file_name, PROCESSED),
        (good.file_name, DUPLICATE),
        (sends[2][0], INVALID_NAME),
        (empty_name, EMPTY),
        (unauthorised.file_name, NO_PERMISSION),
        (bad_header.file_name, INVALID_FILE),
    ]
    first = sim.files(good.file_name)[0]
    assert (first.rows, first.row_valid, first.failed_rows) == (3, [True, False, True], [2])
    assert all(r.sender == "X26VXF001" for r in sim.received if r.file_name in names)

    stems = {n.removesuffix(".csv") for n in names}
    acks = await _acks_for(mesh_sandbox, stems)
    good_acks = acks[good.file_name.removesuffix(".csv")]
    kinds = sorted((ack_file_kind(n).kind, ack_file_kind(n).format) for n, _ in good_acks)  # type: ignore[union-attr]
    # Processed (InfAck + BusAck csv + json), then the duplicate (InfAck failure only).
    assert kinds == [("BusAck", "csv"), ("BusAck", "json"), ("InfAck", "csv"), ("InfAck", "csv")]
    infacks = sorted(parse_infack(d).success for n, d in good_acks if "_InfAck_" in n)
    assert infacks == [False, True]
    [busack] = [parse_busack_csv(d) for n, d in good_acks if n.endswith(".csv") and "_BusAck_" in n]
    assert [row.row_number for row in busack] == [2]
    assert first.row_ids[1] == busack[0].LOCAL_ID
    [report] = [parse_busack_json(d) for n, d in good_acks if n.endswith(".json")]
    assert (report.summary.total_records, report.summary.failed, report.failures[0].row_id) == (3, 1, 2)
    assert report.filename == good.file_name.removesuffix(".csv")

    empty_acks = acks[empty_name.removesuffix(".csv")]
    assert [parse_infack(d).success for _, d in empty_acks] == [True]  # and no BusAck for an empty file
    for failing in (unauthorised.file_name, bad_header.file_name):
        [(_, data)] = acks[failing.removesuffix(".csv")]
        assert not parse_infack(data).success

    # The log lets a restarted simulator keep refusing the names it already processed.
    again = NhsSimulator(settings, dev_config=mesh_sandbox.mailboxes)
    assert good.file_name.upper() in again.processed_names
    assert len([r for r in again.received if r.file_name in names]) == len(sends)
