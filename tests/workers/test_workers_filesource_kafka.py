"""The filesource against the real broker: rows on the raw topic, dead letters, one file once.

Crash tests stop a FileSource at the two dangerous instants (after the commit but before the move;
after the sends but before the commit) and show that a new instance publishes each file once.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord

from schemas.batchfile import read_file
from schemas.event import RawEvent
from topics import headers as h
from topics.catalogue import RAW, REJECTED, SOURCE_FILES, TopicSpec
from topics.ensure import ensure_topics
from workers.base.kafka import admin_client, reader
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.filesource.records import SourceFile
from workers.filesource.worker import FileSource, run

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
RSV = "RSV_Vaccinations_v5_X8E5B_20240610T18332501.csv"
MMR = "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"
MMR_CP1252 = "MMR_Vaccinations_v5_X8E5B_20250730T11530001.csv"
MMR_NOT_SIGN = "MMR_Vaccinations_v5_X8E5B_20250730T11540001.dat"
ROWS = {RSV: 1, MMR: 3, MMR_CP1252: 7, MMR_NOT_SIGN: 7}


@pytest.fixture
async def settings(kafka_settings: Settings) -> Settings:
    admin = admin_client(kafka_settings)
    await admin.start()
    try:
        await ensure_topics(admin, namespace=kafka_settings.topic_namespace)
    finally:
        await admin.close()
    return kafka_settings.model_copy(update={"filesource_settle_seconds": 0.0})


@pytest.fixture
async def source(settings: Settings, tmp_path: Path) -> AsyncIterator[FileSource]:
    started = FileSource(settings, tmp_path)
    await started.start()
    try:
        yield started
    finally:
        await started.close()


async def read_topic(settings: Settings, spec: TopicSpec) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything committed on a topic of this test's namespace, in partition then offset order."""
    topic = settings.topic(spec.name)
    consumer = reader(settings)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(spec.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: (r.partition, r.offset))


def drop(directory: Path, *names: str) -> None:
    for name in names:
        shutil.copyfile(DATA / name, directory / name)


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


def waiting(directory: Path) -> list[str]:
    """Batch files still in the watched directory."""
    return sorted(p.name for p in directory.iterdir() if p.suffix.lower() in (".csv", ".dat"))


def headers(record: ConsumerRecord[Any, Any]) -> dict[str, bytes]:
    return dict(record.headers)


async def test_sample_files_in_both_dialects_and_encodings(
    settings: Settings, source: FileSource, tmp_path: Path
) -> None:
    drop(tmp_path, *ROWS)
    outcomes = await source.poll_once()
    assert {o.file_name: (o.outcome, o.published, o.rejected) for o in outcomes} == {
        name: ("published", rows, 0) for name, rows in ROWS.items()
    }
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == sorted(ROWS)
    assert waiting(tmp_path) == []

    raw = await read_topic(settings, RAW)
    assert len(raw) == sum(ROWS.values())
    by_file: dict[str, list[tuple[int, RawEvent]]] = {}
    for record in raw:
        event = msgspec.json.decode(record.value, type=RawEvent)
        name = headers(record)[h.SOURCE_FILE].decode()
        by_file.setdefault(name, []).append((int(headers(record)[h.SOURCE_ROW]), event))
        assert event.source_system == f"filesource:{name}"
        assert event.sender_ods == "X8E5B"
        assert record.key == f"{event.vaccine_type}|X8E5B".encode()
        assert event.received_at is not None
    for name, rows in by_file.items():
        expected = read_file((DATA / name).read_bytes(), vaccine_type=name[:3], sender_ods="X8E5B").records
        assert [event.record for _, event in sorted(rows, key=lambda r: r[0])] == expected
        assert {event.vaccine_type for _, event in rows} == {name.split("_")[0]}
    surnames = {e.record.PERSON_SURNAME for n in (MMR_CP1252, MMR_NOT_SIGN) for _, e in by_file[n]}
    assert "DICÉMBRE" in surnames  # cp1252 0xC9, read right in both dialects
    # content is not checked here: the NHS number failing mod 11 and the "0" are published as they are
    assert {e.record.NHS_NUMBER for _, e in by_file[MMR_CP1252]} >= {"0", ""}

    ledger = await read_topic(settings, SOURCE_FILES)
    entries = {r.key: msgspec.json.decode(r.value, type=SourceFile) for r in ledger}
    for name, count in ROWS.items():
        sha = hashlib.sha256((DATA / name).read_bytes()).hexdigest()
        assert entries[sha.encode()].file_name == name
        assert entries[sha.encode()].published == count
    assert await read_topic(settings, REJECTED) == []


