"""Exactly once on the three-broker SASL_SSL cluster while its brokers fail.

50,000 events go through the gateway, validator, batcher and uploader (each its own process and
principal) to the MESH sandbox, while the leader of the busiest raw, valid and ready partition is
SIGKILLed in turn (restarted after a few seconds), and then every broker is restarted one after
another (a rolling restart, each waiting for the cluster to be fully replicated again, as an
operator's would). Judged from what MESH received, row by row against the events posted: every
event in exactly one place, no origin in two files, no file name received twice.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import aiohttp
import msgspec
import pytest
from cluster_support import (
    Posted,
    cluster_pipeline_settings,
    gateway_env,
    leader_of_busiest,
    post_chunk,
    start_workers,
    wait_fully_replicated,
    wait_ready,
)
from fixtures_kafka import ClusterHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import MeshReadBack, empty_inbox, empty_recipient_inboxes, until_received
from support.placement import Fault, SentLoad, assert_mid_stream, nothing_more_arrives, settle_seconds
from support.ports import free_port
from support.topics import ensure

from schemas.pipeline import UploadFailure
from topics.catalogue import CATALOGUE, DEADLETTER, READY, REJECTED, VALID
from topics.catalogue import RAW as RAW_SPEC
from vaxflow.dev.loadgen import generate
from vaxflow.dev.mesh_sandbox import MailboxRole
from vaxflow.dev.nhs_sim.worker import PROCESSED
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end

pytestmark = pytest.mark.integration

EVENTS = 50_000
CHUNK = 250


async def _values(settings: Settings, topic: str) -> list[bytes]:
    return [r.value or b"" for r in await read_to_end(settings, settings.topic(topic))]


async def test_leader_kills_and_a_rolling_restart_lose_and_double_nothing(
    kafka_cluster_handle: ClusterHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    cluster = kafka_cluster_handle
    settings = cluster_pipeline_settings(
        cluster, namespace, mesh_sandbox,
        window_seconds=4, grace_seconds=1, max_rows_per_file=2000,
        archive_dir=tmp_path / "archive", dev_home=tmp_path,
    )  # fmt: skip
    await ensure(settings)
    await cluster.grant(settings)
    print(f"\n[failover] acknowledged {await empty_recipient_inboxes(mesh_sandbox)} messages earlier tests left")
    port = free_port()
    # a send may wait out a leader election (a dead broker is fenced after its 9 s session timeout)
    workers = start_workers(cluster, settings, ("gateway", "validator", "batcher", "uploader"), tmp_path,
                            **gateway_env(port, send_timeout=40.0))  # fmt: skip
    load = generate(EVENTS, invalid_fraction=0.05, seed=2026)
    posted = Posted()
    sim = MeshReadBack(settings)
    sim_stop = asyncio.Event()
    sim_task = asyncio.create_task(sim.run(sim_stop, Health()))
    kills: list[Fault] = []
    restarts: list[Fault] = []
    everything = SentLoad(load.payloads, load.invalid)  # to count, at each kill, what is still in flight
    faults_done = asyncio.Event()
    all_topics = [settings.topic(s.name) for s in CATALOGUE]
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def post_all() -> None:
        url = f"http://127.0.0.1:{port}/v1/events"
        token = settings.gateway_dev_token.get_secret_value()
        chunks = [list(range(i, min(i + CHUNK, EVENTS))) for i in range(0, EVENTS, CHUNK)]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            for n, chunk in enumerate(chunks):
                if n == len(chunks) - 1:
                    await faults_done.wait()  # the last chunk only after the last fault: all land mid-stream
                await post_chunk(http, url, token, load.payloads, chunk, posted)
                await asyncio.sleep(0.15)

    async def inject() -> None:
        rng = random.Random(7)
        for spec in (RAW_SPEC, VALID, READY):
            await asyncio.sleep(rng.uniform(4, 8))
            partition, node = await leader_of_busiest(settings, settings.topic(spec.name))
            at, produced = loop.time() - started, set(posted.origins)
            rejected = await _values(settings, REJECTED.name)
            in_flight = len(produced - everything.placed(sim.downloaded.values(), rejected))
            await asyncio.to_thread(cluster.kill, node)
            await asyncio.sleep(rng.uniform(2, 5))
            await asyncio.to_thread(cluster.start, node)
            await cluster.wait_all()
            healed = await wait_fully_replicated(settings, all_topics)
            kills.append(Fault(f"SIGKILL node {node} (leads {spec.name}/{partition}), healed in {healed:.0f}s",
                               at, len(produced), in_flight))  # fmt: skip
        for node in cluster.layout.nodes:  # rolling restart: controlled shutdown, one at a time
            at, count = loop.time() - started, len(posted.origins)
            await asyncio.to_thread(cluster.stop, node.node_id)
            await asyncio.to_thread(cluster.start, node.node_id)
            await cluster.wait_all()
            healed = await wait_fully_replicated(settings, all_topics)
            restarts.append(Fault(f"restart node {node.node_id}, healed in {healed:.0f}s", at, count, 0))
        faults_done.set()

    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz")
        await asyncio.gather(post_all(), inject())
        accepted = sorted(posted.origins)
        origins = set(posted.origins.values())
        result = await until_received(settings, origins, sim, 600)
        elapsed = loop.time() - started
        await nothing_more_arrives(sim.message_count, settle_seconds(settings), "MESH messages")
    finally:
        faults_done.set()
        for worker in workers.values():
            worker.terminate()
        sim_stop.set()
        await asyncio.wait_for(sim_task, 60)
        async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
            await empty_inbox(ours)
    print(f"[failover] {'; '.join(map(str, kills + restarts))}")
    print(f"[failover] gateway answers {dict(posted.statuses)}; {len(accepted)} accepted, "
          f"{len(posted.refused)} refused at the edge; placed in {elapsed:.0f}s; {len(result['files'])} files")
    assert not posted.other, f"the gateway answered other than 202/400: {posted.other[:3]}"
    assert len(accepted) + len(posted.refused) == EVENTS
    assert len(kills) == 3
    assert len(restarts) == 3
    assert_mid_stream(kills, EVENTS)  # each kill landed while events were arriving and in flight
    # row by row, from what MESH received, against the events the gateway accepted
    sent = SentLoad([load.payloads[i] for i in accepted], [n for n, i in enumerate(accepted) if i in load.invalid])
    dead = [msgspec.json.decode(v, type=UploadFailure) for v in await _values(settings, DEADLETTER.name)]
    placement = sent.check(sim.downloaded, await _values(settings, REJECTED.name),
                           {f"{n}:{f.file.file_name}": f.file.content for n, f in enumerate(dead)})  # fmt: skip
    print(f"[failover] read back from MESH: {placement.summary()}")
    assert not [o for o, n in result["in_files"].items() if n > 1], "an origin is in more than one sent file"
    names = Counter(r.file_name for r in sim)
    assert all(n == 1 for n in names.values()), "NHS England received a file name twice"
    assert sum(r.rows for r in sim if r.outcome == PROCESSED) == len(result["in_files"])
