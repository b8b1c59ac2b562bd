"""The batcher's remembered identities: what counts as the same event, a repeat, a conflict or a
later change, and that the table stays within its memory budget while it grows and forgets."""

from __future__ import annotations

import random

import msgspec
import pytest

from schemas.batchfile import render_row
from schemas.record import Record
from workers.batcher.identities import (
    CONFLICT,
    DUPLICATE,
    Entry,
    IdentityTable,
    identity_hash,
    identity_of,
    pack_origin,
    unpack_origin,
)

HOUR_MS = 3_600_000
NOW_MS = 1_780_000_000_000


def row(unique_id: str = "A1", action: str = "new", **fields: str) -> bytes:
    return render_row(Record(UNIQUE_ID=unique_id, UNIQUE_ID_URI="https://supplier.example/ids", ACTION_FLAG=action,
                             **fields))


def judge(table: IdentityTable, data: bytes, offset: int, origin: tuple[int, int] | None = None, ts: int = NOW_MS):
    """Each valid offset its own submission (raw offset = valid offset) unless `origin` says otherwise."""
    return table.judge(data, valid_offset=offset, origin=origin or (0, offset), timestamp_ms=ts)


def test_identity_is_read_from_the_row_even_when_a_value_holds_quotes_and_the_separator() -> None:
    plain = row("A1")
    quoted = row('A"|"1', PERSON_FORENAME='x"|"y')
    assert identity_of(plain) == (b"https://supplier.example/ids", b"A1", b"new")
    assert identity_of(quoted) == (b"https://supplier.example/ids", b'A"|"1', b"new")
    assert identity_hash(plain) != identity_hash(quoted)
    assert identity_hash(row(action="NEW"))[0] == identity_hash(row(action="new"))[0]


def test_first_sighting_is_taken_and_remembered_with_its_origin() -> None:
    table = IdentityTable()
    refusal, entry = judge(table, row(), offset=5, origin=(2, 99))
    assert refusal is None
    assert entry is not None
    assert (entry.valid_offset, unpack_origin(entry.origin)) == (5, (2, 99))
    assert len(table) == 1


def test_the_same_record_read_again_after_a_restart_is_not_a_repeat() -> None:
    table = IdentityTable()
    judge(table, row(), offset=5)
    assert judge(table, row(), offset=5) == (None, None)


def test_the_same_submission_validated_again_is_a_resend_not_a_repeat() -> None:
    """`vaxflow replay --resend` of the validator: the same raw record, a new valid offset."""
    table = IdentityTable()
    judge(table, row(), offset=5, origin=(2, 99))
    refusal, entry = judge(table, row(), offset=9, origin=(2, 99))
    assert refusal is None
    assert entry is not None
    assert entry.valid_offset == 9
    refusal, _ = judge(table, row(), offset=12, origin=(3, 99))
    assert refusal is not None
    assert refusal.first_origin == (2, 99)


def test_an_exact_repeat_is_a_duplicate_naming_the_first_origin() -> None:
    table = IdentityTable()
    judge(table, row(), offset=5, origin=(2, 99))
    refusal, entry = judge(table, row(), offset=9, origin=(4, 7))
    assert refusal is not None
    assert entry is None
    assert (refusal.rule, refusal.first_origin) == (DUPLICATE, (2, 99))


def test_a_new_repeated_with_other_content_is_a_conflict_and_the_first_stays() -> None:
    table = IdentityTable()
    judge(table, row(PERSON_POSTCODE="LS1 4AP"), offset=5, origin=(1, 1))
    refusal, _ = judge(table, row(PERSON_POSTCODE="LS2 4AP"), offset=6, origin=(1, 2))
    assert refusal is not None
    assert refusal.rule == CONFLICT
    assert refusal.first_origin == (1, 1)
    # the first is still what is remembered: its exact repeat is a duplicate, not a conflict
    again, _ = judge(table, row(PERSON_POSTCODE="LS1 4AP"), offset=7)
    assert again is not None
    assert again.rule == DUPLICATE


@pytest.mark.parametrize("action", ["update", "delete"])
def test_a_later_change_is_taken_and_replaces_what_is_remembered(action: str) -> None:
    table = IdentityTable()
    judge(table, row(action=action, DOSE_AMOUNT="0.5"), offset=1, origin=(0, 1))
    refusal, entry = judge(table, row(action=action, DOSE_AMOUNT="0.3"), offset=2, origin=(0, 2))
    assert refusal is None
    assert entry is not None
    repeat, _ = judge(table, row(action=action, DOSE_AMOUNT="0.3"), offset=3)
    assert repeat is not None
    assert repeat.rule == DUPLICATE
    assert repeat.first_origin == (0, 2)


def test_new_update_and_delete_of_one_record_are_three_identities() -> None:
    table = IdentityTable()
    for offset, action in enumerate(["new", "update", "delete"]):
        assert judge(table, row(action=action), offset=offset)[0] is None
    assert len(table) == 3


def test_identities_older_than_the_horizon_are_forgotten_a_slice_at_a_time() -> None:
    table = IdentityTable()
    judge(table, row("old"), offset=1, ts=NOW_MS - 40 * 24 * HOUR_MS)
    judge(table, row("recent"), offset=2, ts=NOW_MS - HOUR_MS)
    cutoff = NOW_MS - 35 * 24 * HOUR_MS
    forgotten = sum(table.expire(cutoff, budget=100) for _ in range(20))  # 2,000 slots: the whole table
    assert forgotten == 1
    assert len(table) == 1
    assert judge(table, row("old"), offset=3)[0] is None  # forgotten: taken again
    assert judge(table, row("recent"), offset=4)[0] is not None


def test_growth_keeps_every_identity_and_stays_within_64_bytes_each() -> None:
    rng = random.Random(7)
    table = IdentityTable()
    keys = [rng.getrandbits(64) | 2 for _ in range(50_000)]
    for i, key in enumerate(keys):
        table.put(Entry(key, i, pack_origin((0, i)), i))
        assert table.nbytes() / len(table) <= 64 or len(table) < 1024  # the first 1,024 slots are a floor
    assert all(table.get(key) is not None for key in keys)
    assert table.get(keys[10]) == Entry(keys[10], 10, pack_origin((0, 10)), 10)


def test_expired_slots_are_reused_and_dropped_on_the_next_rehash() -> None:
    table = IdentityTable()
    for i in range(600):
        table.put(Entry(1000 + i, 0, 0, 0))  # hour 0: long expired
    table.expire(NOW_MS, budget=10_000)
    assert len(table) == 0
    for i in range(2000):
        table.put(Entry(5000 + i, 0, 0, 10**6))
    assert len(table) == 2000
    assert all(table.get(5000 + i) for i in range(2000))
    assert table.nbytes() / len(table) <= 64


def test_a_changelog_record_reads_back_as_the_entry_it_came_from() -> None:
    entry = Entry(2**63 + 5, 2**64 - 1, pack_origin((3, 2**40)), 12345)
    assert Entry.from_record(*entry.record()) == entry
    assert unpack_origin(pack_origin((-1, -1))) == (-1, -1)


def test_the_row_is_judged_on_its_canonical_bytes() -> None:
    # the valid topic holds canonical rows (decision 0011), so equal content means equal bytes
    first = msgspec.json.encode(row())
    assert first == msgspec.json.encode(row())