async def test_unreadable_rows_go_to_rejected_with_dead_letter_headers(
    settings: Settings, source: FileSource, tmp_path: Path
) -> None:
    name = "MMR_Vaccinations_v5_X8E5B_20250801T09000001.csv"
    header, *rows = (DATA / MMR_CP1252).read_bytes().split(b"\n")
    short = rows[1].rsplit(b"|", 1)[0]  # 33 fields
    rows[1] = short
    rows[4] = rows[4] + b'|"extra"'  # 35 fields
    (tmp_path / name).write_bytes(b"\n".join([header, *rows]))
    [outcome] = await source.poll_once()
    assert (outcome.outcome, outcome.published, outcome.rejected) == ("published", 5, 2)

    raw = await read_topic(settings, RAW)
    assert sorted(int(headers(r)[h.SOURCE_ROW]) for r in raw) == [1, 3, 4, 6, 7]
    rejected = sorted(await read_topic(settings, REJECTED), key=lambda r: int(headers(r)[h.SOURCE_ROW]))
    assert [int(headers(r)[h.SOURCE_ROW]) for r in rejected] == [2, 5]
    assert rejected[0].value == short  # the file's own bytes (cp1252), as handed in
    assert rejected[1].value == rows[4]
    first = headers(rejected[0])
    assert first[h.DLQ_STAGE] == b"filesource"
    assert first[h.DLQ_TOPIC] == f"filesource:{name}".encode()
    assert first[h.SOURCE_FILE] == name.encode()
    assert first[h.SOURCE_SHA256] == hashlib.sha256((tmp_path / "done" / name).read_bytes()).hexdigest().encode()
    assert msgspec.json.decode(first[h.DLQ_REASONS])[0]["rule"] == "row.columns"
    assert h.ORIGIN not in first  # it never reached the raw topic
    assert rejected[0].key == b"X8E5B"


async def test_invalid_name_and_unreadable_file_publish_nothing(
    settings: Settings, source: FileSource, tmp_path: Path
) -> None:
    shutil.copyfile(DATA / MMR, tmp_path / "MMR_Vaccinations_v5_X8E5B_2025.csv")
    (tmp_path / "FLU_Vaccinations_v5_X8E5B_20250801T09000001.csv").write_bytes(b"NHS_NUMBER|NOPE\n")
    outcomes = await source.poll_once()
    assert sorted(o.outcome for o in outcomes) == ["rejected", "rejected"]
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == [
        "FLU_Vaccinations_v5_X8E5B_20250801T09000001.csv",
        "FLU_Vaccinations_v5_X8E5B_20250801T09000001.csv.reasons.json",
        "MMR_Vaccinations_v5_X8E5B_2025.csv",
        "MMR_Vaccinations_v5_X8E5B_2025.csv.reasons.json",
    ]
    assert await read_topic(settings, RAW) == []
    assert await read_topic(settings, SOURCE_FILES) == []


async def test_per_sender_subdirectories_publish_only_their_bound_codes(settings: Settings, tmp_path: Path) -> None:
    """Issue 17: `<directory>/<name>/` may submit only for the codes bound to `<name>`. trust-b's
    file for X8E5B, byte for byte trust-a's published file, publishes nothing; a folder the binding
    does not name is not read; each file is moved into its sender's own 0700 folder."""
    bound = settings.model_copy(
        update={"filesource_subdir_senders": {"trust-a": ["X8E5B"], "trust-b": ["YGM17"]}, "filesource_dir_senders": []}
    )
    for folder in ("trust-a", "trust-b", "X8E5B"):
        (tmp_path / folder).mkdir()
        drop(tmp_path / folder, MMR)
    source = FileSource(bound, tmp_path)
    await source.start()
    try:
        outcomes = await source.poll_once()
    finally:
        await source.close()
    assert sorted((o.file_name, o.outcome, o.published) for o in outcomes) == [
        (MMR, "published", ROWS[MMR]), (MMR, "rejected", 0)
    ]
    assert sorted(p.name for p in (tmp_path / "done" / "trust-a").iterdir()) == [MMR]
    assert sorted(p.name for p in (tmp_path / "rejected" / "trust-b").iterdir()) == [MMR, f"{MMR}.reasons.json"]
    note = msgspec.json.decode((tmp_path / "rejected" / "trust-b" / f"{MMR}.reasons.json").read_bytes())
    assert [r["rule"] for r in note["reasons"]] == ["file.sender"]
    for folder in ("done", "done/trust-a", "rejected", "rejected/trust-b"):
        assert (tmp_path / folder).stat().st_mode & 0o777 == 0o700, folder
    assert waiting(tmp_path / "X8E5B") == [MMR]  # not bound: never read
    raw = await read_topic(settings, RAW)
    assert len(raw) == ROWS[MMR]
    assert {msgspec.json.decode(r.value, type=RawEvent).sender_ods for r in raw} == {"X8E5B"}
    assert {headers(r)[h.SOURCE_FILE].decode() for r in raw} == {MMR}
    assert len(await read_topic(settings, SOURCE_FILES)) == 1


