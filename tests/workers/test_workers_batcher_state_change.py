"""The batcher's saved window bookkeeping under a change of window length, grace and caps (issue 16).

A stack ran with VAXFLOW_WINDOW_SECONDS=10 and was restarted with 86400: the saved state held window
INDEXES of 10 s, read as days, and a late event's window began in year 493805 (a crash loop). The
bookkeeping is now kept as times (BatcherState version 2); a version-1 state is migrated when the
length that wrote it is known, and refused with a message naming the settings when it is not.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.batchfile import render_row
from schemas.extended import extended_name_second
from schemas.filenames import part_file_name
from schemas.pipeline import BatcherState
from schemas.record import Record
from workers.batcher.saved_state import STATE_VERSION, StateFormatError, bookkeeping
from workers.batcher.windows import DueFile, PartitionWindows, ReplayGuard

ROW = render_row(Record(UNIQUE_ID="x", UNIQUE_ID_URI="u", ACTION_FLAG="DELETE"))
KEY = ("FLU", "YGM41")
RSV = ("RSV", "X8E5B")  # a type without extended attributes: one part name per second
DAY_MS = 86_400_000
NOW_MS = 1_764_900_000_000  # 2025-12-05, a time the saved windows are near


def windows(window_seconds: int, grace_seconds: int = 2, max_rows: int = 1000, guard: ReplayGuard | None = None
            ) -> PartitionWindows:  # fmt: skip
    return PartitionWindows(
        window_seconds=window_seconds, grace_seconds=grace_seconds, max_rows=max_rows, max_bytes=10**9, guard=guard
    )


def add(pw: PartitionWindows, offset: int, ts_ms: int, key: tuple[str, str] = KEY) -> list[DueFile]:
    return pw.add(
        offset=offset,
        timestamp_ms=ts_ms,
        origin=(0, offset),
        vaccine_type=key[0],
        sender_ods=key[1],
        row=ROW,
        size=100,
    )


def name(f: DueFile) -> str:
    """The file's name; raises (as the worker would) when the part does not fit its window."""
    return part_file_name(f.vaccine_type, f.sender_ods, f.window_start, f.window_length, f.part)


def seconds_named(f: DueFile) -> int:
    return int(f.window_start.timestamp()) + f.part


# --- the case of the issue ----------------------------------------------------------------------


def test_a_window_length_raised_from_10_s_to_a_day_keeps_late_events_in_this_century() -> None:
    """The issue's crash: 10 s windows closed, restart with 86400 s, a late event and largest()."""
    first = windows(10)
    t0 = NOW_MS - NOW_MS % 10_000
    add(first, 0, t0 + 1_000)
    [closed] = first.due(wall_ms=t0 + 12_000)
    first.record_emitted([closed])
    state = first.snapshot()
    assert state[0] == {"FLU|YGM41": t0 + 10_000}  # the end of the window, in epoch ms

    daily = windows(86400, guard=ReplayGuard(first.guard.watermark, list(first.guard.emitted)))
    daily.restore(*state)
    add(daily, 1, t0 + 3_000)  # late: its 10 s window is closed and in a file
    add(daily, 2, t0 + 60_000)  # on time, in the same day
    [part] = daily.largest()  # was: ValueError: year 493805 is out of range
    assert part.window_start == datetime.fromtimestamp((t0 - t0 % DAY_MS) / 1000, tz=UTC)
    assert part.window_length == timedelta(days=1)
    assert part.offsets == [1, 2]
    # named from the closed window's end upward: the 10 s window's names stay its own
    assert seconds_named(part) == (t0 + 10_000) // 1000
    assert seconds_named(part) > seconds_named(closed)
    assert name(part) != name(closed)


