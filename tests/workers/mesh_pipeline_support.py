"""Shared helpers for the uploader / ack reader / NHS simulator tests (real broker, real sandbox).

Workers run in-process as asyncio tasks with their own stop event, exactly as the runtime runs
them (`run(settings, stop, health)`), so a test can stop one gracefully or cancel it mid-flight.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
from aiokafka import TopicPartition
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.structs import ConsumerRecord
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from support.workers import running

from schemas.batchfile import render_file
from schemas.batchkey import encode_key, local_id_for
from schemas.filenames import batch_file_name
from schemas.permissions import default_permissions
from schemas.pipeline import ReadyFile, SentReceipt
from schemas.record import Record
from schemas.validate import validate_record
from topics.catalogue import READY, SENT
from vaxflow.dev.demo import outcome
from vaxflow.dev.mesh_sandbox import MailboxRole
from vaxflow.dev.nhs_sim.worker import PROCESSED, NhsSimulator, ReceivedFile
from vaxflow.dev.samples import make_valid_record
from workers.base.kafka import admin, idempotent_producer, offsets_probe, reader
from workers.base.ledger import topic_partitions
from workers.base.mesh.client import InboxMessage, MeshClient
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.uploader import worker as uploader

_ENCODE = msgspec.json.Encoder()


def pipeline_settings(
    kafka: KafkaHandle, namespace: str, mesh: MeshSandboxHandle, **overrides: Any
) -> Settings:
    """Settings for one test: its own topics and groups, the test sandbox, quick retries and polls."""
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka.bootstrap,
        "topic_namespace": namespace,
        "mesh_url": mesh.url,
        "mesh_shared_key": mesh.shared_key,
        "uploader_group": f"{namespace}-uploader",
        "upload_backoff_initial_seconds": 0.1,
        "upload_backoff_max_seconds": 0.5,
        "mesh_chunk_bytes": 5 * 1024 * 1024,
        "ack_poll_seconds": 0.3,
        "ack_match_grace_seconds": 30.0,
        "nhs_sim_poll_seconds": 0.3,
    }
    values.update(overrides)
    return Settings(**values)


# ---------------------------------------------------------------------------------- batch files


def unique_instant(rng: random.Random) -> datetime:
    """A file-name instant no other test is likely to use (the receiver refuses repeated names)."""
    return datetime(2023, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(60 * 60 * 24 * 900))


def valid_records(rng: random.Random, vaccine_type: str, ods: str, count: int) -> list[Record]:
    """Canonical records the validator accepts for (type, sender), as the batcher would write them."""
    permissions = default_permissions()
    out: list[Record] = []
    for _ in range(50 * count + 50):
        if len(out) == count:
            return out
        result = validate_record(vaccine_type, ods, make_valid_record(rng, vaccine_type), permissions=permissions)
        if isinstance(result, Record):
            out.append(result)
    if len(out) == count:
        return out
    raise AssertionError(f"{ods} cannot send valid {vaccine_type} records (permissions?)")


def break_nhs_number(record: Record) -> Record:
    """The same record with an NHS number whose check digit is wrong (a row NHS England refuses)."""
    number = record.NHS_NUMBER or "9434765919"
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    return msgspec.structs.replace(record, NHS_NUMBER=wrong)


def sender_for(vaccine_type: str) -> str:
    return default_permissions().senders_for(vaccine_type)[0]


@dataclass
class FileFactory:
    """Builds ReadyFiles as the batcher would, with origins unique within the test."""

    rng: random.Random = field(default_factory=lambda: random.Random(uuid.uuid4().int))
    next_offset: int = 0

    def ready(
        self,
        vaccine_type: str,
        rows: int = 3,
        *,
        invalid_rows: Sequence[int] = (),
        ods: str | None = None,
        name_ods: str | None = None,
        content: bytes | None = None,
    ) -> ReadyFile:
        """`name_ods` puts another sender in the file name (rows stay valid for `ods`)."""
        ods = ods or sender_for(vaccine_type)
        records = valid_records(self.rng, vaccine_type, ods, rows)
        for n in invalid_rows:  # 1-based row numbers, as the BusAck counts them
            records[n - 1] = break_nhs_number(records[n - 1])
        data = content if content is not None else render_file(records)
        name = batch_file_name(vaccine_type, name_ods or ods, unique_instant(self.rng))
        origins = [(self.rng.randrange(6), self.next_offset + i) for i in range(rows)]
        self.next_offset += rows
        start = unique_instant(self.rng)
        return ReadyFile(
            file_name=name, vaccine_type=vaccine_type, sender_ods=ods, window_start=start.isoformat(),
            window_end=(start + timedelta(hours=1)).isoformat(), part=0, rows=rows, content=data,
            origins=origins, valid_ranges=[], local_id=local_id_for(name, data),
        )


async def produce_ready(settings: Settings, files: Iterable[ReadyFile]) -> None:
    from topics.catalogue import READY

    producer = idempotent_producer(settings, max_request_size=40 * 1024 * 1024)
    await producer.start()
    try:
        for f in files:
            key = encode_key(f.vaccine_type, f.sender_ods)  # as the batcher writes it
            await producer.send_and_wait(settings.topic(READY.name), _ENCODE.encode(f), key=key)
    finally:
        await producer.stop()


# ------------------------------------------------------------------------------------ reading


async def read_topic(
    settings: Settings,
    catalogue_name: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool] | None = None,
    timeout: float = 30.0,
    settle: float = 0.5,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of a topic, waiting until `until(records)` holds (or timeout).

    After the condition holds, one more short read catches records that should not be there.
    """
    topic = settings.topic(catalogue_name)
    consumer = reader(settings, fetch_bytes=48 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(settings, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        satisfied_at: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            if until is None or until(records):
                satisfied_at = satisfied_at or loop.time()
                if loop.time() - satisfied_at >= settle:
                    break
    finally:
        await consumer.stop()
    return records


def decoded(records: Iterable[ConsumerRecord[bytes, bytes]], kind: type[Any]) -> list[Any]:
    return [msgspec.json.decode(r.value or b"", type=kind) for r in records]


async def committed_offsets(settings: Settings, group: str, catalogue_name: str) -> dict[int, int]:
    topic = settings.topic(catalogue_name)
    async with admin(settings) as client:
        offsets = await client.list_consumer_group_offsets(group)
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def end_offsets(settings: Settings, catalogue_name: str) -> dict[int, int]:
    topic = settings.topic(catalogue_name)
    consumer = offsets_probe(settings)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(settings, topic))]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: off for tp, off in ends.items()}


