"""Every event in exactly one place, decided from independent evidence.

The workers' own records (receipts, ready-file origins, dead-letter headers) say where each event
went; a bug that writes one event's row twice and drops another's would still agree with them. So
this matches what actually arrived to what was sent: each row of each file read back (from the
MESH sandbox, or a ready file's bytes) is matched to the event it came from by
UNIQUE_ID_URI + UNIQUE_ID, parsed here with the standard csv module rather than vaxflow's own
reader, and each record of the rejected topic by its bytes (the validator forwards the raw event).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from workers.base.settings import Settings

Identity = tuple[str, str]  # (UNIQUE_ID_URI, UNIQUE_ID)


def event_identity(payload: bytes) -> Identity | None:
    """The identity of a sent event (None when the payload has none, e.g. poison bytes)."""
    try:
        record = orjson.loads(payload)["record"]
        uri, uid = record["UNIQUE_ID_URI"], record["UNIQUE_ID"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return (uri, uid) if isinstance(uri, str) and isinstance(uid, str) else None


def file_row_identities(content: bytes) -> list[Identity]:
    """(UNIQUE_ID_URI, UNIQUE_ID) of every row of a batch file, in order, blank lines skipped.

    Either dialect the routes may use: `|` in UTF-8 (optionally with a BOM) or `¬` in cp1252.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1252")
    header_line = text.split("\n", 1)[0]
    delimiter = "|" if "|" in header_line else "¬"
    rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if row]
    assert rows, "a file without even a header line"
    header, body = rows[0], rows[1:]
    uri_at, uid_at = header.index("UNIQUE_ID_URI"), header.index("UNIQUE_ID")
    assert all(len(row) == len(header) for row in body), "a row whose width differs from the header's"
    return [(row[uri_at], row[uid_at]) for row in body]


@dataclass(frozen=True)
class Placement:
    """Which sent events (by index into the load) were found where."""

    in_files: frozenset[int]
    rejected: frozenset[int]
    dead_lettered: frozenset[int]
    file_count: int
    rows: int

    def summary(self) -> str:
        return (f"{len(self.in_files)} events in {self.rows} rows of {self.file_count} files, "
                f"{len(self.rejected)} rejected, {len(self.dead_lettered)} in dead-lettered files")


