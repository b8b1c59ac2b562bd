"""Nothing a file can do (issue 17): symlinks planted in the provider-writable directory are never
followed, and every folder that keeps patient data is 0700 with files 0600.

The evidence is the outside file or folder itself (its bytes, its mode, what it holds), not what
the file source reports. No broker: the paths under test reject before any publish.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest

from workers.base import private_files
from workers.base.private_files import write_private
from workers.base.settings import Settings, SettingsError
from workers.filesource.records import RejectedFile
from workers.filesource.worker import FileSource

DATA = Path(__file__).parent / "data"
MMR = "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"
BAD_NAME = "MMR_Vaccinations_v4_X8E5B_20250730T11525001.csv"  # v4: rejected by name
OUTSIDE = b"an outside file the service must never write\n"


def settings(**overrides: Any) -> Settings:
    return Settings(**{"topic_namespace": "unit", "filesource_settle_seconds": 0, **overrides})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def untouched(outside: Path) -> bool:
    return outside.read_bytes() == OUTSIDE and mode(outside) == 0o644


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside.txt"
    target.write_bytes(OUTSIDE)
    target.chmod(0o644)
    return target


def test_the_private_writer_does_not_follow_a_symlink_at_its_temporary_name(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / f".rows.csv.{os.getpid()}.tmp").symlink_to(outside)
    (folder / "other.csv").symlink_to(outside)
    write_private(folder / "rows.csv", b"patient rows\n")
    write_private(folder / "other.csv", b"more rows\n")  # a symlink at the name itself is replaced
    assert untouched(outside)
    for name, content in (("rows.csv", b"patient rows\n"), ("other.csv", b"more rows\n")):
        assert not (folder / name).is_symlink()
        assert (folder / name).read_bytes() == content
        assert mode(folder / name) == 0o600


def test_the_private_writer_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "archive").symlink_to(elsewhere)
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP, whatever the platform calls it
        write_private(tmp_path / "archive" / "rows.csv", b"patient rows\n")
    assert list(elsewhere.iterdir()) == []


async def test_the_reasons_file_is_not_written_through_a_planted_symlink(tmp_path: Path, outside: Path) -> None:
    watched = tmp_path / "in"
    (watched / "rejected").mkdir(parents=True)
    shutil.copyfile(DATA / MMR, watched / BAD_NAME)
    for planted in (f".{BAD_NAME}.reasons.json.tmp", f".{BAD_NAME}.reasons.json.{os.getpid()}.tmp"):
        (watched / "rejected" / planted).symlink_to(outside)
    outcome = await FileSource(settings(), watched).process(watched / BAD_NAME)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert untouched(outside)
    reasons = watched / "rejected" / f"{BAD_NAME}.reasons.json"
    assert not reasons.is_symlink()
    assert msgspec.json.decode(reasons.read_bytes(), type=RejectedFile).reasons[0].rule == "file.name"


async def test_a_file_swapped_for_a_symlink_after_the_scan_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / MMR  # a well-formed batch file the provider may not submit
    secret.parent.mkdir()
    shutil.copyfile(DATA / MMR, secret)
    watched = tmp_path / "in"
    watched.mkdir()
    shutil.copyfile(DATA / MMR, watched / MMR)
    source = FileSource(settings(), watched)
    [found] = source.candidates()
    found.unlink()
    found.symlink_to(secret)  # between the scan and the read
    outcome = await source.process(found)  # reading it would reach the publish: None without a broker
    assert outcome is not None
    assert outcome.outcome == "rejected"
    note = msgspec.json.decode((watched / "rejected" / f"{MMR}.reasons.json").read_bytes(), type=RejectedFile)
    assert [r.rule for r in note.reasons] == ["file.not_regular"]
    assert secret.read_bytes() == (DATA / MMR).read_bytes()  # still there, untouched


async def test_a_symlink_planted_as_the_rejected_folder_receives_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    watched = tmp_path / "in"
    watched.mkdir()
    (watched / "rejected").symlink_to(elsewhere)
    shutil.copyfile(DATA / MMR, watched / BAD_NAME)
    with pytest.raises(OSError):  # noqa: PT011 - poll_once leaves the file in place and logs
        await FileSource(settings(), watched).process(watched / BAD_NAME)
    assert list(elsewhere.iterdir()) == []
    assert (watched / BAD_NAME).exists()


async def test_rejected_and_done_files_are_0600_in_0700_folders(tmp_path: Path) -> None:
    os.umask(0o022)
    shutil.copyfile(DATA / MMR, tmp_path / BAD_NAME)
    shutil.copyfile(DATA / MMR, tmp_path / MMR)
    (tmp_path / BAD_NAME).chmod(0o644)
    (tmp_path / MMR).chmod(0o644)
    source = FileSource(settings(), tmp_path)
    await source.process(tmp_path / BAD_NAME)
    await source._archive(tmp_path / MMR, "0" * 64)  # the move after a commit
    for folder, name in (("rejected", BAD_NAME), ("rejected", f"{BAD_NAME}.reasons.json"), ("done", MMR)):
        assert mode(tmp_path / folder) == 0o700, folder
        assert mode(tmp_path / folder / name) == 0o600, name


def test_existing_folders_are_made_private_at_start(tmp_path: Path) -> None:
    done = tmp_path / "done"
    done.mkdir(mode=0o755)
    done.chmod(0o755)
    (done / MMR).write_bytes(b"rows")
    (done / MMR).chmod(0o644)
    private_files.private_folder(done)  # what FileSource.start does for done/ and rejected/
    private_files.private_folder(tmp_path / "rejected")
    assert (mode(done), mode(done / MMR), mode(tmp_path / "rejected")) == (0o700, 0o600, 0o700)


async def test_a_symlink_in_place_of_done_stops_the_start(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    watched = tmp_path / "in"
    watched.mkdir()
    (watched / "done").symlink_to(elsewhere)
    with pytest.raises(SettingsError, match="not a link"):  # before any Kafka connection is tried
        await FileSource(settings(), watched).start()
    assert mode(elsewhere) == 0o755


def test_bindings_reach_a_worker_process_through_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    bound = settings(filesource_dir_senders=["*"], filesource_mesh_senders={"X26PROVA": ["YGM17"]})
    env = bound.as_environment()
    assert env["VAXFLOW_FILESOURCE_DIR_SENDERS"] == '["*"]'
    for name in ("VAXFLOW_FILESOURCE_DIR_SENDERS", "VAXFLOW_FILESOURCE_MESH_SENDERS"):
        monkeypatch.setenv(name, env[name])
    again = Settings()
    assert again.filesource_dir_senders == ["*"]
    assert again.filesource_mesh_senders == {"X26PROVA": ["YGM17"]}
