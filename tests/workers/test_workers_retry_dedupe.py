"""Exactly once as the sender sees it: a client that re-posts every batch not answered 202, while
the broker is SIGKILLed again and again, still gets each event into NHS England's files once.

A 503 or a dropped connection does not say whether the gateway published the batch before it
failed, so a careful client posts it again; the events that had landed the first time are then
in the raw topic twice. The batcher remembers every identity it has taken (UNIQUE_ID_URI,
UNIQUE_ID, ACTION_FLAG and content) and refuses the second copy as `duplicate.submission`.
To be sure the test exercises that path however the faults fall, the client also posts two
batches again that were answered 202, as a client that lost the answer would.

Judged from independent evidence: the rows of the files the MESH sandbox received, matched to
the events posted by their identity — every valid event exactly once, nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest
from cluster_support import gateway_env, wait_ready
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import empty_inbox, empty_recipient_inboxes, pipeline_settings, reading_back
from pipeline_support import ProcessWorker, settings_env
from support.ports import free_port
from support.topics import ensure

from topics import headers as h
from topics.catalogue import DEADLETTER, REJECTED
from vaxflow.dev.loadgen import generate
from vaxflow.dev.mesh_sandbox import MailboxRole
from workers.base.topic_reader import read_to_end
from workers.batcher.identities import DUPLICATE, identity_of

pytestmark = pytest.mark.integration

EVENTS = 6000
CHUNK = 150
KILLS = 3
Identity = tuple[bytes, bytes, bytes]


def _identity(payload: bytes) -> Identity:
    record = orjson.loads(payload)["record"]
    return (record["UNIQUE_ID_URI"].encode(), record["UNIQUE_ID"].encode(), record["ACTION_FLAG"].lower().encode())


def _rows(files: dict[str, bytes]) -> Counter[Identity]:
    seen: Counter[Identity] = Counter()
    for content in files.values():
        for line in content.splitlines()[1:]:
            if line:
                uri, uid, action = identity_of(line)
                seen[(uri, uid, action.lower())] += 1
    return seen


class Client:
    """Posts a batch until it is answered 202, as a provider's system does after a 503 or a
    dropped connection; lines refused with 400 are taken out and the rest posted again."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.accepted: set[int] = set()
        self.refused: set[int] = set()
        self.answers: Counter[str] = Counter()
        self.reposts = 0

    async def post(self, http: aiohttp.ClientSession, payloads: list[bytes], indices: list[int]) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/x-ndjson"}
        deadline = time.monotonic() + 240
        first = True
        while indices:
            assert time.monotonic() < deadline, "a batch was not accepted within 240 s"
            if not first:
                self.reposts += 1
            first = False
            try:
                async with http.post(self.url, data=b"\n".join(payloads[i] for i in indices), headers=headers) as r:
                    self.answers[str(r.status)] += 1
                    body = await r.json()
                    if r.status == 202:
                        self.accepted.update(indices)
                        return
                    if r.status == 400:
                        bad = {item["line"] for item in body["lines"]}
                        self.refused.update(indices[n - 1] for n in bad)
                        indices = [i for n, i in enumerate(indices, 1) if n not in bad]
                        first = True
                        continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers[type(exc).__name__] += 1
            await asyncio.sleep(0.5)


