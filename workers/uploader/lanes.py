"""Per-key delivery lanes of one ready partition, and the offset it may commit (pure bookkeeping).

NHS England processes one supplier's files for one vaccine type in the order they arrive, so the
files of one batch key (`VACCINE_TYPE|SENDER_ODS`, the ready topic's key) must reach MESH in window
order, while a file waiting on a transient MESH failure must hold back only the later files of its
own key (issue 16). Every key of a partition therefore gets a lane: a FIFO of its files in offset
order, of which only the head is worked on. Lanes of different keys run side by side.

Kafka commits one offset per partition, so the partition may commit only up to its lowest file
not yet finished (recorded as sent, skipped or dead-lettered): a later file of another key that
finished first has its receipt in the sent ledger already, and is skipped when it is read again
after a restart. The bookkeeping is bounded: `capacity` files not finished (their contents are in
memory) and `capacity * TRACKED_PER_FILE` offsets above the commit point (plain integers); when
either is reached the partition is `full` and the worker pauses it until a file finishes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

T = TypeVar("T")

# Finished offsets kept above the commit point per file of capacity: integers, not files.
TRACKED_PER_FILE: Final = 64


class PartitionLanes(Generic[T]):
    """The files one ready partition holds, by lane, and the commit point they allow."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.lanes: dict[Hashable, deque[tuple[int, T]]] = {}
        self._order: deque[int] = deque()  # every offset above the commit point, ascending
        self._finished: set[int] = set()
        self._next = -1  # the offset after the last admitted one (-1: nothing admitted yet)

    @property
    def unfinished(self) -> int:
        return len(self._order) - len(self._finished)

    @property
    def full(self) -> bool:
        return self.unfinished >= self.capacity or len(self._order) >= self.capacity * TRACKED_PER_FILE

    def admit(self, offset: int, lane: Hashable, item: T) -> bool:
        """Take a file at the end of its lane; True when the lane was idle (the caller starts it).

        Offsets must rise: the consumer hands out a partition's records in order, and after a
        rewind the bookkeeping is rebuilt (`PartitionLanes` is per assignment).
        """
        if offset < self._next:
            raise ValueError(f"offset {offset} admitted after {self._next - 1}")
        self._order.append(offset)
        self._next = offset + 1
        queue = self.lanes.get(lane)
        if queue is None:
            self.lanes[lane] = deque([(offset, item)])
            return True
        queue.append((offset, item))
        return False

    def head(self, lane: Hashable) -> tuple[int, T] | None:
        """The lane's next file to work on, or None when it has none (the lane is then idle)."""
        queue = self.lanes.get(lane)
        return queue[0] if queue else None

    def commit_after(self, offset: int) -> int:
        """The offset to commit once `offset` is finished (not changing anything yet)."""
        for held in self._order:
            if held != offset and held not in self._finished:
                return held
        return self._next

    def finish(self, lane: Hashable) -> int:
        """The lane's head is finished (its outcome committed); returns the new commit point."""
        queue = self.lanes[lane]
        offset, _ = queue.popleft()
        if not queue:
            del self.lanes[lane]
        self._finished.add(offset)
        while self._order and self._order[0] in self._finished:
            self._finished.discard(self._order.popleft())
        return self._order[0] if self._order else self._next

    @property
    def committable(self) -> int | None:
        """Where the partition's committed offset should stand (None before anything is admitted)."""
        if self._next < 0:
            return None
        return self._order[0] if self._order else self._next
