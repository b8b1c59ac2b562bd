"""Tumbling windows per (vaccine type, sender) for one valid-topic partition — pure logic, no I/O.

Kept free of Kafka so the rules that decide what goes in which file (window assignment, late
events, closing, parts, the replay guard) can be unit-tested exhaustively and read in one place.
The worker feeds records in offset order and asks which files are due.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas.pipeline import Origin


@dataclass(slots=True)
class Held:
    """One valid event held by an open window: its file row, already rendered by the validator."""

    offset: int
    origin: Origin
    row: bytes
    size: int


@dataclass(slots=True)
class Window:
    vaccine_type: str
    sender_ods: str
    index: int
    events: list[Held] = field(default_factory=list)
    size: int = 0
    parts_emitted: int = 0


@dataclass(frozen=True, slots=True)
class DueFile:
    """The events of one file part, in offset order, ready to render."""

    vaccine_type: str
    sender_ods: str
    window_start: datetime
    window_length: timedelta
    part: int
    events: tuple[Held, ...]


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


def offsets_to_ranges(offsets: Iterable[int]) -> list[tuple[int, int]]:
    return merge_ranges((o, o) for o in offsets)


@dataclass(slots=True)
class ReplayGuard:
    """What this partition has already put into files: all offsets below `watermark`, plus `emitted`.

    Restored from the batcher-state topic on assignment, so a restart or an operator replay never
    puts an event into a second file.
    """

    watermark: int = 0
    emitted: list[tuple[int, int]] = field(default_factory=list)

    def already_emitted(self, offset: int) -> bool:
        if offset < self.watermark:
            return True
        for first, last in self.emitted:
            if first <= offset <= last:
                return True
            if first > offset:
                return False
        return False

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
        window.events.append(Held(offset, origin, row, size))
        window.size += size
        self.held += 1
        over_cap = len(window.events) >= self.max_rows or window.size >= self.max_bytes
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
            events=tuple(window.events),
        )
        self.held -= len(window.events)
        window.parts_emitted += 1
        window.events = []
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
                if window.events:
                    out.append(self._cut(window))
                del self.windows[key]
                pair = (window.vaccine_type, window.sender_ods)
                self.closed_upto[pair] = max(self.closed_upto.get(pair, window.index), window.index)
        return out

    def largest(self) -> list[DueFile]:
        """Backpressure: cut the biggest open window early as a part, to free memory."""
        candidates = [w for w in self.windows.values() if w.events and self._can_cut_early(w)]
        if not candidates:
            return []
        return [self._cut(max(candidates, key=lambda w: w.size))]

    def low_watermark(self) -> int:
        """The lowest offset still held by an open window, or the read position when none is."""
        held = [w.events[0].offset for w in self.windows.values() if w.events]
        return min(held) if held else self.position

    def record_emitted(self, files: Iterable[DueFile]) -> None:
        ranges = [r for f in files for r in offsets_to_ranges(e.offset for e in f.events)]
        self.guard.add(ranges)
        self.guard.advance(self.low_watermark())
