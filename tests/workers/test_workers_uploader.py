"""The uploader against the real broker and the real MESH sandbox: delivery, crash recovery,
restart, dead letters and a MESH outage (docs/architecture.md, "Exactly once" and "MESH")."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import (
    FileFactory,
    acknowledge_all,
    assert_each_delivered_once,
    decoded,
    delivered_once_each,
    inbox_messages,
    pipeline_settings,
    produce_ready,
    read_topic,
    receipts_for,
    upload,
    wait_committed,
)
from support.topics import ensure
from support.workers import running, wait_for

from schemas.batchkey import encode_key
from schemas.pipeline import ReadyFile, SentReceipt, UploadFailure
from topics import headers as h
from topics.catalogue import DEADLETTER, READY, SENT
from vaxflow.dev.mesh_sandbox import MailboxRole
from vaxflow.ops.lag import group_lag
from vaxflow.ops.redrive import RedriveFilter, redrive
from workers.base.kafka import idempotent_producer
from workers.base.ledger import SentLedger, encode_receipt
from workers.base.mesh.client import MeshClient
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.uploader import worker as uploader
from workers.uploader.outcomes import local_id_generation

pytestmark = pytest.mark.integration

IMMS, DPS = "X26OT303", "X26DPS001"


@pytest.fixture
async def settings(kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle) -> Settings:
    """The usual uploader settings (the test sandbox, quick retries), with the test's topics created."""
    configured = pipeline_settings(kafka, namespace, mesh_sandbox)
    await ensure(configured)
    return configured


async def test_files_arrive_in_the_routed_mailbox_byte_identical(
    settings: Settings, mesh_sandbox: MeshSandboxHandle
) -> None:
    make = FileFactory()
    rsv, flu, mmr = make.ready("RSV", 5), make.ready("FLU", 3), make.ready("MMR", 2)
    # Over the 5 MiB chunk size and incompressible: goes as two gzip chunks.
    big = make.ready("COVID", 2, content=random.Random(3).randbytes(6 * 1024 * 1024))
    files = [rsv, flu, mmr, big]
    await produce_ready(settings, files)

    records = await upload(settings, {f.file_name for f in files}, timeout=60)

    receipts = {r.file_name: r for r in decoded(records, SentReceipt)}
    assert len(records) == len(files)  # one receipt per file, no more
    expected_box = {rsv.file_name: IMMS, flu.file_name: DPS, mmr.file_name: IMMS, big.file_name: IMMS}
    for f in files:
        receipt = receipts[f.file_name]
        assert receipt.mailbox_to == expected_box[f.file_name]
        assert receipt.workflow_id == ("DPS_FLU_VAC" if f.vaccine_type == "FLU" else "VACCINATIONS_1")
        assert (receipt.local_id, receipt.recovered, receipt.rows) == (f.local_id, False, f.rows)
        assert receipt.origins == f.origins
        assert receipt.bytes == len(f.content)

    await assert_each_delivered_once(
        mesh_sandbox.client, files, expected_box, receipts, chunks_of=lambda f: 2 if f is big else 1
    )


