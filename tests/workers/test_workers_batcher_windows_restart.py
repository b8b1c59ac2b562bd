"""The batcher's window rules across a restart (restore/snapshot), the byte cap and largest().

A restarted batcher rebuilds each partition from its BatcherState: the replay guard, the end of
the last window closed per key (`closed_until`, epoch ms) and the next part of windows that had
cut early parts (`open_parts`, by start ms). If either is lost, a late or re-read event reopens a
window whose file names are taken, and the next name either repeats (the receiver refuses it) or
overflows the window's seconds (window_slot raises, and the worker crash-loops on the same records).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.batchfile import render_row
from schemas.record import Record
from workers.batcher.windows import DueFile, PartitionWindows, ReplayGuard

W = 10  # window seconds
GRACE = 2
ROW = render_row(Record(UNIQUE_ID="x", UNIQUE_ID_URI="u", ACTION_FLAG="DELETE"))
KEY = ("FLU", "YGM41")
RSV = ("RSV", "X8E5B")  # a type without extended attributes: one part name per second


def windows(**kw: int) -> PartitionWindows:
    args = {"window_seconds": W, "grace_seconds": GRACE, "max_rows": 1000, "max_bytes": 10**9}
    args.update(kw)
    return PartitionWindows(**args)  # type: ignore[arg-type]


def add(
    pw: PartitionWindows, offset: int, ts_s: float, key: tuple[str, str] = KEY, size: int = 100
) -> list[DueFile]:
    return pw.add(
        offset=offset, timestamp_ms=int(ts_s * 1000), origin=(0, offset), vaccine_type=key[0], sender_ods=key[1],
        row=ROW, size=size,
    )


def start(index: int) -> datetime:
    return datetime.fromtimestamp(index * W, tz=UTC)


def end_ms(index: int) -> int:
    """Epoch ms of the end of window `index` (of W seconds): what `closed_until` keeps."""
    return (index + 1) * W * 1000


def part_key(index: int, key: tuple[str, str] = KEY) -> str:
    return f"{key[0]}|{key[1]}|{index * W * 1000}"


def open_part(index: int, next_part: int) -> tuple[int, int]:
    return (end_ms(index), next_part)


# --- restoring closed windows -------------------------------------------------------------------


def test_a_restored_closed_window_takes_no_more_events_they_go_to_the_next_one() -> None:
    pw = windows()
    pw.restore({"FLU|YGM41": end_ms(100)}, {})
    add(pw, 0, 1000.5)  # window 100: closed before the restart
    add(pw, 1, 995.0)  # window 99: older still
    add(pw, 2, 1000.5, ("RSV", "X8E5B"))  # another key: its window 100 was never closed
    files = pw.due(wall_ms=10**9)
    by_key = {(f.vaccine_type, f.sender_ods): f for f in files}
    assert by_key[KEY].window_start == start(101)
    assert by_key[KEY].offsets == [0, 1]
    assert by_key[KEY].part == 0
    assert by_key[("RSV", "X8E5B")].window_start == start(100)


def test_restore_then_snapshot_gives_the_same_state_back() -> None:
    pw = windows()
    closed, parts = {"FLU|YGM41": end_ms(100), "RSV|X8E5B": end_ms(7)}, {part_key(101): open_part(101, 3)}
    pw.restore(closed, parts)
    assert pw.snapshot() == (closed, parts)


def test_a_window_closed_before_a_restart_stays_closed_after_it() -> None:
    pw = windows()
    add(pw, 0, 1000.0)
    [first] = pw.due(wall_ms=1012_000)
    assert first.window_start == start(100)
    closed, parts = pw.snapshot()
    assert closed == {"FLU|YGM41": end_ms(100)}
    fresh = windows(guard=ReplayGuard(watermark=1))  # type: ignore[arg-type]
    fresh.restore(closed, parts)
    add(fresh, 1, 1001.0)  # a late event of the closed window, read after the restart
    [late] = fresh.due(wall_ms=1022_000)
    assert (late.window_start, late.part, late.offsets) == (start(101), 0, [1])


def test_windows_closed_out_of_order_leave_the_highest_index_closed() -> None:
    pw = windows()
    add(pw, 0, 1015.0)  # window 101 first
    add(pw, 1, 1005.0)  # then window 100, still open (stream time 1015 < 1010 + grace)
    files = pw.due(wall_ms=10**9)
    assert sorted(f.window_start for f in files) == [start(100), start(101)]
    assert pw.closed_until[KEY] == end_ms(101)
    add(pw, 2, 1015.0)  # late for window 101, which is closed: never reopened
    [late] = pw.due(wall_ms=10**9)
    assert late.window_start == start(102)


# --- expiring restored part counts --------------------------------------------------------------


def test_a_restored_part_count_numbers_the_windows_next_parts() -> None:
    pw = windows(max_rows=1)
    pw.restore({}, {part_key(100): open_part(100, 2)})
    [due] = add(pw, 0, 1000.5)
    assert (due.window_start, due.part) == (start(100), 2)
    assert pw.snapshot() == ({}, {part_key(100): open_part(100, 3)})


def test_a_restored_part_count_lasts_until_its_window_would_have_closed() -> None:
    pw = windows()
    pw.restore({}, {part_key(100): open_part(100, 2)})
    assert pw.due(wall_ms=1011_999) == []  # window 100 ends at 1010 s, closes at 1012 s with grace
    assert pw.snapshot() == ({}, {part_key(100): open_part(100, 2)})
    add(pw, 0, 1000.5)
    [due] = pw.due(wall_ms=1012_000)
    assert (due.window_start, due.part) == (start(100), 2)


def test_a_restored_part_count_expires_with_its_window_and_closes_it() -> None:
    pw = windows()
    pw.restore({}, {part_key(100): open_part(100, 2), part_key(101): open_part(101, 1)})
    assert pw.due(wall_ms=1012_000) == []  # exactly end + grace of window 100
    assert pw.snapshot() == ({"FLU|YGM41": end_ms(100)}, {part_key(101): open_part(101, 1)})
    add(pw, 0, 1000.5)  # late for window 100: the next window, with its own restored count
    [due] = pw.due(wall_ms=1022_000)
    assert (due.window_start, due.part) == (start(101), 1)
    assert pw.snapshot() == ({"FLU|YGM41": end_ms(101)}, {})


def test_a_restored_part_count_expires_on_stream_time_too() -> None:
    pw = windows()
    pw.restore({}, {part_key(100): open_part(100, 2)})
    add(pw, 0, 1012.0, ("RSV", "X8E5B"))  # another key moves stream time to 1012 s
    pw.due(wall_ms=0)
    assert pw.snapshot()[1] == {}
    assert pw.closed_until[KEY] == end_ms(100)


def test_an_expiring_part_count_never_lowers_a_restored_closed_index() -> None:
    pw = windows()
    pw.restore({"FLU|YGM41": end_ms(102)}, {part_key(100): open_part(100, 1)})
    pw.due(wall_ms=1012_000)
    assert pw.closed_until[KEY] == end_ms(102)
    add(pw, 0, 1025.0)  # window 102: closed
    [due] = pw.due(wall_ms=10**9)
    assert due.window_start == start(103)


def test_every_part_of_a_restarted_window_gets_a_name_the_window_has() -> None:
    """Parts cut before and after a restart number on; the close takes the window's last slot."""
    pw = windows(window_seconds=3, max_rows=1)
    [p0] = add(pw, 0, 999.0, RSV)
    fresh = windows(window_seconds=3, max_rows=1, guard=ReplayGuard(watermark=1))  # type: ignore[arg-type]
    fresh.restore(*pw.snapshot())
    [p1] = add(fresh, 1, 999.1, RSV)
    assert add(fresh, 2, 999.2, RSV) == []  # slot 2 is kept for the close: the part grows past the cap
    add(fresh, 3, 999.3, RSV)
    [last] = fresh.due(wall_ms=10**9)
    assert [p0.part, p1.part, last.part] == [0, 1, 2]
    assert last.offsets == [2, 3]


