"""The batcher's window rules, without Kafka: which events go in which file, and when."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from schemas.batchfile import render_row
from schemas.record import Record
from workers.batcher.windows import PartitionWindows, ReplayGuard, merge_ranges, offsets_to_ranges

W = 10  # window seconds
ROW = render_row(Record(UNIQUE_ID="x", UNIQUE_ID_URI="u", ACTION_FLAG="DELETE"))


def windows(**kw: int) -> PartitionWindows:
    args = {"window_seconds": W, "grace_seconds": 2, "max_rows": 1000, "max_bytes": 10**9}
    args.update(kw)
    return PartitionWindows(**args)  # type: ignore[arg-type]


def add(pw: PartitionWindows, offset: int, ts_s: float, key: tuple[str, str] = ("FLU", "YGM41")) -> list[object]:
    return list(
        pw.add(offset=offset, timestamp_ms=int(ts_s * 1000), origin=(0, offset), vaccine_type=key[0],
               sender_ods=key[1], row=ROW, size=100)
    )


def test_window_closes_on_stream_time_plus_grace() -> None:
    pw = windows()
    add(pw, 0, 1000.0)
    add(pw, 1, 1005.0)
    assert pw.due(wall_ms=0) == []
    add(pw, 2, 1011.9)  # next window; stream time 1011.9 < 1010 + 2
    assert pw.due(wall_ms=0) == []
    add(pw, 3, 1012.0, ("RSV", "X8E5B"))  # stream time reaches end + grace
    [due] = pw.due(wall_ms=0)
    assert due.offsets == [0, 1]
    assert due.window_start == datetime.fromtimestamp(1000, tz=UTC)
    assert pw.low_watermark() == 2


def test_window_closes_on_wall_clock_for_quiet_senders() -> None:
    pw = windows()
    add(pw, 0, 1000.0)
    assert pw.due(wall_ms=1011_000) == []
    assert len(pw.due(wall_ms=1012_000)) == 1
    assert pw.low_watermark() == 1


def test_late_event_goes_to_the_keys_next_window_never_dropped() -> None:
    pw = windows()
    add(pw, 0, 1000.0)
    pw.due(wall_ms=1012_000)
    add(pw, 1, 1001.0)  # belongs to the closed window
    [due] = pw.due(wall_ms=1022_000)
    assert due.offsets == [1]
    assert due.window_start == datetime.fromtimestamp(1010, tz=UTC)


def test_row_cap_cuts_numbered_parts_in_offset_order_and_keeps_last_slot() -> None:
    pw = windows(max_rows=2, window_seconds=3)
    cuts = [add(pw, i, 999.0 + 0.1 * i, ("RSV", "X8E5B")) for i in range(7)]  # RSV: a name per second
    parts = [d for c in cuts for d in c]
    assert [p.part for p in parts] == [0, 1]  # window of 3 s: parts 0 and 1 early, slot 2 for the close
    [last] = pw.due(wall_ms=2000_000)
    assert last.part == 2
    assert last.offsets == [4, 5, 6]


def test_guard_skips_what_is_already_in_files() -> None:
    guard = ReplayGuard(watermark=5, emitted=[(7, 8)])
    pw = windows(guard=guard)  # type: ignore[arg-type]
    for offset in range(10):
        add(pw, offset, 1000.0)
    [due] = pw.due(wall_ms=2000_000)
    assert due.offsets == [5, 6, 9]


def test_emitted_ranges_and_watermark_advance() -> None:
    pw = windows()
    add(pw, 0, 1000.0, ("FLU", "A"))
    add(pw, 1, 1000.0, ("RSV", "B"))
    add(pw, 2, 1000.0, ("FLU", "A"))
    due = pw.largest()
    pw.record_emitted(due)
    # FLU|A (2 events) was cut; RSV|B still holds offset 1
    assert pw.guard.watermark == 1
    assert pw.guard.emitted == [(2, 2)]


def test_snapshot_restore_keeps_part_numbers_and_closed_windows() -> None:
    pw = windows(max_rows=1)
    add(pw, 0, 1000.0)  # cut as part 0 at once
    closed, parts = pw.snapshot()
    assert parts == {"FLU|YGM41|1000000": (1010_000, 1)}  # start and end in epoch ms, next part
    fresh = windows(max_rows=1)
    fresh.restore(closed, parts)
    [due] = add(fresh, 1, 1000.5)  # type: ignore[misc]
    assert due.part == 1  # type: ignore[attr-defined]


def test_ranges() -> None:
    assert offsets_to_ranges([5, 1, 2, 3, 9]) == [(1, 3), (5, 5), (9, 9)]
    assert merge_ranges([(1, 3), (4, 6), (10, 12), (11, 15)]) == [(1, 6), (10, 15)]


def test_ranges_of_ascending_offsets_in_one_pass_and_of_any_order_by_sorting() -> None:
    assert offsets_to_ranges([]) == []
    assert offsets_to_ranges([0]) == [(0, 0)]
    assert offsets_to_ranges([0, 1, 2, 4, 5, 9]) == [(0, 2), (4, 5), (9, 9)]
    assert offsets_to_ranges([3, 3, 4]) == [(3, 4)]  # a repeat falls back to the sorting path
    assert offsets_to_ranges([7, 2, 3]) == [(2, 3), (7, 7)]


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=40))
def test_ranges_cover_exactly_the_offsets(offsets: list[int]) -> None:
    ranges = offsets_to_ranges(offsets)
    covered = [o for first, last in ranges for o in range(first, last + 1)]
    assert covered == sorted(set(offsets))
    assert all(b[0] > a[1] + 1 for a, b in itertools.pairwise(ranges))  # disjoint, not adjacent


@given(
    st.integers(min_value=0, max_value=30),
    st.lists(st.integers(min_value=0, max_value=60), max_size=30),
    st.integers(min_value=0, max_value=80),
)
def test_guard_answers_as_a_set_of_offsets_would(watermark: int, offsets: list[int], probe: int) -> None:
    guard = ReplayGuard(watermark=watermark)
    guard.add(offsets_to_ranges(offsets))
    assert guard.already_emitted(probe) == (probe < watermark or probe in set(offsets))


def test_a_cut_part_carries_its_rows_origins_and_ranges_and_the_window_starts_empty() -> None:
    pw = windows(max_rows=3)
    add(pw, 4, 1000.0)
    add(pw, 5, 1000.0, ("RSV", "B"))
    add(pw, 6, 1000.1)
    [due] = add(pw, 7, 1000.2)
    assert due.offsets == [4, 6, 7]  # type: ignore[attr-defined]
    assert due.origins == [(0, 4), (0, 6), (0, 7)]  # type: ignore[attr-defined]
    assert due.rows == [ROW, ROW, ROW]  # type: ignore[attr-defined]
    assert due.ranges == [(4, 4), (6, 7)]  # type: ignore[attr-defined]
    assert pw.held == 1
    [rest] = [w for w in pw.windows.values() if w.vaccine_type == "FLU"]
    assert (rest.offsets, rest.origins, rest.rows, rest.size) == ([], [], [], 0)