async def wait_committed(settings: Settings, group: str, catalogue_name: str, timeout: float = 30.0) -> None:
    """Until the group has committed every partition with records up to its end."""
    ends = await end_offsets(settings, catalogue_name)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            committed = await committed_offsets(settings, group, catalogue_name)
        except GroupCoordinatorNotAvailableError:  # a fresh broker: no offsets topic yet
            committed = {}
        if all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"group {group} committed {committed}, ends {ends}")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------- MESH inboxes


async def inbox_messages(client: MeshClient, file_names: Iterable[str]) -> dict[str, list[tuple[InboxMessage, bytes]]]:
    """The inbox's messages whose mex-filename is one of `file_names` (others are left alone)."""
    wanted = set(file_names)
    found: dict[str, list[tuple[InboxMessage, bytes]]] = {name: [] for name in wanted}
    for message_id in await client.inbox():
        meta, data = await client.download(message_id)
        if meta.filename in wanted:
            found[meta.filename].append((meta, data))
    return found


async def acknowledge_all(client: MeshClient, found: dict[str, list[tuple[InboxMessage, bytes]]]) -> None:
    for messages in found.values():
        for meta, _ in messages:
            await client.acknowledge(meta.message_id)


class HasMailboxes(Protocol):
    def client(self, role: MailboxRole) -> MeshClient: ...


async def delivered_once(client: MeshClient, files: Sequence[ReadyFile]) -> dict[str, InboxMessage]:
    """Each of `files` is in this inbox exactly once, byte-identical (gzip and chunking undone); all
    acknowledged; each file's message."""
    found = await inbox_messages(client, [f.file_name for f in files])
    for f in files:
        assert len(found[f.file_name]) == 1, f.file_name
        assert found[f.file_name][0][1] == f.content
    await acknowledge_all(client, found)
    return {f.file_name: found[f.file_name][0][0] for f in files}


async def delivered_once_each(mesh: HasMailboxes, expected: Mapping[MailboxRole, ReadyFile]) -> None:
    """Each file is in its recipient's inbox exactly once, byte-identical; then acknowledged."""
    for role, f in expected.items():
        async with mesh.client(role) as client:
            await delivered_once(client, [f])


