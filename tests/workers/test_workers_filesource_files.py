"""The filesource's file handling that needs no broker: which files, names, whole-file rejections.

Anything that publishes is in test_workers_filesource_kafka.py, against the real broker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.batchfile import parse_only, read_file
from workers.base.private_files import folder_fd
from workers.base.settings import Settings
from workers.filesource.records import Outcome, RejectedFile, RowTexts, SourceFile, transactional_id_for
from workers.filesource.worker import FileSource

DATA = Path(__file__).parent / "data"
MMR = "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"


def settings(**overrides: Any) -> Settings:
    return Settings(**{"topic_namespace": "unit", "filesource_settle_seconds": 0, **overrides})


def drop(directory: Path, name: str, source: str = MMR) -> Path:
    target = directory / name
    shutil.copyfile(DATA / source, target)
    return target


def reasons_of(directory: Path, name: str) -> RejectedFile:
    return msgspec.json.decode((directory / "rejected" / f"{name}.reasons.json").read_bytes(), type=RejectedFile)


def test_candidates_are_settled_csv_and_dat_files_oldest_first(tmp_path: Path) -> None:
    old = drop(tmp_path, "B_old.dat")
    older = drop(tmp_path, "A_older.CSV")
    os.utime(old, (time.time() - 100, time.time() - 100))
    os.utime(older, (time.time() - 200, time.time() - 200))
    drop(tmp_path, "fresh.csv")  # just written: not settled
    drop(tmp_path, ".hidden.csv")
    drop(tmp_path, "notes.txt")
    drop(tmp_path, "partial.csv.tmp")
    (tmp_path / "folder.csv").mkdir()
    os.utime(tmp_path / "folder.csv", (time.time() - 300, time.time() - 300))
    source = FileSource(settings(filesource_settle_seconds=10), tmp_path)
    assert [p.name for p in source.candidates()] == ["A_older.CSV", "B_old.dat"]


async def test_invalid_name_goes_to_rejected_with_reasons(tmp_path: Path) -> None:
    name = "MMR_Vaccinations_v4_X8E5B_20250730T11525001.csv"
    drop(tmp_path, name)
    outcome = await FileSource(settings(), tmp_path).process(tmp_path / name)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert not (tmp_path / name).exists()
    assert (tmp_path / "rejected" / name).exists()
    note = reasons_of(tmp_path, name)
    assert note.file_name == name
    assert len(note.sha256) == 64
    [why] = note.reasons
    assert why.rule == "file.name"
    assert "v5" in why.message


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda data: b"\xef\xbb\xbf" + data, "file.bom"),
        (lambda data: data.replace(b"NHS_NUMBER", b"NHS_NUMBR", 1), "header.invalid"),
        (lambda data: b"", "header.missing"),
        (lambda data: data.replace(b"DELYTH", b"DEL\x81YTH\xff"), "file.encoding"),
    ],
    ids=["bom", "header", "empty", "encoding"],
)
async def test_unreadable_file_goes_to_rejected_with_the_table_rule(
    tmp_path: Path, mutate: Callable[[bytes], bytes], rule: str
) -> None:
    name = "MMR_Vaccinations_v5_X8E5B_20250730T12000001.csv"
    data = (DATA / "MMR_Vaccinations_v5_X8E5B_20250730T11530001.csv").read_bytes()
    (tmp_path / name).write_bytes(mutate(data))
    outcome = await FileSource(settings(), tmp_path).process(tmp_path / name)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert [r.rule for r in reasons_of(tmp_path, name).reasons] == [rule]


def published_as_mmr(source: FileSource, path: Path) -> None:
    """Put `path`'s content in the source's ledger as already published under the name MMR."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    source._ledger[sha] = SourceFile(
        sha256=sha, file_name=MMR, source="x", rows=3, published=3, rejected=0, processed_at="2025-07-30T12:00:00+00:00"
    )


async def test_same_content_under_another_name_is_a_duplicate(tmp_path: Path) -> None:
    source = FileSource(settings(), tmp_path)
    path = drop(tmp_path, "MMR_Vaccinations_v5_X8E5B_20250731T11525001.csv")
    published_as_mmr(source, path)
    outcome = await source.process(path)
    assert outcome is not None
    assert outcome.outcome == "duplicate"
    [why] = reasons_of(tmp_path, path.name).reasons
    assert why.rule == "file.duplicate"
    assert MMR in why.message


