"""Tumbling windows per (vaccine type, sender) for one valid-topic partition — pure logic, no I/O.

Kept free of Kafka so the rules that decide what goes in which file (window assignment, late
events, closing, parts, the replay guard) can be unit-tested exhaustively and read in one place.
The worker feeds records in offset order and asks which files are due.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas.pipeline import Origin

_MAX = 2**63  # above any Kafka offset


@dataclass(slots=True)
class Window:
    """The events one open window holds, as parallel lists in offset order (offsets[i], origins[i]
    and rows[i] are one event): an object per held event cost the batcher a constructor call per
    event and its memory bound ~100 bytes per event more."""

    vaccine_type: str
    sender_ods: str
    index: int
    offsets: list[int] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)  # file rows, already rendered by the validator
    size: int = 0
    parts_emitted: int = 0


@dataclass(frozen=True, slots=True)
class DueFile:
    """The events of one file part, in offset order, ready to render; `ranges` are their offsets
    as merged inclusive ranges (the file's manifest and the replay guard both need them)."""

    vaccine_type: str
    sender_ods: str
    window_start: datetime
    window_length: timedelta
    part: int
    offsets: list[int]
    origins: list[Origin]
    rows: list[bytes]
    ranges: list[tuple[int, int]]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint, adjacent-merged inclusive ranges."""
    out: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            if last > out[-1][1]:
                out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def offsets_to_ranges(offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Merged inclusive ranges of `offsets`: one pass when they ascend, as a window's always do
    (records are fed in offset order), a sort otherwise."""
    out: list[tuple[int, int]] = []
    first = last = -2
    for offset in offsets:
        if offset == last + 1:
            last = offset
        elif offset > last:
            if first >= 0:
                out.append((first, last))
            first = last = offset
        else:
            return merge_ranges((o, o) for o in offsets)
    if first >= 0:
        out.append((first, last))
    return out


@dataclass(slots=True)
class ReplayGuard:
    """What this partition has already put into files: all offsets below `watermark`, plus `emitted`.

    Restored from the batcher-state topic on assignment, so a restart or an operator replay never
    puts an event into a second file.
    """

    watermark: int = 0
    emitted: list[tuple[int, int]] = field(default_factory=list)

    def already_emitted(self, offset: int) -> bool:
        """Asked for every record read: constant time for a record beyond every emitted range, as
        new records are; a binary search over the sorted ranges otherwise."""
        if offset < self.watermark:
            return True
        emitted = self.emitted
        if not emitted or offset > emitted[-1][1]:
            return False
        i = bisect_right(emitted, (offset, _MAX))  # the first range starting after `offset`
        return i > 0 and offset <= emitted[i - 1][1]

    def add(self, ranges: Iterable[tuple[int, int]]) -> None:
        self.emitted = merge_ranges([*self.emitted, *ranges])

    def advance(self, watermark: int) -> None:
        """Move the watermark up and drop ranges wholly below it."""
        self.watermark = max(self.watermark, watermark)
        self.emitted = [(max(f, self.watermark), last) for f, last in self.emitted if last >= self.watermark]


class PartitionWindows:
    """All open windows of one valid-topic partition, with its stream time."""

    def __init__(
        self,
        *,
        window_seconds: int,
        grace_seconds: int,
        max_rows: int,
        max_bytes: int,
        guard: ReplayGuard | None = None,
    ) -> None:
        self.window_ms = window_seconds * 1000
        self.grace_ms = grace_seconds * 1000
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.guard = guard or ReplayGuard()
        self.windows: dict[tuple[str, str, int], Window] = {}
        self.closed_upto: dict[tuple[str, str], int] = {}  # key -> highest window index emitted
        self.stream_time_ms = 0
        self.position = self.guard.watermark  # next offset to read
        self.held = 0
        self.skipped = 0  # events add() left out as already in a file (replay), for the worker's metric
        self.restored_parts: dict[tuple[str, str, int], int] = {}

    def restore(self, closed: dict[str, int], parts: dict[str, int]) -> None:
        """Take back the window bookkeeping saved with the guard (see BatcherState)."""
        for key, index in closed.items():
            vt, _, ods = key.partition("|")
            self.closed_upto[(vt, ods)] = index
        for key, count in parts.items():
            vt, ods, window_index = key.split("|")
            self.restored_parts[(vt, ods, int(window_index))] = count

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        closed = {f"{vt}|{ods}": index for (vt, ods), index in self.closed_upto.items()}
        parts = {f"{vt}|{ods}|{i}": n for (vt, ods, i), n in self.restored_parts.items()}
        parts.update(
            {f"{vt}|{ods}|{i}": w.parts_emitted for (vt, ods, i), w in self.windows.items() if w.parts_emitted}
        )
        return closed, parts

    def _start(self, index: int) -> datetime:
        return datetime.fromtimestamp(index * self.window_ms / 1000, tz=UTC)

    def add(
        self, *, offset: int, timestamp_ms: int, origin: Origin, vaccine_type: str, sender_ods: str, row: bytes,
        size: int,
    ) -> list[DueFile]:
        """Hold one event; returns parts that reached a cap and must be written now."""
        self.position = max(self.position, offset + 1)
        self.stream_time_ms = max(self.stream_time_ms, timestamp_ms)
        if self.guard.already_emitted(offset):
            self.skipped += 1
            return []
        index = timestamp_ms // self.window_ms
        closed = self.closed_upto.get((vaccine_type, sender_ods))
        if closed is not None and index <= closed:
            index = closed + 1  # late: the key's next open window, never dropped
        window = self.windows.get((vaccine_type, sender_ods, index))
        if window is None:
            window = Window(vaccine_type, sender_ods, index)
            window.parts_emitted = self.restored_parts.pop((vaccine_type, sender_ods, index), 0)
            self.windows[(vaccine_type, sender_ods, index)] = window
        window.offsets.append(offset)
        window.origins.append(origin)
        window.rows.append(row)
        window.size += size
        self.held += 1
        over_cap = len(window.rows) >= self.max_rows or window.size >= self.max_bytes
        if over_cap and self._can_cut_early(window):
            return [self._cut(window)]
        return []

    def _can_cut_early(self, window: Window) -> bool:
        """A window of N seconds has N file names (one per second, schemas/filenames.py); the last
        one is kept for the close, so the final part may exceed the caps rather than reuse a name."""
        return window.parts_emitted < self.window_ms // 1000 - 1

    def _cut(self, window: Window) -> DueFile:
        """Take the window's events as its next part; the window stays open for more."""
        due = DueFile(
            vaccine_type=window.vaccine_type,
            sender_ods=window.sender_ods,
            window_start=self._start(window.index),
            window_length=timedelta(milliseconds=self.window_ms),
            part=window.parts_emitted,
            offsets=window.offsets,
            origins=window.origins,
            rows=window.rows,
            ranges=offsets_to_ranges(window.offsets),
        )
        self.held -= len(window.rows)
        window.parts_emitted += 1
        window.offsets, window.origins, window.rows = [], [], []
        window.size = 0
        return due

    def due(self, wall_ms: int) -> list[DueFile]:
        """Close every window whose end plus grace has passed on stream time or the wall clock."""
        out: list[DueFile] = []
        horizon = max(self.stream_time_ms, wall_ms) - self.grace_ms
        for vt, ods, index in list(self.restored_parts):
            if (index + 1) * self.window_ms <= horizon:
                del self.restored_parts[(vt, ods, index)]
                self.closed_upto[(vt, ods)] = max(self.closed_upto.get((vt, ods), index), index)
        for key, window in list(self.windows.items()):
            end_ms = (window.index + 1) * self.window_ms
            if end_ms + self.grace_ms <= max(self.stream_time_ms, wall_ms):
                if window.rows:
                    out.append(self._cut(window))
                del self.windows[key]
                pair = (window.vaccine_type, window.sender_ods)
                self.closed_upto[pair] = max(self.closed_upto.get(pair, window.index), window.index)
        return out

    def largest(self) -> list[DueFile]:
        """Backpressure: cut the biggest open window early as a part, to free memory."""
        candidates = [w for w in self.windows.values() if w.rows and self._can_cut_early(w)]
        if not candidates:
            return []
        return [self._cut(max(candidates, key=lambda w: w.size))]

    def low_watermark(self) -> int:
        """The lowest offset still held by an open window, or the read position when none is."""
        held = [w.offsets[0] for w in self.windows.values() if w.offsets]
        return min(held) if held else self.position

    def record_emitted(self, files: Iterable[DueFile]) -> None:
        self.guard.add([r for f in files for r in f.ranges])
        self.guard.advance(self.low_watermark())