async def test_files_of_different_keys_in_one_partition_are_in_flight_together_and_each_sent_once(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline_settings(kafka, namespace, mesh_sandbox, uploader_concurrency=3)
    await ensure(settings)
    make = FileFactory()
    # Twelve batch keys (files of one key go one after another, in order: keys overlap).
    files = [make.ready(t, 2, ods=ods) for t in ("RSV", "MMR", "HPV", "COVID") for ods in ("YGA", "YGJ", "YGM41")]
    await produce_ready(settings, files)
    per_partition = Counter(r.partition for r in await read_topic(settings, READY.name, timeout=5))
    assert max(per_partition.values()) >= 2  # some partition has several keys to overlap

    real_send = MeshClient.send
    in_flight, most = 0, 0

    async def slow_send(self: MeshClient, *args: object, **kwargs: object) -> str:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.3)  # MESH's latency, so that overlap is visible
            return await real_send(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    monkeypatch.setattr(MeshClient, "send", slow_send)
    records = await upload(settings, {f.file_name for f in files}, timeout=60)
    assert len(records) == len(files)
    # One file per partition at a time would allow at most one in flight per partition.
    assert len(per_partition) < most <= 3 * len(per_partition)
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        found = await inbox_messages(imms, [f.file_name for f in files])
        assert all(len(found[f.file_name]) == 1 for f in files)
        assert all(found[f.file_name][0][1] == f.content for f in files)
        await acknowledge_all(imms, found)


async def test_crash_after_mesh_send_before_receipt_recovers_by_tracking(
    settings: Settings, mesh_sandbox: MeshSandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = FileFactory()

    # (a) The file went to MESH (under its local id) and then the uploader died: simulated by
    # sending it ourselves, exactly as the uploader would have.
    pre = make.ready("RSV", 2)
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        pre_id = await ours.send(IMMS, "VACCINATIONS_1", pre.content, filename=pre.file_name, local_id=pre.local_id)

    # (b) A real kill: the uploader task is cancelled right after MESH accepted the file.
    killed = make.ready("MMR", 2)
    sent_ids: list[str] = []
    real_send = MeshClient.send

    async def send_then_die(self: MeshClient, *args: object, **kwargs: object) -> str:
        message_id = await real_send(self, *args, **kwargs)  # type: ignore[arg-type]
        sent_ids.append(message_id)
        await asyncio.Event().wait()  # hangs here, between "sent" and "recorded"
        return message_id

    await produce_ready(settings, [killed])
    monkeypatch.setattr(MeshClient, "send", send_then_die)
    stop = asyncio.Event()
    task = asyncio.create_task(uploader.run(settings, stop, Health()))
    await wait_for(lambda: bool(sent_ids), what="the first MESH send")
    task.cancel()  # SIGKILL-like for this worker: no receipt, no commit
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(MeshClient, "send", real_send)
    assert (await read_topic(settings, SENT.name, timeout=1)) == []

    await produce_ready(settings, [pre])
    records = await upload(settings, {pre.file_name, killed.file_name})
    receipts = {r.file_name: r for r in decoded(records, SentReceipt)}
    assert len(records) == 2
    assert receipts[pre.file_name].recovered
    assert receipts[pre.file_name].message_id == pre_id
    assert receipts[killed.file_name].recovered
    assert receipts[killed.file_name].message_id == sent_ids[0]

    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        found = await inbox_messages(imms, [pre.file_name, killed.file_name])
        assert {name: len(msgs) for name, msgs in found.items()} == {pre.file_name: 1, killed.file_name: 1}
        await acknowledge_all(imms, found)


async def test_an_upload_killed_between_chunks_is_resumed_as_the_same_message(
    settings: Settings, mesh_sandbox: MeshSandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 1 of 3 reached MESH, then the uploader died: the restart finishes that message (one
    message, the same id, byte-identical) instead of starting a new one under another local id."""
    big = FileFactory().ready("COVID", 2, content=random.Random(5).randbytes(11 * 1024 * 1024))  # 3 chunks of 5 MiB
    await produce_ready(settings, [big])

    real_chunk = MeshClient._send_chunk
    first_ids: list[str] = []

    async def die_before_chunk_2(self: MeshClient, message_id: str, *args: object, **kwargs: object) -> None:
        first_ids.append(message_id)
        await asyncio.Event().wait()  # the process "dies" here: chunk 1 in MESH, 2 and 3 never sent

    monkeypatch.setattr(MeshClient, "_send_chunk", die_before_chunk_2)
    task = asyncio.create_task(uploader.run(settings, asyncio.Event(), Health()))
    await wait_for(lambda: bool(first_ids), what="the first chunk of the big file")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(MeshClient, "_send_chunk", real_chunk)
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        half = await ours.track_by_local_id(big.local_id)
        assert half is not None
        assert not half.complete
        assert (half.message_id, half.total_chunks) == (first_ids[0], 3)

    records = await upload(settings, {big.file_name}, timeout=60)
    [receipt] = decoded(records, SentReceipt)
    assert (receipt.message_id, receipt.local_id, receipt.recovered) == (first_ids[0], big.local_id, True)
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        assert await ours.track_by_local_id(local_id_generation(big.local_id, 2)) is None
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        found = await inbox_messages(imms, [big.file_name])
        [(meta, data)] = found[big.file_name]
        assert (meta.message_id, meta.total_chunks) == (first_ids[0], 3)
        assert data == big.content
        await acknowledge_all(imms, found)


async def test_restart_and_replay_over_sent_files_send_nothing_new(
    settings: Settings, namespace: str, mesh_sandbox: MeshSandboxHandle
) -> None:
    make = FileFactory()
    first = [make.ready("RSV", 2), make.ready("HPV", 2)]
    await produce_ready(settings, first)
    await upload(settings, {f.file_name for f in first})
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        found = await inbox_messages(imms, [f.file_name for f in first])
        assert all(len(m) == 1 for m in found.values())
        await acknowledge_all(imms, found)

    # Another instance recorded this file as sent (its receipt is in the ledger, MESH never saw
    # it from us): the uploader must trust the ledger and skip it.
    elsewhere = make.ready("MMR", 1)

    producer = idempotent_producer(settings)
    await producer.start()
    receipt = SentReceipt(
        file_name=elsewhere.file_name, local_id=elsewhere.local_id, message_id="ELSEWHERE", mailbox_to=IMMS,
        workflow_id="VACCINATIONS_1", vaccine_type="MMR", sender_ods=elsewhere.sender_ods, rows=1, bytes=1,
        sent_at="2025-01-01T00:00:00Z", origins=elsewhere.origins,
    )
    await producer.send_and_wait(settings.topic(SENT.name), encode_receipt(receipt), key=elsewhere.file_name.encode())
    await producer.stop()
    await produce_ready(settings, [elsewhere])

    # Restart in the same group, then an operator replay of the whole ready topic (a new group
    # reads it from the beginning): nothing new reaches MESH either time.
    for group in (settings.uploader_group, f"{namespace}-replay"):
        replay = settings.model_copy(update={"uploader_group": group})
        async with running(uploader.run, replay):
            await wait_committed(replay, replay.group(group), READY.name)
    records = await read_topic(settings, SENT.name, timeout=2)
    assert sorted(r.key.decode() for r in records) == sorted([f.file_name for f in first] + [elsewhere.file_name])
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        found = await inbox_messages(imms, [f.file_name for f in first] + [elsewhere.file_name])
        assert all(not msgs for msgs in found.values()), {k: len(v) for k, v in found.items()}

    async with SentLedger(settings) as ledger:
        await ledger.catch_up()
        assert len(ledger) == 3
        assert ledger.by_local_id(elsewhere.local_id) is not None


async def test_unknown_route_and_unknown_mailbox_go_to_the_dead_letter_topic_once(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"version": 1, "routes": {
        "RSV": {"mailbox": "X26NOSUCH", "workflow_id": "VACCINATIONS_1"},
        "FLU": {"mailbox": DPS, "workflow_id": "DPS_FLU_VAC"},
    }}))
    settings = pipeline_settings(kafka, namespace, mesh_sandbox, routes_file=routes)
    await ensure(settings)
    make = FileFactory()
    nobody, unrouted, fine = make.ready("RSV", 2), make.ready("MMR", 2), make.ready("FLU", 1)
    await produce_ready(settings, [nobody, unrouted, fine])

    for _ in range(2):  # the second run must find nothing left to do
        async with running(uploader.run, settings):
            await wait_committed(settings, settings.group(settings.uploader_group), READY.name)
            await asyncio.sleep(1)
    dead = await read_topic(settings, DEADLETTER.name, until=lambda r: len(r) >= 2)
    failures = {f.file.file_name: f for f in decoded(dead, UploadFailure)}
    assert len(dead) == 2  # each file exactly once, across two runs
    assert failures[nobody.file_name].status == 417  # MESH: unregistered recipient
    assert failures[nobody.file_name].attempts == 1  # permanent: no retries
    assert failures[nobody.file_name].file == nobody
    assert failures[unrouted.file_name].status is None
    assert failures[unrouted.file_name].attempts == 0
    assert "MMR" in failures[unrouted.file_name].error
    by_name = {r.key.decode(): r for r in dead}
    headers = dict(by_name[nobody.file_name].headers)
    assert headers[h.DLQ_MESH_STATUS] == b"417"
    assert headers[h.DLQ_STAGE] == b"upload"
    assert headers[h.DLQ_TOPIC] == settings.topic(READY.name).encode()
    assert headers[h.ORIGIN] == f"{nobody.origins[0][0]}:{nobody.origins[0][1]}".encode()

    sent = await read_topic(settings, SENT.name, until=lambda r: len(r) >= 1)
    assert [r.key.decode() for r in sent] == [fine.file_name]
    async with mesh_sandbox.client(MailboxRole.DPS) as dps:
        await acknowledge_all(dps, await inbox_messages(dps, [fine.file_name]))


async def test_dead_letters_are_redriven_after_the_routes_are_fixed_and_go_once(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    """A recipient that does not exist -> dead letter, then redrive after a fix."""
    routes = tmp_path / "routes.json"

    def write_routes(rsv_mailbox: str, with_mmr: bool) -> None:
        table = {"RSV": {"mailbox": rsv_mailbox, "workflow_id": "VACCINATIONS_1"}}
        if with_mmr:
            table["MMR"] = {"mailbox": IMMS, "workflow_id": "VACCINATIONS_1"}
        routes.write_text(json.dumps({"version": 1, "routes": table}))

    write_routes("X26NOSUCH", with_mmr=False)
    settings = pipeline_settings(kafka, namespace, mesh_sandbox, routes_file=routes)
    await ensure(settings)
    make = FileFactory()
    nobody, unrouted = make.ready("RSV", 2), make.ready("MMR", 3)
    files = [nobody, unrouted]
    await produce_ready(settings, files)
    async with running(uploader.run, settings):
        await wait_committed(settings, settings.group(settings.uploader_group), READY.name)
    assert len(await read_topic(settings, DEADLETTER.name, until=lambda r: len(r) >= 2)) == 2

    # The fix: the right mailbox for RSV and a route for MMR; the uploader restarts with them.
    write_routes(IMMS, with_mmr=True)
    planned = await redrive(settings, "deadletter", RedriveFilter.parse(["vaccine=rsv"]))
    assert (planned.matched, len(planned.candidates), planned.submitted) == (1, 1, 0)  # a dry run
    async with running(uploader.run, settings):
        report = await redrive(settings, "deadletter", execute=True)
        assert (report.scanned, report.submitted, report.already_sent) == (2, 2, 0)
        records = await read_topic(settings, SENT.name, until=receipts_for({f.file_name for f in files}), timeout=60)
        # Not wait_committed: the redrive wrote in a transaction, whose marker ends each partition
        # and is never a record to commit past. The ops lag probe tells markers from records.
        ready = await read_topic(settings, READY.name, timeout=2)
        redriven = [r for r in ready if h.header(r.headers, h.REDRIVE_COUNT)]
        lag_of = {settings.group(settings.uploader_group): settings.topic(READY.name)}

        async def caught_up() -> bool:
            return not any(row.pending for row in await group_lag(settings, lag_of))

        for _ in range(100):
            if await caught_up():
                break
            await asyncio.sleep(0.2)
        assert await caught_up()
    receipts = {r.file_name: r for r in decoded(records, SentReceipt)}
    assert len(records) == 2
    for f in files:
        assert (receipts[f.file_name].local_id, receipts[f.file_name].origins) == (f.local_id, f.origins)
    assert sorted(f.file_name for f in decoded(redriven, ReadyFile)) == sorted(f.file_name for f in files)
    assert {r.key for r in redriven} == {encode_key(f.vaccine_type, f.sender_ods) for f in files}
    assert {h.header(r.headers, h.REDRIVE_COUNT) for r in redriven} == {b"1"}

    # A second redrive finds both files in the sent ledger and submits nothing; no new dead letter either.
    again = await redrive(settings, "deadletter", execute=True)
    assert (again.scanned, again.already_sent, again.submitted) == (2, 2, 0)
    assert len(await read_topic(settings, DEADLETTER.name, timeout=2)) == 2
    await assert_each_delivered_once(
        mesh_sandbox.client, files, {f.file_name: IMMS for f in files}, receipts, chunks_of=lambda f: 1
    )


async def test_files_wait_out_a_mesh_outage_and_then_go(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle
) -> None:
    settings = pipeline_settings(
        kafka, namespace, mesh_sandbox, upload_backoff_initial_seconds=0.2, upload_backoff_max_seconds=1.0,
    )
    await ensure(settings)
    make = FileFactory()
    files = [make.ready("RSV", 2), make.ready("FLU", 2)]
    mesh_sandbox.stop()
    try:
        async with running(uploader.run, settings):
            await produce_ready(settings, files)
            await asyncio.sleep(4)  # several failed attempts, each backing off
            assert await read_topic(settings, SENT.name, timeout=0.5) == []
            assert await read_topic(settings, DEADLETTER.name, timeout=0.5) == []
            await mesh_sandbox.start_async()
            records = await read_topic(settings, SENT.name, until=receipts_for({f.file_name for f in files}),
                                       timeout=60)
            await wait_committed(settings, settings.group(settings.uploader_group), READY.name)
    finally:
        if mesh_sandbox.layout is not None and not await _alive(mesh_sandbox):
            await mesh_sandbox.start_async()
    assert len(records) == 2
    assert await read_topic(settings, DEADLETTER.name, timeout=0.5) == []
    await delivered_once_each(mesh_sandbox, {MailboxRole.IMMUNISATION: files[0], MailboxRole.DPS: files[1]})


async def _alive(mesh: MeshSandboxHandle) -> bool:
    from vaxflow.dev.mesh_sandbox import is_running

    return await is_running(mesh.url)