# --- the byte cap -------------------------------------------------------------------------------


def test_the_byte_cap_cuts_when_the_held_bytes_reach_it() -> None:
    pw = windows(max_bytes=300)
    assert add(pw, 0, 1000.0) == []
    assert add(pw, 1, 1000.0) == []
    [due] = add(pw, 2, 1000.0)  # 3 x 100 bytes: exactly the cap
    assert due.offsets == [0, 1, 2]
    assert add(pw, 3, 1000.0, size=250) == []  # the bytes count again from the cut
    [due] = add(pw, 4, 1000.0, size=50)
    assert (due.part, due.offsets) == (1, [3, 4])


def test_the_byte_cap_counts_the_sizes_given_not_the_rows() -> None:
    pw = windows(max_bytes=1000)
    assert add(pw, 0, 1000.0, size=999) == []
    [due] = add(pw, 1, 1000.0, size=1)
    assert due.offsets == [0, 1]


# --- largest() ----------------------------------------------------------------------------------


def test_largest_cuts_the_window_holding_the_most_bytes() -> None:
    pw = windows()
    for offset in range(3):
        add(pw, offset, 1000.0, ("FLU", "A"), size=10)
    add(pw, 3, 1000.0, ("RSV", "B"), size=100)
    [due] = pw.largest()
    assert (due.vaccine_type, due.sender_ods, due.offsets) == ("RSV", "B", [3])
    assert pw.held == 3
    [due] = pw.largest()  # the emptied window stays open but is no candidate
    assert (due.vaccine_type, due.offsets) == ("FLU", [0, 1, 2])
    assert pw.held == 0
    assert pw.largest() == []
    assert len(pw.windows) == 2