async def test_same_name_and_content_in_the_ledger_is_only_moved(tmp_path: Path) -> None:
    """The crash-after-commit case, at unit level: no Kafka is touched (the source is not started)."""
    source = FileSource(settings(), tmp_path)
    path = drop(tmp_path, MMR)
    published_as_mmr(source, path)
    outcome = await source.process(path)
    assert outcome is not None
    assert outcome.outcome == "replayed"
    assert (tmp_path / "done" / MMR).exists()


def test_a_name_taken_in_done_gets_the_hash_appended(tmp_path: Path) -> None:
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / MMR).write_bytes(b"earlier")
    with folder_fd(tmp_path / "done") as done:
        assert FileSource._free_name(done, MMR, "abcdef0123456789" * 4) == f"{MMR}.abcdef012345"
        assert FileSource._free_name(done, "other.csv", "abcdef0123456789" * 4) == "other.csv"


def test_transactional_id_is_one_per_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = transactional_id_for(settings(), tmp_path / "a")
    assert a == transactional_id_for(settings(), tmp_path / "b" / ".." / "a")
    assert a != transactional_id_for(settings(), tmp_path / "b")
    assert transactional_id_for(settings(filesource_transactional_id="fixed"), tmp_path / "a") == "fixed"


def test_structure_only_and_original_text_of_broken_rows() -> None:
    data = (DATA / MMR).read_bytes()
    header, *rows = data.split(b"\n")
    # row 2 gets a quoted value spanning two lines; row 3 loses a column
    rows[1] = rows[1].replace(b'"TANESHA"', b'"TAN\nESHA"')
    assert b"\n" in rows[1]
    rows[2] = rows[2].rsplit(b"|", 1)[0]
    text = b"\n".join([header, *rows])
    parsed = read_file(text, vaccine_type="MMR", sender_ods="X8E5B", validator=parse_only)
    assert [row.record is not None for row in parsed.rows] == [True, True, False]
    assert parsed.rows[0].record is not None
    assert parsed.rows[0].record.NHS_NUMBER == "9473081898"
    # the NHS number of row 3 fails mod 11, which is content: not the filesource's business
    assert parsed.rows[2].reasons[0].rule == "row.columns"
    texts = RowTexts(text, parsed)
    assert texts(parsed.rows[2]).encode() == rows[2].rstrip(b"\r\n")
    assert texts(parsed.rows[1]).encode() == rows[1]  # both physical lines


@pytest.mark.parametrize(
    "name",
    ["MMR_Vaccinations_v5_X8 |E5B_20250730T11525001.csv", "MMR_Vaccinations_v5_X8\udcffE5B_20250730T11525001.csv"],
    ids=["pipe-and-space", "undecodable-byte"],
)
async def test_ods_code_must_be_letters_and_digits(tmp_path: Path, name: str) -> None:
    path = drop(tmp_path, name)
    outcome = await FileSource(settings(), tmp_path).process(path)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert not path.exists()
    printable = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    assert outcome.file_name == printable
    note = msgspec.json.decode((tmp_path / "rejected" / f"{name}.reasons.json").read_bytes(), type=RejectedFile)
    assert note.file_name == printable
    assert [r.rule for r in note.reasons] == ["file.name"]


async def test_an_unreadable_file_is_left_and_the_rest_processed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = drop(tmp_path, "MMR_Vaccinations_v5_X8E5B_2025.csv")  # invalid names: no Kafka needed
    other = drop(tmp_path, "RSV_Vaccinations_v5_X8E5B.csv")
    os.utime(locked, (time.time() - 60, time.time() - 60))
    real = FileSource.process

    async def process(self: FileSource, path: Path) -> Outcome | None:
        if path.name == locked.name:
            raise PermissionError(13, "Permission denied")  # what a file owned by someone else gives
        return await real(self, path)

    monkeypatch.setattr(FileSource, "process", process)
    outcomes = await FileSource(settings(), tmp_path).poll_once()
    assert [o.file_name for o in outcomes] == [other.name]
    assert locked.exists()
