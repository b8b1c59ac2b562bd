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

from schemas.extended import extended_names
from schemas.pipeline import Origin

_MAX = 2**63  # above any Kafka offset


@dataclass(slots=True)
class Window:
    """The events one open window holds, as parallel lists in offset order (offsets[i], origins[i]
    and rows[i] are one event): an object per held event cost the batcher a constructor call per
    event and its memory bound ~100 bytes per event more."""

    vaccine_type: str
    sender_ods: str
    start_ms: int  # epoch ms; the window ends start_ms + the partition's window length
    offsets: list[int] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)  # file rows, already rendered by the validator
    # (index into rows, the event's extended-attribute lines) for the few events that carry them
    extended: list[tuple[int, bytes]] = field(default_factory=list)
    size: int = 0
    parts_emitted: int = 0  # the next part's number = the second of the window that names it


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
    extended: list[tuple[int, bytes]] = field(default_factory=list)
    """(index into rows, extended-attribute lines): the part's extended-attribute file, if any."""


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
    """All open windows of one valid-topic partition, with its stream time.

    The bookkeeping that outlives a run (`closed_until`, `restored_parts`, saved as BatcherState
    version 2) is in epoch ms, never in window indexes: a later run may have another window length,
    grace or caps, and an index means nothing without the length that made it (issue 16).
    """

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
        self.windows: dict[tuple[str, str, int], Window] = {}  # (type, ods, start ms) -> window
        # key -> epoch ms below which the key's file names may be taken (the end of its last closed
        # window): older events are late, and no part is ever named below it.
        self.closed_until: dict[tuple[str, str], int] = {}
        self.stream_time_ms = 0
        self.position = self.guard.watermark  # next offset to read
        self.held = 0
        self.skipped = 0  # events add() left out as already in a file (replay), for the worker's metric
        # (type, ods, start ms) -> next part of a window that cut parts before the restart
        self.restored_parts: dict[tuple[str, str, int], int] = {}

    def restore(self, closed_until: dict[str, int], open_parts: dict[str, tuple[int, int]]) -> None:
        """Take back the window bookkeeping saved with the guard (BatcherState version 2).

        A saved open window that is not a window of the current length (the length changed) is
        taken as closed at its end: its names are below `closed_until`, and its events not yet in
        a file (read again from the watermark) are late, so they go to the window holding its end
        under the current length, named from that end upward — never a name it may have used.
        """
        for key, until in closed_until.items():
            vt, _, ods = key.partition("|")
            self._close_until((vt, ods), until)
        for key, (end_ms, next_part) in open_parts.items():
            vt, ods, start = key.split("|")
            start_ms = int(start)
            if start_ms % self.window_ms == 0 and end_ms - start_ms == self.window_ms:
                self.restored_parts[(vt, ods, start_ms)] = next_part
            else:
                self._close_until((vt, ods), end_ms)

    def snapshot(self) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
        """(closed_until, open_parts) as BatcherState version 2 keeps them."""
        closed = {f"{vt}|{ods}": until for (vt, ods), until in self.closed_until.items()}
        parts = {
            f"{vt}|{ods}|{start}": (start + self.window_ms, n) for (vt, ods, start), n in self.restored_parts.items()
        }
        parts.update(
            {
                f"{vt}|{ods}|{start}": (start + self.window_ms, w.parts_emitted)
                for (vt, ods, start), w in self.windows.items()
                if w.parts_emitted
            }
        )
        return closed, parts

    def _close_until(self, key: tuple[str, str], until_ms: int) -> None:
        self.closed_until[key] = max(self.closed_until.get(key, until_ms), until_ms)

    def _start(self, start_ms: int) -> datetime:
        return datetime.fromtimestamp(start_ms / 1000, tz=UTC)

    def _open(self, vaccine_type: str, sender_ods: str, start_ms: int, until_ms: int | None) -> Window:
        """The window of the key starting at `start_ms`, opened now. Its first part is the first
        whole second at or after `until_ms` (the key's names below it may be taken), counted from
        its start: 0 when it starts there or later, as it always does while the window length stays
        the same; after a change of length the window holding `until_ms` starts before it. A part
        restored from before a restart comes after the parts already cut.

        A window with no name left (the length changed, or it already used the parts a COVID or FLU
        window has now: _names) is closed, and its events go to the next window, as late ones do.
        """
        key = (vaccine_type, sender_ods)
        while True:
            first = 0 if until_ms is None or until_ms <= start_ms else -(-(until_ms - start_ms) // 1000)
            first = max(first, self.restored_parts.pop((vaccine_type, sender_ods, start_ms), 0))
            if first < self._names(vaccine_type, start_ms):
                break
            self._close_until(key, start_ms + self.window_ms)
            until_ms = self.closed_until[key]
            start_ms += self.window_ms
            existing = self.windows.get((vaccine_type, sender_ods, start_ms))
            if existing is not None:
                return existing
        window = Window(vaccine_type, sender_ods, start_ms)
        window.parts_emitted = first
        self.windows[(vaccine_type, sender_ods, start_ms)] = window
        return window

    def add(
        self, *, offset: int, timestamp_ms: int, origin: Origin, vaccine_type: str, sender_ods: str, row: bytes,
        size: int, extended: bytes = b"",
    ) -> list[DueFile]:
        """Hold one event; returns parts that reached a cap and must be written now."""
        self.position = max(self.position, offset + 1)
        self.stream_time_ms = max(self.stream_time_ms, timestamp_ms)
        if self.guard.already_emitted(offset):
            self.skipped += 1
            return []
        # A late event (before the key's `closed_until`) goes to the window holding `closed_until`,
        # never dropped and never under a name that may be taken.
        until = self.closed_until.get((vaccine_type, sender_ods))
        at = timestamp_ms if until is None or timestamp_ms >= until else until
        start = at - at % self.window_ms
        window = self.windows.get((vaccine_type, sender_ods, start))
        if window is None:
            window = self._open(vaccine_type, sender_ods, start, until)
        window.offsets.append(offset)
        window.origins.append(origin)
        if extended:
            window.extended.append((len(window.rows), extended))
        window.rows.append(row)
        window.size += size + len(extended)
        self.held += 1
        over_cap = len(window.rows) >= self.max_rows or window.size >= self.max_bytes
        if over_cap and self._can_cut_early(window):
            return [self._cut(window)]
        return []

    def _names(self, vaccine_type: str, start_ms: int) -> int:
        """How many parts a window of the key may have: one per second (schemas/filenames.py), or,
        for a type whose parts may each need an extended-attribute file, one per second of that
        type's parity (schemas.extended.extended_name_second; COVID and FLU share that name space)."""
        seconds = self.window_ms // 1000
        shared = extended_names(vaccine_type, start_ms // 1000, seconds)
        return seconds if shared is None else shared

    def _can_cut_early(self, window: Window) -> bool:
        """The last name is kept for the close, so the final part may exceed the caps rather than
        reuse a name."""
        return window.parts_emitted < self._names(window.vaccine_type, window.start_ms) - 1

    def _cut(self, window: Window) -> DueFile:
        """Take the window's events as its next part; the window stays open for more."""
        due = DueFile(
            vaccine_type=window.vaccine_type,
            sender_ods=window.sender_ods,
            window_start=self._start(window.start_ms),
            window_length=timedelta(milliseconds=self.window_ms),
            part=window.parts_emitted,
            offsets=window.offsets,
            origins=window.origins,
            rows=window.rows,
            ranges=offsets_to_ranges(window.offsets),
            extended=window.extended,
        )
        self.held -= len(window.rows)
        window.parts_emitted += 1
        window.offsets, window.origins, window.rows, window.extended = [], [], [], []
        window.size = 0
        return due

    def due(self, wall_ms: int) -> list[DueFile]:
        """Close every window whose end plus grace has passed on stream time or the wall clock."""
        out: list[DueFile] = []
        horizon = max(self.stream_time_ms, wall_ms) - self.grace_ms
        for vt, ods, start in list(self.restored_parts):
            if start + self.window_ms <= horizon:
                del self.restored_parts[(vt, ods, start)]
                self._close_until((vt, ods), start + self.window_ms)
        for key, window in list(self.windows.items()):
            end_ms = window.start_ms + self.window_ms
            if end_ms + self.grace_ms <= max(self.stream_time_ms, wall_ms):
                if window.rows:
                    out.append(self._cut(window))
                del self.windows[key]
                self._close_until((window.vaccine_type, window.sender_ods), end_ms)
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
