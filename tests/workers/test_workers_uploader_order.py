"""Issue 16 against the real broker and the real MESH sandbox: files of one batch key reach MESH
in window order; a file waiting on a transient failure holds back only its own key; a MESH outage
far longer than the old 60 s bound is waited out, and nothing is dead-lettered.

Evidence is what MESH received: the recipient's inbox (MESH lists it in the order messages
arrived), MESH's tracking upload times, and, for the ordering test, a small fault-injecting proxy
in front of the sandbox that logs every send MESH accepted. Not the uploader's own logs or receipts.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from aiokafka.partitioner import DefaultPartitioner
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import FileFactory, pipeline_settings, produce_ready, read_topic, receipts_for
from support.ports import free_port
from support.topics import ensure
from support.workers import running, wait_for

from schemas.batchkey import encode_key
from schemas.permissions import default_permissions
from schemas.pipeline import ReadyFile
from topics.catalogue import DEADLETTER, READY, SENT
from vaxflow.dev.mesh_sandbox import MailboxRole, is_running
from workers.base.mesh.client import MeshClient, MeshPermanentError
from workers.uploader import worker as uploader

pytestmark = pytest.mark.integration

# Two batch keys routed to the same mailbox (one inbox shows their relative order), chosen to share
# a ready partition: a waiting file must not hold back another key even there.
KEY_A = ("RSV", "YGA")
_CANDIDATES = [(t, ods) for t in ("MMR", "COVID", "HPV") for ods in default_permissions().senders_for(t)]


def _partition(vaccine_type: str, ods: str) -> int:
    parts = list(range(READY.partitions))
    return int(DefaultPartitioner()(encode_key(vaccine_type, ods), parts, parts))


KEY_B = next(k for k in _CANDIDATES if _partition(*k) == _partition(*KEY_A))


def _at(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


async def inbox_order(client: MeshClient, names: set[str]) -> list[str]:
    """File names of `names` in the order MESH lists the inbox (oldest first), acknowledged after."""
    order: list[str] = []
    for message_id in await client.inbox():
        try:
            meta, _ = await client.download(message_id)
        except MeshPermanentError:
            continue  # another test's message this client cannot read: not ours
        if meta.filename in names:
            order.append(meta.filename)
            await client.acknowledge(message_id)
    return order


def window_ordered(make: FileFactory, key: tuple[str, str], n: int) -> list[ReadyFile]:
    """n files of one key, in window order (as the batcher emits them)."""
    files = [make.ready(key[0], 2, ods=key[1]) for _ in range(n)]
    return sorted(files, key=lambda f: f.window_start)


# ----------------------------------------------------------------------------- fault injection


@dataclass
class FaultProxy:
    """Forwards every request to the sandbox, except that the first send of `fail_file` is answered
    503 (Retry-After: 1) until `fail_until`; logs (time, file name) of each send MESH accepted."""

    upstream: str
    fail_file: str = ""
    fail_until: float = 0.0
    refused: int = 0
    accepted: list[tuple[float, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.compress(body, mtime=0)  # aiohttp's server undid it; MESH must get gzip
        name = request.headers.get("mex-filename", "")
        is_send = request.method == "POST" and request.path.endswith("/outbox")
        if is_send and name == self.fail_file and time.time() < self.fail_until:
            self.refused += 1
            return web.Response(status=503, headers={"Retry-After": "1"}, text="injected outage")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as resp:
            data = await resp.read()
            if is_send and resp.status in (200, 202):
                self.accepted.append((time.time(), name))
            out = {k: v for k, v in resp.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            return web.Response(status=resp.status, headers=out, body=data)


@pytest.fixture
async def proxy(mesh_sandbox: MeshSandboxHandle) -> AsyncIterator[FaultProxy]:
    fault = FaultProxy(upstream=mesh_sandbox.url.rstrip("/"))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", fault.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fault.url = f"http://127.0.0.1:{port}"
    try:
        yield fault
    finally:
        await runner.cleanup()


async def test_a_file_waiting_on_mesh_holds_back_only_its_own_key(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, proxy: FaultProxy
) -> None:
    settings = pipeline_settings(kafka, namespace, mesh_sandbox, mesh_url=proxy.url,
                                 upload_backoff_initial_seconds=0.2, upload_backoff_max_seconds=1.0)
    await ensure(settings)
    make = FileFactory()
    a, b = window_ordered(make, KEY_A, 3), window_ordered(make, KEY_B, 3)
    proxy.fail_file = a[0].file_name
    proxy.fail_until = time.time() + 8.0  # the first window's upload of key A fails for 8 s
    interleaved = [f for pair in zip(a, b, strict=True) for f in pair]
    await produce_ready(settings, interleaved)
    ready = await read_topic(settings, READY.name, until=lambda r: len(r) >= 6)
    assert len({r.partition for r in ready}) == 1  # both keys in one partition

    async with running(uploader.run, settings):
        await read_topic(settings, SENT.name, until=receipts_for({f.file_name for f in interleaved}), timeout=90)
    print(f"\n[order] key A {KEY_A}, key B {KEY_B}; A's first file refused {proxy.refused} times with 503")
    print(f"[order] window order A: {[f.file_name for f in a]}")
    print(f"[order] window order B: {[f.file_name for f in b]}")
    for when, name in proxy.accepted:
        print(f"[order] {_at(when)} MESH accepted {name}")

    accepted = [name for _, name in proxy.accepted]
    assert proxy.refused >= 2  # it did wait, through several 503s
    assert sorted(accepted) == sorted(f.file_name for f in interleaved)  # each once
    at = {name: t for t, name in proxy.accepted}
    assert at[a[0].file_name] >= proxy.fail_until
    # Key B went while key A's first file waited; A's later files waited behind it, in order.
    assert all(at[f.file_name] < proxy.fail_until for f in b)
    assert [n for n in accepted if n in {f.file_name for f in a}] == [f.file_name for f in a]
    assert [n for n in accepted if n in {f.file_name for f in b}] == [f.file_name for f in b]
    assert await read_topic(settings, DEADLETTER.name, timeout=0.5) == []
    # The recipient's inbox, as MESH orders it, agrees.
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        order = await inbox_order(imms, {f.file_name for f in interleaved})
    assert [n for n in order if n in {f.file_name for f in a}] == [f.file_name for f in a]
    assert [n for n in order if n in {f.file_name for f in b}] == [f.file_name for f in b]
    assert order.index(a[0].file_name) > max(order.index(f.file_name) for f in b)


# ----------------------------------------------------------------------------------- the outage

OUTAGE_SECONDS = 300.0


async def _tracked_upload_times(mesh: MeshSandboxHandle, files: Sequence[ReadyFile]) -> dict[str, datetime]:
    """When MESH says it received each file (tracking's upload timestamp, `YYYYMMDDHHMMSS` UTC)."""
    async with mesh.client(MailboxRole.SENDER) as ours:
        out = {}
        for f in files:
            info = await ours.track_by_local_id(f.local_id)
            assert info is not None, f.file_name
            assert info.uploaded_at, f.file_name
            out[f.file_name] = datetime.strptime(info.uploaded_at, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        return out


async def test_a_five_minute_mesh_outage_is_waited_out_in_order_and_nothing_is_dead_lettered(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle
) -> None:
    if mesh_sandbox.layout is None:
        pytest.skip("the reused MESH sandbox cannot be stopped by tests")
    settings = pipeline_settings(kafka, namespace, mesh_sandbox,
                                 upload_backoff_initial_seconds=0.5, upload_backoff_max_seconds=5.0)
    await ensure(settings)
    make = FileFactory()
    a, b = window_ordered(make, KEY_A, 4), window_ordered(make, KEY_B, 4)
    before, during = [a[0], b[0]], [a[1], b[1], a[2], b[2], a[3], b[3]]
    timeline: list[tuple[float, str]] = []

    def mark(what: str) -> None:
        timeline.append((time.time(), what))
        print(f"[outage] {_at(timeline[-1][0])} {what}", flush=True)

    try:
        async with running(uploader.run, settings) as first:
            await produce_ready(settings, before)
            await read_topic(settings, SENT.name, until=receipts_for({f.file_name for f in before}), timeout=60)
            mesh_sandbox.stop()
            outage_start = time.time()
            mark("outage start: MESH sandbox stopped")
            await produce_ready(settings, during)
            # Half the outage with this uploader: files wait, /readyz says why, nothing goes anywhere.
            await wait_for(lambda: "mesh" in first.health.detail, timeout=60, what="/readyz MESH detail")
            mark(f"/readyz: {first.health.detail['mesh']}")
            await asyncio.sleep(OUTAGE_SECONDS / 2 - (time.time() - outage_start))
            assert not first.task.done()
            assert first.health.ready  # waiting is the job: ready, with the reason (workers/uploader/outage.py)
            assert "MESH unavailable since" in str(first.health.detail["mesh"])
            assert "6 files waiting" in str(first.health.detail["mesh"]), first.health.detail
            stopping = time.time()
        # SIGTERM in a wait: it ends promptly, hands the files back uncommitted.
        mark(f"uploader stopped during the outage in {time.time() - stopping:.2f} s; a new one starts")
        assert time.time() - stopping < 15
        assert len(await read_topic(settings, SENT.name, timeout=0.5)) == 2
        async with running(uploader.run, settings):
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.time() - outage_start)))
            assert len(await read_topic(settings, SENT.name, timeout=0.5)) == 2
            assert await read_topic(settings, DEADLETTER.name, timeout=0.5) == []
            restart = time.time()  # MESH is away until this instant at least
            await mesh_sandbox.start_async()
            mark(f"outage end: MESH sandbox back (handshake answered) after {time.time() - outage_start:.0f} s")
            names = {f.file_name for f in before + during}
            await read_topic(settings, SENT.name, until=receipts_for(names), timeout=120)
            mark("every file recorded as sent")
    finally:
        if not await is_running(mesh_sandbox.url):
            await mesh_sandbox.start_async()

    uploaded = await _tracked_upload_times(mesh_sandbox, during)
    first_ok, last_ok = min(uploaded.values()), max(uploaded.values())
    timeline.append((first_ok.timestamp(), "first retry success (MESH's upload time of the first waiting file)"))
    timeline.append((last_ok.timestamp(), "last file arrival (MESH's upload time of the last waiting file)"))
    for when, what in sorted(timeline):
        print(f"[outage] timeline {_at(when)} {what}")
    # Nothing reached MESH while it was away (MESH's times are whole seconds).
    assert first_ok.timestamp() >= int(restart)
    assert await read_topic(settings, DEADLETTER.name, timeout=0.5) == []
    sent = await read_topic(settings, SENT.name, timeout=1)
    assert sorted(r.key.decode() for r in sent) == sorted(f.file_name for f in before + during)  # once each
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        order = await inbox_order(imms, {f.file_name for f in before + during})
    assert sorted(order) == sorted(f.file_name for f in before + during)  # each exactly once at MESH
    assert [n for n in order if n in {f.file_name for f in a}] == [f.file_name for f in a]
    assert [n for n in order if n in {f.file_name for f in b}] == [f.file_name for f in b]
