"""The batcher's archive copy: private, atomic, and its folders made only when missing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from workers.base import private_files
from workers.base.private_files import write_private
from workers.batcher.archive import archive_path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_folders_are_made_private(tmp_path: Path) -> None:
    path = archive_path(tmp_path / "archive", "FLU", "X26OT303", "FLU_Vaccinations_v5_X26OT303_20261126T10000000.csv")
    write_private(path, b"row\n")
    assert path.read_bytes() == b"row\n"
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert _mode(path.parent.parent) == 0o700
    assert _mode(path.parent.parent.parent) == 0o700  # the archive root too


def test_a_folder_that_exists_is_not_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = archive_path(tmp_path, "FLU", "X26OT303", "a.csv")
    write_private(first, b"a")
    made: list[Path] = []
    real_mkdir = Path.mkdir

    def counting_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        made.append(self)
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(private_files.Path, "mkdir", counting_mkdir)
    write_private(archive_path(tmp_path, "FLU", "X26OT303", "b.csv"), b"b")
    assert made == []
    write_private(archive_path(tmp_path, "COVID", "X26OT303", "c.csv"), b"c")
    assert made == [tmp_path / "COVID", tmp_path / "COVID" / "X26OT303"]


def test_rewriting_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = archive_path(tmp_path, "FLU", "X26OT303", "a.csv")
    write_private(path, b"first version, longer\n")
    write_private(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.csv"]


def test_a_failed_write_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = archive_path(tmp_path, "FLU", "X26OT303", "a.csv")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(private_files.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="I/O error"):
        write_private(path, b"row\n")
    assert list(path.parent.iterdir()) == []
