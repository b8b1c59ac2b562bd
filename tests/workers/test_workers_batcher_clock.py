"""Which clock closes a partition's windows (Batcher.clock_for): pure, no broker."""

from __future__ import annotations

from pathlib import Path

from aiokafka import TopicPartition

from workers.base.settings import Settings
from workers.batcher.worker import IDLE_BEFORE_WALL_CLOCK_MS, Batcher

TP = TopicPartition("valid", 0)
STREAM_MS = 1_000_000  # an hour behind the wall clock below: a backlog
WALL_MS = STREAM_MS + 3_600_000


def _batcher(tmp_path: Path, grace_seconds: int = 0) -> Batcher:
    batcher = Batcher(Settings(dev_home=tmp_path, grace_seconds=grace_seconds))
    batcher.partitions[TP] = batcher.new_windows(None)
    batcher.partitions[TP].stream_time_ms = STREAM_MS
    return batcher


def test_records_still_arriving_keep_the_stream_clock_even_at_the_end(tmp_path: Path) -> None:
    batcher = _batcher(tmp_path)
    for step in range(10):  # a validator feeding small transactions for ten seconds
        now = WALL_MS + step * 1000
        assert batcher.clock_for(TP, now, got_records=True, at_end=True) == STREAM_MS


def test_an_idle_partition_read_to_its_end_closes_on_the_wall_clock(tmp_path: Path) -> None:
    batcher = _batcher(tmp_path)
    assert batcher.clock_for(TP, WALL_MS, got_records=True, at_end=True) == STREAM_MS
    almost = WALL_MS + IDLE_BEFORE_WALL_CLOCK_MS - 1
    assert batcher.clock_for(TP, almost, got_records=False, at_end=True) == STREAM_MS
    idle = WALL_MS + IDLE_BEFORE_WALL_CLOCK_MS
    assert batcher.clock_for(TP, idle, got_records=False, at_end=True) == idle


def test_without_records_but_behind_the_stream_clock_stays(tmp_path: Path) -> None:
    """No records in the poll yet not at the end (paused, or records buffered for later polls)."""
    batcher = _batcher(tmp_path)
    batcher.clock_for(TP, WALL_MS, got_records=True, at_end=False)
    later = WALL_MS + 10 * IDLE_BEFORE_WALL_CLOCK_MS
    assert batcher.clock_for(TP, later, got_records=False, at_end=False) == STREAM_MS


def test_a_longer_grace_is_also_the_idle_time(tmp_path: Path) -> None:
    batcher = _batcher(tmp_path, grace_seconds=60)
    batcher.clock_for(TP, WALL_MS, got_records=True, at_end=True)
    assert batcher.clock_for(TP, WALL_MS + 59_999, got_records=False, at_end=True) == STREAM_MS
    assert batcher.clock_for(TP, WALL_MS + 60_000, got_records=False, at_end=True) == WALL_MS + 60_000


def test_a_partition_handed_back_starts_its_idle_time_afresh(tmp_path: Path) -> None:
    batcher = _batcher(tmp_path)
    batcher.clock_for(TP, WALL_MS, got_records=True, at_end=True)
    batcher.forget({TP})
    batcher.partitions[TP] = batcher.new_windows(None)
    batcher.partitions[TP].stream_time_ms = STREAM_MS
    later = WALL_MS + 5 * IDLE_BEFORE_WALL_CLOCK_MS
    assert batcher.clock_for(TP, later, got_records=False, at_end=True) == STREAM_MS  # first poll after assignment
