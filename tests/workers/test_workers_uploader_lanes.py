"""The uploader's per-key lanes and commit point (workers/uploader/lanes.py) and its outage report
(workers/uploader/outage.py): pure, no broker, no sandbox."""

from __future__ import annotations

import pytest

from workers.base.runtime import Health
from workers.uploader.lanes import TRACKED_PER_FILE, PartitionLanes
from workers.uploader.outage import FILES_WAITING, UNAVAILABLE_SINCE, MeshAvailability

A, B = b"RSV|X8E5B", b"FLU|X8E5B"


def admit_all(lanes: PartitionLanes[str], keyed: list[tuple[int, bytes]]) -> list[bytes]:
    """Admit (offset, key) pairs; the keys whose lanes started."""
    return [key for offset, key in keyed if lanes.admit(offset, key, f"file@{offset}")]


def test_a_lane_per_key_works_its_files_in_offset_order() -> None:
    lanes: PartitionLanes[str] = PartitionLanes(capacity=10)
    started = admit_all(lanes, [(0, A), (1, B), (2, A), (3, A), (4, B)])
    assert started == [A, B]  # one task per key; later files join the idle-free lane
    assert lanes.head(A) == (0, "file@0")
    assert lanes.head(B) == (1, "file@1")
    lanes.finish(A)
    assert lanes.head(A) == (2, "file@2")  # the next of ITS key, never a later one first
    lanes.finish(A)
    lanes.finish(A)
    assert lanes.head(A) is None  # idle: the next file of A starts it again
    assert lanes.admit(5, A, "file@5")


def test_a_waiting_file_holds_back_only_its_own_key_and_the_commit_point() -> None:
    """A's first file waits (a MESH failure); B's files all finish meanwhile. The partition commits
    only up to A's waiting file, whatever finished after it."""
    lanes: PartitionLanes[str] = PartitionLanes(capacity=10)
    admit_all(lanes, [(10, A), (11, B), (12, A), (13, B)])
    assert lanes.committable == 10
    assert lanes.commit_after(11) == 10  # B's first finishing does not move it past A's
    assert lanes.finish(B) == 10
    assert lanes.head(B) == (13, "file@13")  # B is not held back by A
    assert lanes.finish(B) == 10
    assert lanes.head(A) == (10, "file@10")
    assert lanes.commit_after(10) == 12  # A's first going: up to A's second, which is still to do
    assert lanes.finish(A) == 12
    assert lanes.commit_after(12) == 14  # everything admitted done: past the last admitted offset
    assert lanes.finish(A) == 14
    assert (lanes.unfinished, lanes.committable) == (0, 14)


def test_offsets_with_gaps_commit_past_the_last_record() -> None:
    """Transaction markers take offsets too: the commit point is after the last record seen."""
    lanes: PartitionLanes[str] = PartitionLanes(capacity=4)
    assert lanes.committable is None
    admit_all(lanes, [(3, A), (7, B)])
    assert lanes.finish(B) == 3
    assert lanes.finish(A) == 8


def test_capacity_bounds_the_files_held_and_the_offsets_tracked() -> None:
    lanes: PartitionLanes[str] = PartitionLanes(capacity=3)
    admit_all(lanes, [(0, A), (1, A), (2, B)])
    assert lanes.full  # three files not finished: pause the partition
    lanes.finish(B)
    assert not lanes.full
    # A blocked for good, B flowing: finished offsets pile up above the commit point, bounded too.
    offset = 3
    while not lanes.full:
        lanes.admit(offset, B, "b")
        lanes.finish(B)
        offset += 1
    assert lanes.committable == 0
    assert offset == 3 * TRACKED_PER_FILE  # A's 2 unfinished + the finished B offsets fill the bound


def test_offsets_must_rise() -> None:
    lanes: PartitionLanes[str] = PartitionLanes(capacity=3)
    lanes.admit(5, A, "x")
    with pytest.raises(ValueError, match="offset 4"):
        lanes.admit(4, B, "y")
    with pytest.raises(ValueError, match="capacity"):
        PartitionLanes(capacity=0)


def test_mesh_unavailable_since_the_first_failure_of_an_outage() -> None:
    now = [1_780_000_000.0]
    health = Health()
    seen = MeshAvailability(health, clock=lambda: now[0])
    seen.add_waiting(3)
    assert "mesh" not in health.detail
    assert UNAVAILABLE_SINCE._value.get() == 0
    seen.failed()
    now[0] += 120
    seen.failed()  # a later failure of the same outage keeps its start
    seen.add_waiting(2)
    assert UNAVAILABLE_SINCE._value.get() == 1_780_000_000.0
    assert FILES_WAITING._value.get() == 5
    assert health.detail["mesh"] == "MESH unavailable since 2026-05-28T20:26:40+00:00, 5 files waiting"
    seen.answered()
    assert "mesh" not in health.detail
    assert UNAVAILABLE_SINCE._value.get() == 0
    now[0] += 10
    seen.failed()  # a new outage starts anew
    assert UNAVAILABLE_SINCE._value.get() == now[0]