def test_largest_never_takes_a_windows_last_name() -> None:
    pw = windows(window_seconds=2)  # two names: one early part, one for the close
    pw.restore({}, {"FLU|A|1000000": (1002_000, 1)})  # the 2 s window starting at 1000 s
    add(pw, 0, 1000.0, ("FLU", "A"), size=500)
    assert pw.largest() == []
    add(pw, 1, 1000.0, ("RSV", "B"), size=10)
    [due] = pw.largest()
    assert (due.vaccine_type, due.part) == ("RSV", 0)


def test_a_cut_part_names_its_key_and_window() -> None:
    pw = windows()
    add(pw, 0, 1003.0, ("RSV", "B"))
    [due] = pw.largest()
    assert (due.vaccine_type, due.sender_ods) == ("RSV", "B")
    assert (due.window_start, due.window_length, due.part) == (start(100), timedelta(seconds=W), 0)


# --- bookkeeping the worker reads ---------------------------------------------------------------


def test_skipped_counts_the_events_already_in_files() -> None:
    pw = windows(guard=ReplayGuard(watermark=3))  # type: ignore[arg-type]
    assert pw.skipped == 0
    for offset in range(5):
        add(pw, offset, 1000.0)
    assert pw.skipped == 3
    assert pw.held == 2


def test_stream_time_starts_at_zero_and_only_moves_forward() -> None:
    pw = windows()
    assert pw.stream_time_ms == 0
    add(pw, 0, 1000.0)
    add(pw, 1, 990.0)
    assert pw.stream_time_ms == 1000_000


def test_the_guard_keeps_the_range_ending_at_the_watermark() -> None:
    guard = ReplayGuard(emitted=[(3, 5), (8, 9)])
    guard.advance(5)
    assert guard.emitted == [(5, 5), (8, 9)]
    assert guard.already_emitted(5)
    assert not guard.already_emitted(6)