async def empty_inbox(client: MeshClient) -> int:
    """Acknowledge everything in the inbox; how many messages that was.

    The session's sandbox is shared and MESH lists at most 500 messages per inbox call, so a test
    that leaves hundreds of messages behind (the simulator's acknowledgements of a few hundred
    files, with no ack reader running) would hide later tests' messages from them.
    """
    done = 0
    while ids := await client.inbox():
        for message_id in ids:
            await client.acknowledge(message_id)
        done += len(ids)
    return done


RECIPIENTS = (MailboxRole.IMMUNISATION, MailboxRole.DPS)


async def empty_recipient_inboxes(mesh: MeshSandboxHandle) -> int:
    """Acknowledge what earlier tests left for NHS England, so every message a test reads back
    from the recipients' inboxes afterwards is one its own workers sent."""
    left = 0
    for role in RECIPIENTS:
        async with mesh.client(role) as client:
            left += await empty_inbox(client)
    return left


class MeshReadBack(NhsSimulator):
    """The simulated NHS England, also keeping the bytes of every message it downloaded from the
    recipients' MESH inboxes (key: mailbox/message id/file name), for matching rows to events."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.downloaded: dict[str, bytes] = {}

    def commit(self, record: ReceivedFile, data: bytes) -> None:
        self.downloaded[f"{record.mailbox}/{record.message_id}/{record.file_name}"] = data
        super().commit(record, data)

    async def message_count(self) -> int:
        return len(self.downloaded)


@asynccontextmanager
async def reading_back(settings: Settings) -> AsyncIterator[MeshReadBack]:
    """A MeshReadBack polling the recipients' inboxes for the duration of the block (then stopped
    and awaited, so what it downloaded is complete when the block ends)."""
    sim = MeshReadBack(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop, Health()))
    try:
        yield sim
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def until_received(
    settings: Settings, origins: set[tuple[int, int]], sim: MeshReadBack, timeout: float
) -> dict[str, Any]:
    """`outcome` once every origin is placed and every sent file has reached the simulated NHS
    England (tests without an ack reader wait for that, not for InfAcks); fails after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await outcome(settings, origins)
        placed = set(result["in_files"]) | result["rejected"] | result["dead_lettered"]
        received = {r.file_name for r in sim if r.outcome == PROCESSED}
        if placed >= origins and {rc.file_name for rc in result["files"]} <= received:
            return result
        unplaced = len(origins - placed)
        assert asyncio.get_running_loop().time() < deadline, f"{unplaced} events unplaced after {timeout:.0f} s"
        await asyncio.sleep(2)


def receipts_for(names: set[str]) -> Callable[[list[ConsumerRecord[bytes, bytes]]], bool]:
    """A `read_topic(..., until=)` condition: a receipt (keyed by file name) for every one of `names`."""
    return lambda recs: {r.key.decode() for r in recs} >= names


async def upload(settings: Settings, names: set[str], timeout: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Run the uploader until the sent topic has a receipt for each of `names` (or `timeout`) and
    its group has committed the whole ready topic; the sent topic's records, read meanwhile."""
    async with running(uploader.run, settings):
        records = await read_topic(settings, SENT.name, until=receipts_for(names), timeout=timeout)
        await wait_committed(settings, settings.group(settings.uploader_group), READY.name)
    return records


async def assert_each_delivered_once(
    client_for: Callable[[MailboxRole], MeshClient],
    files: Sequence[ReadyFile],
    box_of: Mapping[str, str],
    receipts: Mapping[str, SentReceipt],
    chunks_of: Callable[[ReadyFile], int],
) -> None:
    """Each file is in its recipient's inbox exactly once, byte-identical (gzip and chunking undone),
    under the message id of its receipt and with its local id; then every one is acknowledged."""
    for role, box in ((MailboxRole.IMMUNISATION, "X26OT303"), (MailboxRole.DPS, "X26DPS001")):
        mine = [f for f in files if box_of[f.file_name] == box]
        async with client_for(role) as client:
            messages = await delivered_once(client, mine)
        for f in mine:
            meta = messages[f.file_name]
            assert (meta.message_id, meta.local_id, meta.sender) == (
                receipts[f.file_name].message_id, f.local_id, "X26VXF001")
            assert meta.total_chunks == chunks_of(f)