class Crash(Exception):
    """Stands for SIGKILL at one instant: nothing after it runs in that instance."""


async def test_crash_after_commit_before_move_publishes_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop(tmp_path, MMR, RSV)
    first = FileSource(settings, tmp_path)
    await first.start()

    async def crash(self: FileSource, path: Path, sha: str) -> None:
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(FileSource, "_archive", crash)
        with pytest.raises(Crash):
            await first.poll_once()  # the first file's transaction committed; then the "crash"
    await first.close()
    assert (tmp_path / MMR).exists()
    assert (tmp_path / RSV).exists()

    second = FileSource(settings, tmp_path)
    await second.start()
    try:
        outcomes = {o.file_name: o.outcome for o in await second.poll_once()}
        second_again = await second.poll_once()
    finally:
        await second.close()
    crashed = next(name for name, outcome in outcomes.items() if outcome == "replayed")
    assert set(outcomes.values()) == {"replayed", "published"}
    assert second_again == []
    raw = await read_topic(settings, RAW)
    assert len(raw) == ROWS[MMR] + ROWS[RSV]  # each row once, the crashed file's included
    assert sum(1 for r in raw if headers(r)[h.SOURCE_FILE] == crashed.encode()) == ROWS[crashed]
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == sorted([MMR, RSV])


async def test_crash_before_commit_is_aborted_and_published_once_by_the_next_instance(
    settings: Settings, tmp_path: Path
) -> None:
    drop(tmp_path, MMR_CP1252)
    first = FileSource(settings, tmp_path)
    await first.start()
    producer = first._producer
    assert producer is not None

    async def die_before_commit() -> None:
        raise Crash  # the records were sent; the commit never happens, and nothing aborts either

    producer.commit_transaction = die_before_commit
    with pytest.raises(Crash):
        await first.poll_once()
    assert (tmp_path / MMR_CP1252).exists()

    second = FileSource(settings, tmp_path)
    await second.start()  # same transactional id: fences the first and aborts its open transaction
    try:
        [outcome] = await second.poll_once()
    finally:
        await second.close()
    assert (outcome.outcome, outcome.published) == ("published", ROWS[MMR_CP1252])
    raw = await read_topic(settings, RAW)
    assert len(raw) == ROWS[MMR_CP1252]  # the first instance's records are aborted, invisible

    await first.close()


async def test_a_second_instance_on_the_same_directory_fences_the_first(settings: Settings, tmp_path: Path) -> None:
    first = FileSource(settings, tmp_path)
    await first.start()
    second = FileSource(settings, tmp_path)
    await second.start()
    try:
        drop(tmp_path, MMR)
        with pytest.raises(ProducerFenced):
            await first.poll_once()
        assert (tmp_path / MMR).exists()
        [outcome] = await second.poll_once()
        assert outcome.outcome == "published"
    finally:
        await first.close()
        await second.close()
    assert len(await read_topic(settings, RAW)) == ROWS[MMR]


async def test_run_publishes_dropped_files_and_stops_on_request(settings: Settings, tmp_path: Path) -> None:
    """The worker shape: `run(settings, stop, health)` polls until `stop`, then returns."""
    configured = settings.model_copy(update={"filesource_dir": tmp_path, "filesource_poll_seconds": 0.2})
    stop = asyncio.Event()
    health = Health()
    task = asyncio.create_task(run(configured, stop, health))
    try:
        await eventually(lambda: health.ready)
        drop(tmp_path, RSV)
        await eventually((tmp_path / "done" / RSV).exists)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert not health.ready
    assert len(await read_topic(settings, RAW)) == ROWS[RSV]
