"""The events a batcher partition has already taken, remembered compactly, so that a repeat
submission of one becomes a rejection instead of a second row at NHS England.

Why here, and not in the gateway or the validator: a provider's retry can reach vaxflow by any
source (a gateway re-post after a 503, a file handed in again, a Kafka producer's retry outside a
transaction), and can land in any raw partition. The valid topic is keyed by the batch key, which
the validator derives from the event itself, so every copy of one event lands in the same valid
partition, and one batcher owns it: the one place that sees them all in order.

An event's identity is the spec's UNIQUE_ID_URI + UNIQUE_ID + ACTION_FLAG; its content is the
canonical file row the validator wrote (decision 0011), so two submissions that NHS England would
read the same way have the same digest. What to do with a second sighting (`IdentityTable.judge`):

- the same valid-topic offset as the first: the same record read again (a restart re-reads from
  the committed offset, which may lie before records whose identities are already remembered) —
  taken, it is not a repeat;
- the same origin (raw-topic coordinates) as the first, at another valid offset: the same
  submission validated again, which only an operator's `vaxflow replay --resend` of the
  validator's group does — taken, it is a resend, not a repeat;
- same content: `duplicate.submission`, with the origin of the first;
- different content, ACTION_FLAG new: `conflict.new`, refused; it must neither replace the first
  silently nor be dropped silently;
- different content, update or delete: a later change to the record, taken, and remembered in
  place of the earlier one.

Memory (the issue asks for at most 64 bytes per identity): one flat array of four 64-bit words per
slot — identity hash, content digest, packed origin, packed (valid offset, hour seen) — in an open
addressing table kept between 55% and 75% full: 43 to 59 bytes per identity, and no
Python object per entry. The hashes are 64-bit BLAKE2b: two different identities share a hash with
probability about n^2 / 2^65 (3e-6 for ten million in one partition); when they do, the second is
at worst refused as a conflict, never sent twice. docs/benchmarks.md has the measured figures.
"""

from __future__ import annotations

import csv
import hashlib
import struct
from array import array
from dataclasses import dataclass
from typing import Final

from schemas.columns import COLUMNS
from schemas.pipeline import Origin

_URI: Final = COLUMNS.index("UNIQUE_ID_URI")
_ID: Final = COLUMNS.index("UNIQUE_ID")
_ACTION: Final = COLUMNS.index("ACTION_FLAG")
_WIDTH: Final = len(COLUMNS)
_SEP: Final = b'"|"'

EMPTY: Final = 0
GONE: Final = 1  # a slot whose identity expired: probing goes on past it, inserts may reuse it
_STRIDE: Final = 4
_MIN_SLOTS: Final = 1024
_MAX_LOAD: Final = 0.75
_REHASH_LOAD: Final = 0.55
_NO_ORIGIN: Final = (1 << 64) - 1
HOUR_BITS: Final = 24
_HOUR_MASK: Final = (1 << HOUR_BITS) - 1
# Hours are counted from 2020-01-01: 24 bits last until the year 3934.
_EPOCH_HOURS: Final = 438_288

DUPLICATE: Final = "duplicate.submission"
CONFLICT: Final = "conflict.new"

VALUE: Final = struct.Struct(">QQQ")


def identity_of(row: bytes) -> tuple[bytes, bytes, bytes]:
    """(UNIQUE_ID_URI, UNIQUE_ID, ACTION_FLAG) of a canonical row (every field quoted, `"` doubled)."""
    if row.count(b'"') == 2 * _WIDTH:  # no doubled quote: the separators are exactly the field bounds
        fields = row[1:-1].split(_SEP)
        return fields[_URI], fields[_ID], fields[_ACTION]
    values = next(csv.reader([row.decode("utf-8")], delimiter="|", quotechar='"'))
    return values[_URI].encode(), values[_ID].encode(), values[_ACTION].encode()


def identity_hash(row: bytes) -> tuple[int, bool]:
    """The identity's 64-bit hash (never EMPTY or GONE) and whether its ACTION_FLAG is new."""
    uri, unique_id, action = identity_of(row)
    digest = hashlib.blake2b(b"\x1f".join((uri, unique_id, action.lower())), digest_size=8).digest()
    key = int.from_bytes(digest, "big")
    return (key if key > GONE else key + 2), action.lower() == b"new"


def content_digest(row: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "big")


def pack_origin(origin: Origin) -> int:
    partition, offset = origin
    return _NO_ORIGIN if partition < 0 or offset < 0 else (partition << 48) | offset


def unpack_origin(packed: int) -> Origin:
    return (-1, -1) if packed == _NO_ORIGIN else (packed >> 48, packed & ((1 << 48) - 1))


