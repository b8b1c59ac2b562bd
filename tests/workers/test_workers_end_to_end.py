"""The whole pipeline against the real broker and the real MESH sandbox, at volume.

50,000 events (all seed vaccine types, many senders, 5% invalid) go raw -> validator -> batcher ->
uploader -> MESH -> simulated NHS England -> InfAck/BusAck -> ackreader. Checked: every event ends
in exactly one place (a row of a file MESH accepted, the rejected topic, or a dead-lettered file:
one vaccine type is routed to a mailbox MESH does not know, so all three are used), decided both
from the workers' records and from the files read back from the recipients' MESH inboxes, each row
matched to its event by UNIQUE_ID_URI + UNIQUE_ID (support.placement); nothing more arrives in MESH
for a settle period after the last file; no origin is in two files; no file name reaches NHS
England twice; every file NHS England received passes `vaxflow check-file`; every file is
acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from importlib import resources
from pathlib import Path

import msgspec
import pytest
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import (
    empty_inbox,
    empty_recipient_inboxes,
    pipeline_settings,
    reading_back,
    until_received,
)
from pipeline_support import ProcessWorker, kill_and_restart, kill_schedule, produce_paced, settings_env
from support.placement import Fault, SentLoad, assert_mid_stream, nothing_more_arrives, settle_seconds
from support.topics import ensure
from support.workers import running_all

from schemas.checkfile import main as check_file
from schemas.pipeline import UploadFailure
from topics.catalogue import DEADLETTER, REJECTED
from vaxflow.dev.demo import settled_outcome
from vaxflow.dev.loadgen import generate, produce
from vaxflow.dev.mesh_sandbox import MailboxRole
from vaxflow.dev.nhs_sim.worker import PROCESSED, kept_file
from workers.ackreader import worker as ackreader
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end
from workers.batcher import worker as batcher
from workers.uploader import worker as uploader
from workers.validator import worker as validator

pytestmark = pytest.mark.integration

EVENTS = 50_000


async def rejected_values(settings: Settings) -> list[bytes]:
    return [r.value or b"" for r in await read_to_end(settings, settings.topic(REJECTED.name))]


async def dead_lettered(settings: Settings) -> list[UploadFailure]:
    return [msgspec.json.decode(r.value or b"", type=UploadFailure)
            for r in await read_to_end(settings, settings.topic(DEADLETTER.name))]


async def test_fifty_thousand_events_end_in_exactly_one_place(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    # PERTUSSIS files go to a mailbox MESH does not know, so all three places an event can end in
    # (a sent file's row, the rejected topic, a dead-lettered file) are counted in one run.
    routes = json.loads(resources.files("workers.uploader").joinpath("routes_default.json").read_text())
    routes["routes"]["PERTUSSIS"]["mailbox"] = "X26NOSUCH"
    (tmp_path / "routes.json").write_text(json.dumps(routes))
    settings = pipeline_settings(
        kafka, namespace, mesh_sandbox,
        window_seconds=5, grace_seconds=1, max_rows_per_file=4000,
        archive_dir=tmp_path / "archive", dev_home=tmp_path,
        nhs_sim_files_dir=tmp_path / "received", routes_file=tmp_path / "routes.json",
    )
    await ensure(settings)
    print(f"\n[e2e] acknowledged {await empty_recipient_inboxes(mesh_sandbox)} messages earlier tests left")
    load = generate(EVENTS, invalid_fraction=0.05, seed=50)
    sent = SentLoad(load.payloads, load.invalid)
    loop = asyncio.get_running_loop()
    async with reading_back(settings) as sim:
        started = loop.time()
        async with running_all(settings, validator.run, batcher.run, uploader.run, ackreader.run):
            origins = set(await produce(settings, load.payloads, load.keys))
            assert len(origins) == EVENTS
            # every event placed and every sent file acknowledged within 600 s, or TimeoutError
            result = await settled_outcome(settings, origins, 600)
            settle = settle_seconds(settings)
            await nothing_more_arrives(sim.message_count, settle, "MESH messages")
    print(f"\n[e2e] {EVENTS} events placed and acknowledged in {loop.time() - started:.0f}s; "
          f"{len(result['files'])} files; nothing more arrived in MESH for {settle:.0f}s")
    dead_files = await dead_lettered(settings)
    placement = sent.check(
        sim.downloaded, await rejected_values(settings),
        {f"{n}:{f.file.file_name}": f.file.content for n, f in enumerate(dead_files)},
    )
    print(f"[e2e] read back from MESH: {placement.summary()}")

    in_files, rejected, dead = result["in_files"], result["rejected"], result["dead_lettered"]
    print(f"[e2e] in sent files {len(in_files)}, rejected {len(rejected)}, in dead-lettered files {len(dead)}")
    assert not [o for o, n in in_files.items() if n > 1], "an origin is in more than one sent file"
    assert not (set(in_files) & rejected), "an event is both in a file and rejected"
    assert not (set(in_files) & dead), "an event is both in a sent file and in a dead-lettered one"
    assert not (rejected & dead), "an event is both rejected and in a dead-lettered file"
    assert set(in_files) | rejected | dead == origins
    assert len(rejected) == len(load.invalid)
    assert dead_files
    assert len(placement.in_files) == len(in_files)
    assert len(placement.dead_lettered) == len(dead)
    assert {f.file.vaccine_type for f in dead_files} == {"PERTUSSIS"}
    assert all(f.status == 417 for f in dead_files)  # MESH: unregistered recipient, not retried
    assert sum(f.file.rows for f in dead_files) == len(dead)  # each origin in one dead file only
    assert all(rc.vaccine_type != "PERTUSSIS" for rc in result["files"])
    coords = sorted(origins)

    processed = [r for r in sim if r.outcome == PROCESSED]
    names = Counter(r.file_name for r in sim)
    assert all(n == 1 for n in names.values()), "NHS England received a file name twice"
    assert {r.file_name for r in processed} == {rc.file_name for rc in result["files"]}
    assert sum(r.rows for r in processed) == len(in_files)
    for record in processed:
        path = kept_file(settings, record)
        assert path is not None
        assert check_file([str(path)]) == 0, f"{record.file_name} fails check-file"
    assert all(result["infacks"].values())
    assert coords  # the load was not empty


async def test_sigkill_every_worker_with_mesh(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    """Validator, batcher and uploader as processes, SIGKILLed at random instants (three kills of
    each) while 10,000 events arrive (paced to outlast the kills) and flow to the sandbox; at each
    kill, events produced and not yet in MESH are counted. Nothing lost, every row read back from
    MESH matched to one event, no file name received twice."""
    settings = pipeline_settings(
        kafka, namespace, mesh_sandbox,
        window_seconds=3, grace_seconds=1, max_rows_per_file=300,
        archive_dir=tmp_path / "archive", dev_home=tmp_path,
    )
    await ensure(settings)
    print(f"\n[kill-mesh] acknowledged {await empty_recipient_inboxes(mesh_sandbox)} messages earlier tests left")
    load = generate(10_000, invalid_fraction=0.05, seed=77)
    sent_load = SentLoad(load.payloads, load.invalid)
    env = settings_env(settings)
    workers = {n: ProcessWorker(n, env, tmp_path / f"{n}.log").start() for n in ("validator", "batcher", "uploader")}
    sent: list[tuple[int, int]] = []
    faults_done = asyncio.Event()
    try:
        async with reading_back(settings) as sim:

            async def in_flight(what: str, at: float, produced: int) -> Fault:
                placed = sent_load.placed(sim.downloaded.values(), await rejected_values(settings))
                return Fault(what, at, produced, len(set(range(produced)) - placed))

            try:
                schedule = kill_schedule(workers, random.Random(11), 0.5, 3.0)
                # each kill's measurement takes a moment too
                seconds = sum(pause for _, pause in schedule) + len(schedule)
                produce_task = asyncio.create_task(
                    produce_paced(settings, load.payloads, load.keys, seconds=seconds, sent=sent, hold_last=faults_done)
                )
                faults = await kill_and_restart(workers, schedule, sent, in_flight)
                faults_done.set()
                origins = set(await produce_task)
                result = await until_received(settings, origins, sim, 400)
                settle = settle_seconds(settings)
                await nothing_more_arrives(sim.message_count, settle, "MESH messages")
            finally:
                faults_done.set()
                for worker in workers.values():
                    worker.terminate()
    finally:
        async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
            left = await empty_inbox(ours)  # the simulator's ack files: no ack reader runs here
    print(f"[kill-mesh] acknowledged {left} ack files the simulator sent back")
    print(f"[kill-mesh] {'; '.join(map(str, faults))}; files: {len(result['files'])}; "
          f"nothing more arrived in MESH for {settle:.0f}s")
    assert_mid_stream(faults, len(load.payloads))
    placement = sent_load.check(sim.downloaded, await rejected_values(settings))
    print(f"[kill-mesh] read back from MESH: {placement.summary()}")
    assert not [o for o, n in result["in_files"].items() if n > 1], "an origin is in more than one sent file"
    assert not result["dead_lettered"]
    names = Counter(r.file_name for r in sim)
    assert all(n == 1 for n in names.values()), "NHS England received a file name twice"
    rows_received = sum(r.rows for r in sim if r.outcome == PROCESSED)
    assert rows_received == len(result["in_files"]), "NHS England received rows that no receipt covers"