@pytest.mark.parametrize(("key", "same_day"), [(KEY, False), (RSV, True)])
def test_late_events_of_an_afternoon_10_s_window_under_daily_windows(key: tuple[str, str], same_day: bool) -> None:
    """Closed at 15:00:10 under 10 s windows, then daily windows: the day's names from 15:00:10 up
    are RSV's to use, but a FLU part n also names its extended-attribute file at second 2n+1 of the
    day, so part 54010 would fall outside it. The late FLU events go to the next day (CI found the
    integration test failing after noon): later, never under a name the 10 s run may have taken."""
    day0 = NOW_MS - NOW_MS % DAY_MS
    until = day0 + 15 * 3600_000 + 10_000
    daily = windows(86400)
    daily.restore({f"{key[0]}|{key[1]}": until}, {})
    add(daily, 0, until - 5_000, key)  # late: inside the closed 10 s window
    [part] = daily.due(wall_ms=day0 + 3 * DAY_MS)
    assert part.offsets == [0]
    assert seconds_named(part) == (until // 1000 if same_day else (day0 + DAY_MS) // 1000)
    name(part)  # fits its window
    if key == KEY:
        ea_second = extended_name_second(key[0], int(part.window_start.timestamp()), part.part)
        assert until // 1000 <= ea_second < (day0 + 2 * DAY_MS) // 1000


def test_a_window_length_cut_from_a_day_to_10_s_names_nothing_inside_the_closed_day() -> None:
    day0 = NOW_MS - NOW_MS % DAY_MS
    daily = windows(86400, max_rows=1)
    [p0] = add(daily, 0, day0 + 5_000)  # parts 0 and 1 of the day, cut by the cap
    [p1] = add(daily, 1, day0 + 6_000)
    assert daily.due(wall_ms=day0 + DAY_MS + 2_000) == []  # the day closes with nothing more held
    short = windows(10, guard=ReplayGuard(2))
    short.restore(*daily.snapshot())
    add(short, 2, day0 + 7_000)  # late for the closed day
    add(short, 3, day0 + DAY_MS + 3_000)  # the next day, on time: the same 10 s window as the late one
    [late] = short.due(wall_ms=day0 + 2 * DAY_MS)
    assert late.offsets == [2, 3]
    assert seconds_named(late) == (day0 + DAY_MS) // 1000
    assert len({name(f) for f in (p0, p1, late)}) == 3


def test_a_window_open_with_parts_when_the_length_changes_is_closed_at_its_end() -> None:
    """Its parts took names from its start; events of it not yet in a file (read again after the
    restart) go on from its end, under the new length."""
    t0 = NOW_MS - NOW_MS % 60_000
    first = windows(60, max_rows=2)
    add(first, 0, t0 + 1_000)
    [p0] = add(first, 1, t0 + 2_000)
    first.record_emitted([p0])
    add(first, 2, t0 + 3_000)  # held, never in a file: read again after the restart
    closed_until, open_parts = first.snapshot()
    assert open_parts == {f"FLU|YGM41|{t0}": (t0 + 60_000, 1)}
    second = windows(3600, max_rows=5, guard=ReplayGuard(first.guard.watermark, list(first.guard.emitted)))
    second.restore(closed_until, open_parts)
    assert second.closed_until[KEY] == t0 + 60_000
    assert add(second, 0, t0 + 1_000) == []  # already in p0: skipped
    add(second, 2, t0 + 3_000)
    [rest] = second.due(wall_ms=t0 + 10 * 3_600_000)
    assert rest.offsets == [2]
    assert seconds_named(rest) == (t0 + 60_000) // 1000
    assert name(rest) != name(p0)


def test_the_same_length_restores_open_parts_as_before() -> None:
    first = windows(10, max_rows=1)
    [p0] = add(first, 0, 1000_500)
    second = windows(10, max_rows=1, grace_seconds=30, guard=ReplayGuard(1))  # grace changed only
    second.restore(*first.snapshot())
    [p1] = add(second, 1, 1000_600)
    assert (p0.part, p1.part, p1.window_start) == (0, 1, p0.window_start)


def test_a_lower_cap_after_a_restart_still_keeps_the_last_name_for_the_close() -> None:
    first = windows(3, max_rows=10)
    add(first, 0, 999_000, RSV)
    [p0] = first.largest()
    second = windows(3, max_rows=1, guard=ReplayGuard(1))
    second.restore(*first.snapshot())
    [p1] = add(second, 1, 999_100, RSV)
    assert add(second, 2, 999_200, RSV) == []  # slot 2 is the window's last name
    [last] = second.due(wall_ms=10**9)
    assert [p0.part, p1.part, last.part] == [0, 1, 2]


# --- runs with changed settings, simulated: every event in exactly one file, names unique --------


@dataclass
class Run:
    """One batcher run over a partition, saving its state at each emit as the worker does."""

    pw: PartitionWindows
    files: list[DueFile] = field(default_factory=list)
    saved: tuple[int, list[tuple[int, int]], dict[str, int], dict[str, tuple[int, int]]] | None = None

    def emit(self, due: list[DueFile]) -> None:
        if not due:
            return
        self.files += due
        self.pw.record_emitted(due)
        closed_until, open_parts = self.pw.snapshot()
        self.saved = (self.pw.guard.watermark, list(self.pw.guard.emitted), closed_until, open_parts)


def restarted(run: Run, window_seconds: int, grace_seconds: int, max_rows: int) -> PartitionWindows:
    if run.saved is None:
        return windows(window_seconds, grace_seconds, max_rows)
    watermark, emitted, closed_until, open_parts = run.saved
    pw = windows(window_seconds, grace_seconds, max_rows, guard=ReplayGuard(watermark, list(emitted)))
    pw.restore(closed_until, open_parts)
    return pw


SETTINGS = st.tuples(st.sampled_from([1, 2, 3, 10, 60, 3600, 86400]), st.integers(0, 5), st.integers(1, 4))
# COVID and FLU of one sender share the extended-attribute name space (decision 0020)
KEYS = [("FLU", "A"), ("RSV", "B"), ("COVID", "A")]


@settings(max_examples=300, deadline=None)
@given(
    first=SETTINGS,
    second=SETTINGS,
    steps=st.lists(st.tuples(st.integers(-30_000, 5_000), st.integers(0, 2), st.booleans()), min_size=1, max_size=40),
    stop_at=st.integers(0, 40),
)
def test_every_event_in_one_file_under_unique_names_across_a_change_of_settings(
    first: tuple[int, int, int], second: tuple[int, int, int], steps: list[tuple[int, int, bool]], stop_at: int
) -> None:
    """Events (some late, by up to 30 s) read by a run with one length/grace/cap, which stops
    anywhere; a run with others reads again from the saved watermark, and on to the end."""
    t0 = NOW_MS - NOW_MS % DAY_MS + DAY_MS - 3_000  # just before midnight: windows of every length start there
    events, clock = [], t0
    for jump, key, close in steps:
        clock += max(jump, 0)
        events.append((clock + min(jump, 0), KEYS[key], close))
    stop_at = min(stop_at, len(events))

    a = Run(windows(*first))
    for offset, (ts, key, close) in enumerate(events[:stop_at]):
        a.emit(add(a.pw, offset, ts, key))
        if close:
            a.emit(a.pw.due(wall_ms=0))
    b = Run(restarted(a, *second))
    for offset in range(b.pw.guard.watermark, len(events)):
        ts, key, close = events[offset]
        b.emit(add(b.pw, offset, ts, key))
        if close:
            b.emit(b.pw.due(wall_ms=0))
    b.emit(b.pw.due(wall_ms=t0 + 10 * DAY_MS))

    files = a.files + b.files
    placed = Counter(o for f in files for o in f.offsets)
    assert sorted(placed) == list(range(len(events))), "an event is in no file"
    assert max(placed.values()) == 1, "an event is in two files"
    names = [name(f) for f in files]
    assert len(names) == len(set(names)), "a file name was used twice"
    # Every part of COVID|A and FLU|A could carry an extended-attribute file: its name (one per
    # second, no vaccine type in it) must be unique across both keys and inside its own window.
    seconds = [
        (extended_name_second(f.vaccine_type, int(f.window_start.timestamp()), f.part), f)
        for f in files if f.vaccine_type in ("COVID", "FLU")
    ]  # fmt: skip
    assert len({s for s, _ in seconds}) == len(seconds), "an extended-attribute file name was used twice"
    for second, f in seconds:
        assert f.window_start.timestamp() <= second < (f.window_start + f.window_length).timestamp()
    assert all(f.window_start.year == datetime.fromtimestamp(t0 / 1000, UTC).year for f in b.files if f.part == 0)


# --- version-1 state (indexes): migration -------------------------------------------------------


def v1(closed: dict[str, int], parts: dict[str, int] | None = None) -> BatcherState:
    return BatcherState(partition=3, watermark=0, emitted=[], closed=closed, parts=parts or {})


def test_a_version_1_state_under_the_same_length_means_what_it_meant() -> None:
    index = NOW_MS // 10_000 - 5  # a 10 s window closed 50 s ago
    state = v1({"FLU|YGM41": index}, {f"FLU|YGM41|{index + 2}": 3})
    closed, parts = bookkeeping(state, window_seconds=10, state_window_seconds=None, now_ms=NOW_MS)
    assert closed == {"FLU|YGM41": (index + 1) * 10_000}
    assert parts == {f"FLU|YGM41|{(index + 2) * 10_000}": ((index + 3) * 10_000, 3)}
    pw = windows(10)
    pw.restore(closed, parts)
    add(pw, 0, index * 10_000)  # late for the closed window
    [due] = pw.due(wall_ms=NOW_MS + 60_000)
    assert due.window_start == datetime.fromtimestamp((index + 1) * 10, UTC)  # the old `closed + 1`


def test_a_version_1_state_of_10_s_windows_read_with_daily_windows_is_refused_naming_the_settings() -> None:
    state = v1({"FLU|YGM41": NOW_MS // 10_000})
    with pytest.raises(StateFormatError) as refused:
        bookkeeping(state, window_seconds=86400, state_window_seconds=None, now_ms=NOW_MS)
    message = str(refused.value)
    assert "VAXFLOW_BATCHER_STATE_WINDOW_SECONDS" in message
    assert "VAXFLOW_WINDOW_SECONDS=86400" in message
    assert "partition 3" in message
    year = int(re.search(r"would end in (\d+)", message).group(1))  # type: ignore[union-attr]
    assert year > 400_000  # where its windows would end (493805 in the run, a year later)


def test_a_version_1_state_of_daily_windows_read_with_10_s_windows_is_refused() -> None:
    state = v1({"FLU|YGM41": NOW_MS // DAY_MS - 1})
    with pytest.raises(StateFormatError, match="would end in 1970"):
        bookkeeping(state, window_seconds=10, state_window_seconds=None, now_ms=NOW_MS)


def test_a_version_1_state_is_migrated_with_the_length_the_operator_names() -> None:
    index = NOW_MS // 10_000 - 5
    state = v1({"FLU|YGM41": index})
    closed, _ = bookkeeping(state, window_seconds=86400, state_window_seconds=10, now_ms=NOW_MS)
    assert closed == {"FLU|YGM41": (index + 1) * 10_000}
    pw = windows(86400)
    pw.restore(closed, {})
    add(pw, 0, index * 10_000)  # late for the closed 10 s window
    [due] = pw.due(wall_ms=NOW_MS + 2 * DAY_MS)
    assert seconds_named(due) == (index + 1) * 10  # from the closed window's end upward
    name(due)


def test_a_version_1_state_with_no_windows_needs_no_length() -> None:
    assert bookkeeping(v1({}), window_seconds=86400, state_window_seconds=None, now_ms=NOW_MS) == ({}, {})


def test_a_version_2_state_is_read_as_saved_whatever_the_settings() -> None:
    state = BatcherState(
        partition=0, watermark=5, emitted=[], version=STATE_VERSION, window_ms=10_000,
        closed_until={"FLU|YGM41": 1_000_000}, open_parts={"FLU|YGM41|1000000": (1_010_000, 2)},
    )  # fmt: skip
    for length in (1, 10, 86400):
        assert bookkeeping(state, window_seconds=length, state_window_seconds=7, now_ms=0) == (
            {"FLU|YGM41": 1_000_000}, {"FLU|YGM41|1000000": (1_010_000, 2)},
        )  # fmt: skip
