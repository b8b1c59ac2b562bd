"""Canonical dates and date-times, especially around the clock changes in Europe/London."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.dates import Clock, canonical_date, canonical_datetime, london_timestamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20190131", "20190131"),
        ("2019-01-31", "20190131"),
        ("20240229", "20240229"),
        ("19000101", "19000101"),
        ("20230229", None),
        ("20240230", None),
        ("2024-0230", None),
        ("202402-30", None),
        ("00000101", None),
        ("2019-1-31", None),
        ("20190131T000000", None),
        ("２０１９０１３１", None),
    ],
)
def test_canonical_date(value: str, expected: str | None) -> None:
    assert canonical_date(value) == expected


# 2024: BST began Sunday 31 March at 01:00 UTC and ended Sunday 27 October at 01:00 UTC.
# 2026: Sunday 29 March and Sunday 25 October.
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # spring forward: last GMT second, first BST second
        ("20240331T00595900", "20240331T00595900"),
        ("20240331T01000000", "20240331T02000001"),
        ("20240331T005959", "20240331T00595900"),
        ("20240331T010000", "20240331T02000001"),
        # London wall 01:30 never existed that day; as a UTC instant it is 02:30 BST
        ("20240331T01300000", "20240331T02300001"),
        ("20240331T02300001", "20240331T02300001"),
        # fall back: 01:00-02:00 wall time happens twice; the suffix tells them apart
        ("20241027T00300000", "20241027T01300001"),
        ("20241027T01300001", "20241027T01300001"),
        ("20241027T01300000", "20241027T01300000"),
        ("20241027T00595900", "20241027T01595901"),
        ("20241027T01000000", "20241027T01000000"),
        ("20260329T01000000", "20260329T02000001"),
        ("20261025T00595900", "20261025T01595901"),
        ("20261025T01000000", "20261025T01000000"),
        # a wrong-looking suffix is still an instant: 10:00 at +01:00 in January is 09:00 GMT
        ("20240115T10000001", "20240115T09000000"),
        ("20240115T00300001", "20240114T23300000"),
        ("20240701T12000000", "20240701T13000001"),
        # ISO forms, any explicit offset
        ("2024-06-10T18:33:25+00:00", "20240610T19332501"),
        ("2024-06-10T18:33:25Z", "20240610T19332501"),
        ("2024-06-10T18:33:25+01:00", "20240610T18332501"),
        ("2024-06-10T18:33:25+05:30", "20240610T14032501"),
        ("2024-01-10T18:33:25-08:00", "20240111T02332500"),
        ("2024-12-31T23:30:00-01:00", "20250101T00300000"),
    ],
)
def test_canonical_datetime(value: str, expected: str) -> None:
    result = canonical_datetime(value)
    assert isinstance(result, tuple), result
    assert result[0] == expected
    assert canonical_datetime(expected) == result, "canonical output is a fixed point"


@pytest.mark.parametrize(
    "value",
    [
        "20240610T18332502",
        "20240610",
        "20240610T183325.000",
        "2024-06-10T18:33:25",
        "2024-06-10T18:33:25.1234567Z",  # the receiver's strptime %f takes at most six digits
        "2024-06-10T18:33:25.Z",
        "2024-06-10T18:33:25+000",
        "2024-06-10",
        "20240230T120000",
        "20240610T246000",
        "20240610T240000",
        "20240610T186025",
        "20240610T183360",
        "2024-06-10T18:33:25+24:00",
        "2024-06-10T18:33:25+01:60",
        "2024-06-10t18:33:25Z",
        "00010101T00000001",
    ],
)
def test_bad_datetimes_are_format_errors(value: str) -> None:
    assert canonical_datetime(value) == "format"


def test_instants_london_cannot_label_are_refused() -> None:
    assert canonical_datetime("19440601T12000000") == "offset"  # double summer time, +02:00


def test_epoch_is_the_instant() -> None:
    result = canonical_datetime("20240610T18332501")
    assert isinstance(result, tuple)
    assert result[1] == datetime(2024, 6, 10, 17, 33, 25, tzinfo=UTC).timestamp()


def test_every_minute_across_both_2025_changes_round_trips() -> None:
    for start in (datetime(2025, 3, 30, 0, tzinfo=UTC), datetime(2025, 10, 26, 0, tzinfo=UTC)):
        for minute in range(0, 180):
            instant = start + timedelta(minutes=minute)
            spelled = london_timestamp(instant)
            result = canonical_datetime(spelled)
            assert isinstance(result, tuple)
            assert result == (spelled, instant.timestamp())
            utc_spelling = instant.strftime("%Y%m%dT%H%M%S")
            assert canonical_datetime(utc_spelling) == result


def test_london_timestamp_treats_naive_as_utc() -> None:
    assert london_timestamp(datetime(2024, 7, 1, 12)) == "20240701T13000001"
    assert london_timestamp(datetime(2024, 7, 1, 12, tzinfo=timezone(timedelta(hours=1)))) == "20240701T12000001"


def test_clock_uses_london_date() -> None:
    # 23:30 UTC on 30 June is 00:30 on 1 July in London
    assert Clock(datetime(2024, 6, 30, 23, 30, tzinfo=UTC)).today == "20240701"
    assert Clock(datetime(2024, 12, 31, 23, 30, tzinfo=UTC)).today == "20241231"
    assert Clock(datetime(2024, 12, 31, 23, 30)).today == "20241231"  # naive means UTC
    # the cached day must not leak into another day
    assert Clock(datetime(2024, 7, 1, 0, 30, tzinfo=UTC)).today == "20240701"
    assert Clock(datetime(2024, 6, 30, 22, 59, 59, tzinfo=UTC)).today == "20240630"
    assert Clock(datetime(2024, 6, 30, 23, 0, tzinfo=UTC)).today == "20240701"


def test_an_offset_of_59_minutes_is_accepted_and_60_is_not() -> None:
    five_59 = timezone(timedelta(hours=5, minutes=59))
    assert canonical_datetime("2024-06-30T12:00:00+05:59") == (
        "20240630T07010001", datetime(2024, 6, 30, 12, 0, tzinfo=five_59).timestamp()
    )
    assert canonical_datetime("2024-06-30T12:00:00+05:60") == "format"


def test_an_aware_now_keeps_its_own_zone() -> None:
    # 00:30 at +02:00 is 22:30 UTC the day before, 23:30 in London (BST): still 30 June
    clock = Clock(datetime(2024, 7, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))))
    assert clock.epoch == datetime(2024, 6, 30, 22, 30, tzinfo=UTC).timestamp()
    assert clock.today == "20240630"


def test_the_default_clock_is_now() -> None:
    before = time.time()
    clock = Clock()
    after = time.time()
    assert before <= clock.epoch <= after
    # London's date at that instant (unless midnight passed in between, when either is right)
    days = {Clock(datetime.fromtimestamp(t, UTC)).today for t in (before, after)}
    assert clock.today in days