async def test_reposting_every_unanswered_batch_through_broker_kills_doubles_nothing(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    settings = pipeline_settings(
        kafka, namespace, mesh_sandbox, window_seconds=4, grace_seconds=1, max_rows_per_file=2000,
        archive_dir=tmp_path / "archive", dev_home=tmp_path,
    )  # fmt: skip
    await ensure(settings)
    print(f"\n[retry-dedupe] acknowledged {await empty_recipient_inboxes(mesh_sandbox)} messages earlier tests left")
    port = free_port()
    env = settings_env(settings, **gateway_env(port, send_timeout=8.0))
    workers = [
        ProcessWorker(name, env, tmp_path / f"{name}.log").start()
        for name in ("gateway", "validator", "batcher", "uploader")
    ]
    load = generate(EVENTS, invalid_fraction=0.05, seed=1616)
    client = Client(f"http://127.0.0.1:{port}/v1/events", settings.gateway_dev_token.get_secret_value())
    chunks = [list(range(i, min(i + CHUNK, EVENTS))) for i in range(0, EVENTS, CHUNK)]
    timeline: list[str] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    posted_chunks = 0
    progress = asyncio.Event()

    async def post_all(http: aiohttp.ClientSession) -> None:
        nonlocal posted_chunks
        for chunk in chunks:
            await client.post(http, load.payloads, chunk)
            posted_chunks += 1
            progress.set()
            await asyncio.sleep(0.1)
        for chunk in (chunks[1], chunks[len(chunks) // 2]):  # answered 202, and posted again
            await client.post(http, load.payloads, chunk)

    async def kill_broker() -> None:
        for n in range(KILLS):
            target = (n + 1) * len(chunks) // (KILLS + 2)
            while posted_chunks < target:
                progress.clear()
                await progress.wait()
            timeline.append(f"{loop.time() - started:.0f}s SIGKILL broker after {posted_chunks} batches")
            await asyncio.to_thread(kafka.kill)
            await asyncio.sleep(3)
            ready = await asyncio.to_thread(kafka.start)
            timeline.append(f"{loop.time() - started:.0f}s broker back ({ready:.0f}s to ready)")

    valid = [i for i in range(EVENTS) if i not in load.invalid]
    try:
        async with reading_back(settings) as sim:
            await wait_ready(f"http://127.0.0.1:{port}/readyz")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await asyncio.gather(post_all(http), kill_broker())
            expected = Counter(_identity(load.payloads[i]) for i in valid if i in client.accepted)
            deadline = loop.time() + 300
            while not set(_rows(sim.downloaded)) >= set(expected):
                assert loop.time() < deadline, f"{len(set(expected) - set(_rows(sim.downloaded)))} events not in a file"
                await asyncio.sleep(2)
            await asyncio.sleep(settings.window_seconds + settings.grace_seconds + 5)  # anything late would show
            timeline.append(f"{loop.time() - started:.0f}s every accepted event in a file at MESH")
    finally:
        for worker in workers:
            worker.terminate()
        async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
            await empty_inbox(ours)
    rows = _rows(sim.downloaded)
    rejected = await read_to_end(settings, settings.topic(REJECTED.name))
    repeats = [r for r in rejected if DUPLICATE.encode() in (h.header(r.headers, h.DLQ_REASONS) or b"")]
    dead = await read_to_end(settings, settings.topic(DEADLETTER.name))
    print(f"[retry-dedupe] {'; '.join(timeline)}")
    print(f"[retry-dedupe] answers {dict(client.answers)}, {client.reposts} re-posts; {len(client.accepted)} "
          f"accepted, {len(client.refused)} refused at the edge; {len(rows)} events in {len(sim.downloaded)} files; "
          f"{len(repeats)} repeats refused as {DUPLICATE}")  # fmt: skip
    assert set(valid) <= client.accepted | client.refused  # every valid event was taken in the end
    assert not client.refused & set(valid)
    doubled = {k: n for k, n in rows.items() if n > 1}
    assert not doubled, f"{len(doubled)} events in more than one row at NHS England"
    assert set(rows) == set(expected), "the files hold other events than the valid ones posted"
    assert not dead, "a file was dead-lettered"
    # the two batches posted again after a 202 came back as repeats, not rows
    again = {_identity(load.payloads[i]) for i in chunks[1] + chunks[len(chunks) // 2] if i in valid}
    assert len(repeats) >= len(again)
    assert {identity_of(r.value or b"")[:2] for r in repeats} >= {k[:2] for k in again}
    assert len(timeline) == 2 * KILLS + 1
