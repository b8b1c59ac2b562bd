"""Per-sender subdirectories (issue 17, decision 0019): each provider writes into its own folder
`<directory>/<name>/`, and a file there may only be for the ODS codes bound to that name.

Without a broker: FileSource.process rejects before it needs a producer (a file that gets past
every check reaches the publish and shows as None: "producer not connected"). The evidence for
the symlink cases is the outside folder itself, as in test_workers_filesource_symlinks.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from workers.base import private_files
from workers.base.settings import FILESOURCE_OWN_FOLDERS, Settings
from workers.filesource.records import DONE, REJECTED_DIR, RejectedFile, SourceFile
from workers.filesource.senders import RULE
from workers.filesource.worker import FileSource

DATA = Path(__file__).parent / "data"
MMR = "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"  # a file for ODS code X8E5B
FOR_YGM17 = "MMR_Vaccinations_v5_YGM17_20250730T11525001.csv"
BINDING = {"trust-a": ["X8E5B"], "trust-b": ["YGM17"]}


def settings(**overrides: Any) -> Settings:
    return Settings(**{
        "topic_namespace": "unit", "filesource_settle_seconds": 0, "filesource_subdir_senders": BINDING, **overrides
    })  # fmt: skip


def drop(folder: Path, name: str, source: str = MMR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / source, folder / name)
    return folder / name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def reasons(folder: Path, name: str) -> RejectedFile:
    return msgspec.json.decode((folder / f"{name}.reasons.json").read_bytes(), type=RejectedFile)


async def test_a_subdirectory_file_for_a_code_not_bound_to_it_is_rejected(tmp_path: Path) -> None:
    """trust-b may submit for YGM17 only: its file for X8E5B (trust-a's code) publishes nothing."""
    foreign = drop(tmp_path / "trust-b", MMR)
    own = drop(tmp_path / "trust-a", MMR)
    source = FileSource(settings(), tmp_path)
    assert sorted(source.candidates()) == sorted([foreign, own])
    outcome = await source.process(foreign)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert not foreign.exists()
    moved = tmp_path / REJECTED_DIR / "trust-b"
    note = reasons(moved, MMR)
    assert [r.rule for r in note.reasons] == [RULE]
    assert "trust-b/" in note.reasons[0].message
    assert "X8E5B" in note.reasons[0].message
    assert (moved / MMR).read_bytes() == (DATA / MMR).read_bytes()
    assert await source.process(own) is None  # its own code: on to the publish (no producer here)
    assert own.exists()


async def test_a_subdirectory_is_bound_by_its_own_codes_not_the_whole_directorys(tmp_path: Path) -> None:
    """The whole-directory binding still governs the top level; a subdirectory has its own."""
    top = drop(tmp_path, FOR_YGM17)
    in_b = drop(tmp_path / "trust-b", FOR_YGM17)
    in_a = drop(tmp_path / "trust-a", FOR_YGM17)
    source = FileSource(settings(filesource_dir_senders=["X8E5B"]), tmp_path)
    top_outcome = await source.process(top)
    assert top_outcome is not None
    assert top_outcome.outcome == "rejected"
    assert "this directory" in reasons(tmp_path / REJECTED_DIR, FOR_YGM17).reasons[0].message
    assert await source.process(in_b) is None  # YGM17 is trust-b's, whatever the top level may take
    a_outcome = await source.process(in_a)
    assert a_outcome is not None
    assert a_outcome.outcome == "rejected"
    assert reasons(tmp_path / REJECTED_DIR / "trust-a", FOR_YGM17).reasons[0].rule == RULE


async def test_a_copy_of_another_subdirectorys_published_file_is_refused_not_replayed(tmp_path: Path) -> None:
    """The binding is checked before the processed-files ledger: a byte-for-byte copy of trust-a's
    published file handed in by trust-b is refused as trust-b's, not moved to done/ as a replay."""
    source = FileSource(settings(), tmp_path)
    copy = drop(tmp_path / "trust-b", MMR)
    sha = hashlib.sha256((DATA / MMR).read_bytes()).hexdigest()
    source._ledger[sha] = SourceFile(
        sha256=sha, file_name=MMR, source="t", rows=3, published=3, rejected=0, processed_at="2025-07-30T11:52:50+00:00"
    )
    outcome = await source.process(copy)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert not (tmp_path / DONE).exists()
    assert reasons(tmp_path / REJECTED_DIR / "trust-b", MMR).reasons[0].rule == RULE


def test_only_bound_subdirectories_are_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A folder the binding does not name is not read, even one named after an ODS code: anyone
    able to make a folder in the directory would otherwise bind it to a code of their choice."""
    drop(tmp_path / "X8E5B", MMR)
    drop(tmp_path / "intruder", MMR)
    drop(tmp_path / "trust-a" / "deeper", MMR)  # only files directly in a bound subdirectory
    source = FileSource(settings(), tmp_path)
    with caplog.at_level(logging.WARNING, logger="vaxflow.filesource"):
        assert source.candidates() == []
        assert source.candidates() == []
    warned = [r for r in caplog.records if "not in VAXFLOW_FILESOURCE_SUBDIR_SENDERS" in r.getMessage()]
    assert sorted(getattr(r, "subdirectory", "") for r in warned) == ["X8E5B", "intruder"]  # once each


async def test_a_symlinked_subdirectory_is_never_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    secret = drop(outside, MMR)  # a well-formed file for trust-a's own code, outside the directory
    watched = tmp_path / "in"
    watched.mkdir()
    (watched / "trust-a").symlink_to(outside, target_is_directory=True)
    source = FileSource(settings(), watched)
    with caplog.at_level(logging.WARNING, logger="vaxflow.filesource"):
        assert source.candidates() == []
    assert any("link or not a folder" in r.getMessage() for r in caplog.records)
    assert await source.poll_once() == []
    assert secret.read_bytes() == (DATA / MMR).read_bytes()
    assert sorted(p.name for p in outside.iterdir()) == [MMR]
    assert not (watched / DONE).exists()
    assert not (watched / REJECTED_DIR).exists()


async def test_a_subdirectory_swapped_for_a_symlink_after_the_scan_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    secret = drop(outside, MMR)
    watched = tmp_path / "in"
    drop(watched / "trust-a", MMR)
    source = FileSource(settings(), watched)
    [found] = source.candidates()
    (watched / "trust-a").rename(tmp_path / "moved-away")
    (watched / "trust-a").symlink_to(outside, target_is_directory=True)  # between the scan and the read
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP; poll_once logs it and leaves the file
        await source.process(found)
    assert secret.read_bytes() == (DATA / MMR).read_bytes()
    assert sorted(p.name for p in outside.iterdir()) == [MMR]


async def test_moved_subdirectory_files_are_0600_in_0700_per_sender_folders(tmp_path: Path) -> None:
    os.umask(0o022)
    rejected = drop(tmp_path / "trust-b", MMR)
    done = drop(tmp_path / "trust-a", MMR)
    done.chmod(0o644)
    rejected.chmod(0o644)
    source = FileSource(settings(), tmp_path)
    await source.process(rejected)
    await source._archive(done, "0" * 64)  # the move after a commit
    for folder, name in (
        (f"{REJECTED_DIR}/trust-b", MMR), (f"{REJECTED_DIR}/trust-b", f"{MMR}.reasons.json"), (f"{DONE}/trust-a", MMR)
    ):  # fmt: skip
        assert mode(tmp_path / folder.split("/")[0]) == 0o700
        assert mode(tmp_path / folder) == 0o700, folder
        assert mode(tmp_path / folder / name) == 0o600, name
    assert list((tmp_path / "trust-a").iterdir()) == []
    assert list((tmp_path / "trust-b").iterdir()) == []


async def test_a_symlink_planted_as_a_per_sender_rejected_folder_receives_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    watched = tmp_path / "in"
    (watched / REJECTED_DIR).mkdir(parents=True)
    (watched / REJECTED_DIR / "trust-b").symlink_to(elsewhere, target_is_directory=True)
    foreign = drop(watched / "trust-b", MMR)
    with pytest.raises(OSError):  # noqa: PT011 - poll_once leaves the file in place and logs
        await FileSource(settings(), watched).process(foreign)
    assert list(elsewhere.iterdir()) == []
    assert foreign.exists()


def test_per_sender_folders_in_done_are_made_private_at_start(tmp_path: Path) -> None:
    done = tmp_path / DONE
    (done / "trust-a").mkdir(parents=True)
    (done / "trust-a").chmod(0o755)
    (done / "trust-a" / MMR).write_bytes(b"rows")
    (done / "trust-a" / MMR).chmod(0o644)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    (elsewhere / "kept.csv").write_bytes(b"not ours")
    (elsewhere / "kept.csv").chmod(0o644)
    (done / "trust-b").symlink_to(elsewhere, target_is_directory=True)
    private_files.private_folder(done)  # what FileSource.start does for done/ and rejected/
    assert (mode(done / "trust-a"), mode(done / "trust-a" / MMR)) == (0o700, 0o600)
    assert (mode(elsewhere), mode(elsewhere / "kept.csv")) == (0o755, 0o644)  # a link is never followed


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "done", "rejected", "x.csv", "a b", "x" * 65])
def test_a_subdirectory_must_be_a_plain_folder_name(name: str) -> None:
    with pytest.raises(ValidationError, match="VAXFLOW_FILESOURCE_DIR"):
        Settings(filesource_subdir_senders={name: ["X8E5B"]})


def test_the_file_sources_own_folders_are_the_ones_refused_as_subdirectories() -> None:
    assert frozenset({DONE, REJECTED_DIR}) == FILESOURCE_OWN_FOLDERS


def test_the_subdirectory_binding_reaches_a_worker_process(monkeypatch: pytest.MonkeyPatch) -> None:
    env = settings().as_environment()
    monkeypatch.setenv("VAXFLOW_FILESOURCE_SUBDIR_SENDERS", env["VAXFLOW_FILESOURCE_SUBDIR_SENDERS"])
    assert Settings().filesource_subdir_senders == BINDING