class SentLoad:
    """The events a test sent, indexed by identity and by bytes, for matching what came out."""

    def __init__(self, payloads: Sequence[bytes], invalid: Collection[int]) -> None:
        self.payloads = list(payloads)
        self.invalid = frozenset(invalid)
        self.valid = frozenset(range(len(self.payloads))) - self.invalid
        self.by_identity: dict[Identity, int] = {}
        for i in sorted(self.valid):
            identity = event_identity(self.payloads[i])
            assert identity is not None, f"valid event {i} has no UNIQUE_ID_URI/UNIQUE_ID"
            assert identity not in self.by_identity, f"events {self.by_identity[identity]} and {i} share {identity}"
            self.by_identity[identity] = i
        self.by_bytes: dict[bytes, int] = {}
        for i, payload in enumerate(self.payloads):
            assert payload not in self.by_bytes, f"events {self.by_bytes[payload]} and {i} are the same bytes"
            self.by_bytes[payload] = i

    def rows_of(self, files: Iterable[bytes]) -> list[int | None]:
        """The sent event of each row of these files (None: a row no sent valid event explains)."""
        return [self.by_identity.get(identity) for content in files for identity in file_row_identities(content)]

    def rejected_of(self, values: Iterable[bytes]) -> list[int | None]:
        return [self.by_bytes.get(value) for value in values]

    def placed(self, files: Iterable[bytes], rejected: Iterable[bytes]) -> set[int]:
        """Events found so far in these files or rejected records (for in-flight measurements)."""
        found = self.rows_of(files) + self.rejected_of(rejected)
        return {i for i in found if i is not None}

    def check(
        self,
        files: Mapping[str, bytes],
        rejected: Sequence[bytes],
        dead_files: Mapping[str, bytes] | None = None,
        *,
        where: str = "MESH",
    ) -> Placement:
        """Assert: every valid event's identity is in exactly one row of exactly one file of `files`
        or of `dead_files`; no row is unknown and none repeats; every invalid event is on the
        rejected topic exactly once and nothing else is; the three sets are disjoint and together
        are the whole load."""
        dead_files = dead_files or {}
        row_events: dict[str, list[int | None]] = {name: self.rows_of([data]) for name, data in files.items()}
        dead_events: dict[str, list[int | None]] = {name: self.rows_of([data]) for name, data in dead_files.items()}
        unknown = [name for name, events in row_events.items() if None in events]
        assert not unknown, f"{where} files with rows that match no sent valid event: {unknown[:5]}"
        unknown_dead = [name for name, events in dead_events.items() if None in events]
        assert not unknown_dead, f"dead-lettered files with rows that match no sent event: {unknown_dead[:5]}"
        counted = Counter(i for events in row_events.values() for i in events)
        twice = sorted(i for i, n in counted.items() if n > 1)
        assert not twice, f"{len(twice)} events are in more than one {where} row, e.g. {twice[:5]}"
        dead_counted = Counter(i for events in dead_events.values() for i in events)
        dead_twice = sorted(i for i, n in dead_counted.items() if n > 1)
        assert not dead_twice, f"{len(dead_twice)} events are in more than one dead-lettered row"
        rejected_events = self.rejected_of(rejected)
        assert None not in rejected_events, "a rejected record whose bytes match no sent event"
        rejected_counted = Counter(rejected_events)
        rejected_twice = sorted(i for i, n in rejected_counted.items() if n > 1)  # type: ignore[type-var]
        assert not rejected_twice, f"{len(rejected_twice)} events rejected more than once"
        in_files = frozenset(i for i in counted if i is not None)
        in_dead = frozenset(i for i in dead_counted if i is not None)
        in_rejected = frozenset(i for i in rejected_counted if i is not None)
        assert not in_files & in_rejected, f"{len(in_files & in_rejected)} events both in {where} and rejected"
        assert not in_files & in_dead, f"{len(in_files & in_dead)} events both in {where} and dead-lettered"
        assert not in_rejected & in_dead, f"{len(in_rejected & in_dead)} events both rejected and dead-lettered"
        missing = self.valid - in_files - in_dead
        assert not missing, f"{len(missing)} valid events are in no {where} file (lost), e.g. {sorted(missing)[:5]}"
        wrong, unrejected = in_rejected - self.invalid, self.invalid - in_rejected
        assert not wrong, f"{len(wrong)} valid events were rejected"
        assert not unrejected, f"{len(unrejected)} invalid events are not on the rejected topic"
        assert in_files | in_rejected | in_dead == frozenset(range(len(self.payloads)))
        return Placement(in_files, in_rejected, in_dead, len(files), sum(counted.values()))


def settle_seconds(settings: Settings) -> float:
    """Long enough for the batcher to close any window still open, and then some (at least 5 s)."""
    return max(5.0, settings.window_seconds + settings.grace_seconds + 5.0)


async def nothing_more_arrives(count: Callable[[], Awaitable[int]], seconds: float, what: str) -> int:
    """After the last expected output arrived: for `seconds`, while the workers still run, no more may."""
    before = await count()
    await asyncio.sleep(seconds)
    after = await count()
    assert after == before, f"{after - before} more {what} arrived in the {seconds:.0f} s after the last expected one"
    return after


@dataclass(frozen=True)
class Fault:
    """What was flowing when a fault (a kill, a rebalance, a broker restart) was injected."""

    what: str
    at: float  # seconds since the load started
    produced: int  # events on the raw topic at that instant
    in_flight: int  # of those, how many were not yet placed (read just after the fault: a lower bound)

    def __str__(self) -> str:
        return f"{self.what} {self.at:.1f}s produced={self.produced} in_flight={self.in_flight}"


def assert_mid_stream(faults: Sequence[Fault], total: int, *, still_producing: bool = True) -> None:
    """Each fault landed while events were flowing: some produced and not yet placed (and, when
    `still_producing`, the load not yet all produced)."""
    assert faults, "no fault was injected"
    for fault in faults:
        assert fault.in_flight > 0, f"nothing was in flight at {fault}"
        if still_producing:
            assert 0 < fault.produced < total, f"the load was not being produced at {fault}"