def hour_of(timestamp_ms: int) -> int:
    return max(0, timestamp_ms // 3_600_000 - _EPOCH_HOURS) & _HOUR_MASK


def pack_seen(valid_offset: int, timestamp_ms: int) -> int:
    return (valid_offset << HOUR_BITS) | hour_of(timestamp_ms)


@dataclass(frozen=True, slots=True)
class Entry:
    """One remembered identity as it travels in the changelog (key: hash; value: the other three)."""

    key: int
    digest: int
    origin: int
    seen: int

    @property
    def valid_offset(self) -> int:
        return self.seen >> HOUR_BITS

    @property
    def hour(self) -> int:
        return self.seen & _HOUR_MASK

    def record(self) -> tuple[bytes, bytes]:
        return self.key.to_bytes(8, "big"), VALUE.pack(self.digest, self.origin, self.seen)

    @classmethod
    def from_record(cls, key: bytes, value: bytes) -> Entry:
        digest, origin, seen = VALUE.unpack(value)
        return cls(int.from_bytes(key, "big"), digest, origin, seen)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a row is not taken, and the origin of the submission it repeats."""

    rule: str
    first_origin: Origin


class IdentityTable:
    """The identities of one valid-topic partition (open addressing, linear probing)."""

    def __init__(self, expected: int = 0) -> None:
        self.live = 0
        self._used = 0  # live + GONE slots: what the probe lengths depend on
        self._slots = max(_MIN_SLOTS, int(expected / _REHASH_LOAD) + 1)
        self._table = array("Q", bytes(8 * _STRIDE * self._slots))
        self._sweep_at = 0

    def __len__(self) -> int:
        return self.live

    def nbytes(self) -> int:
        return self._table.buffer_info()[1] * self._table.itemsize

    def _find(self, key: int) -> tuple[int, int]:
        """(slot holding `key` or -1, first slot where it may be put)."""
        table, slots = self._table, self._slots
        i = key % slots
        free = -1
        while True:
            at = i * _STRIDE
            k = table[at]
            if k == key:
                return i, i
            if k == EMPTY:
                return -1, (i if free < 0 else free)
            if k == GONE and free < 0:
                free = i
            i += 1
            if i == slots:
                i = 0

    def get(self, key: int) -> Entry | None:
        found, _ = self._find(key)
        if found < 0:
            return None
        at = found * _STRIDE
        t = self._table
        return Entry(key, t[at + 1], t[at + 2], t[at + 3])

    def put(self, entry: Entry) -> None:
        self.put_words(entry.key, entry.digest, entry.origin, entry.seen)

    def put_words(self, key: int, digest: int, origin: int, seen: int) -> None:
        found, slot = self._find(key)
        at = slot * _STRIDE
        t = self._table
        if found < 0:
            if t[at] == EMPTY:
                self._used += 1
            self.live += 1
        t[at] = key
        t[at + 1] = digest
        t[at + 2] = origin
        t[at + 3] = seen
        if self._used > self._slots * _MAX_LOAD:
            self._rehash()

    def discard(self, key: int) -> None:
        found, _ = self._find(key)
        if found >= 0:
            self._table[found * _STRIDE] = GONE
            self.live -= 1

    def entries(self) -> list[Entry]:
        t = self._table
        return [
            Entry(t[at], t[at + 1], t[at + 2], t[at + 3])
            for at in range(0, len(t), _STRIDE)
            if t[at] > GONE
        ]

    def _rehash(self) -> None:
        """A table sized for the live identities alone (half full), without the expired slots."""
        old = self._table
        self._slots = max(_MIN_SLOTS, int(self.live / _REHASH_LOAD) + 1)
        self._table = array("Q", bytes(8 * _STRIDE * self._slots))
        self.live = self._used = 0
        self._sweep_at = 0
        for at in range(0, len(old), _STRIDE):
            if old[at] > GONE:
                self.put_words(old[at], old[at + 1], old[at + 2], old[at + 3])

    def shrink(self) -> None:
        """Give back room taken by a generous first guess (the restore sizes for the log's length)."""
        if self._slots > _MIN_SLOTS and self.live < self._slots * _REHASH_LOAD * 0.8:
            self._rehash()

    def judge(
        self, row: bytes, *, valid_offset: int, origin: Origin, timestamp_ms: int, extended: bytes = b""
    ) -> tuple[Refusal | None, Entry | None]:
        """Whether `row` may be taken, and the entry to remember (and write to the changelog) if so.

        (None, None): taken, nothing new to remember (the same record read again). `extended`, the
        event's extended-attribute rows, is part of its content: a NEW sent again with other
        attributes is a conflict, not a repeat whose attributes would be lost. An event without
        them has the digest it had before contract version 2, so remembered identities stay valid.
        """
        key, is_new = identity_hash(row)
        digest = content_digest(row + b"\n" + extended if extended else row)
        known = self.get(key)
        if known is not None:
            if known.valid_offset == valid_offset:
                return None, None
            if known.origin != _NO_ORIGIN and known.origin == pack_origin(origin):
                # The same raw record validated again (`vaxflow replay --resend` of the
                # validator's group): the same submission, deliberately processed once more.
                entry = Entry(key, digest, known.origin, pack_seen(valid_offset, timestamp_ms))
                self.put(entry)
                return None, entry
            if known.digest == digest:
                return Refusal(DUPLICATE, unpack_origin(known.origin)), None
            if is_new:
                return Refusal(CONFLICT, unpack_origin(known.origin)), None
        entry = Entry(key, digest, pack_origin(origin), pack_seen(valid_offset, timestamp_ms))
        self.put(entry)
        return None, entry

    def expire(self, before_ms: int, *, budget: int) -> int:
        """Forget identities first seen before `before_ms`, looking at up to `budget` slots from
        where the last call stopped (so a big table is swept a little at a time, never in one
        long pause of the event loop); returns how many were forgotten."""
        limit = hour_of(before_ms)
        t, slots = self._table, self._slots
        forgotten = 0
        i = self._sweep_at
        for _ in range(min(budget, slots)):
            at = i * _STRIDE
            if t[at] > GONE and (t[at + 3] & _HOUR_MASK) < limit:
                t[at] = GONE
                self.live -= 1
                forgotten += 1
            i += 1
            if i == slots:
                i = 0
        self._sweep_at = i
        return forgotten
