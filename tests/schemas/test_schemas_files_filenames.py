"""File names: the receiver's verdict on every name in reference-outcomes.md, and our builder."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.filenames import (
    FileNameError,
    batch_file_name,
    name_timestamp,
    parse_batch_file_name,
    part_file_name,
    window_slot,
)
from schemas.permissions import default_permissions

DATA = Path(__file__).parent / "data"
VACCINE_TYPES = default_permissions().vaccine_types
ODS_TO_SUPPLIER = default_permissions().suppliers
_ROW = re.compile(r"(?P<name>\S+)\s+(?:OK \('(?P<type>[^']+)', '(?P<supplier>[^']+)'\)|FAIL (?P<message>.+))")


def _reference_rows() -> list[tuple[str, str | None, str | None, str | None]]:
    rows = []
    for line in (DATA / "reference_file_names.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            match = _ROW.fullmatch(line.strip())
            assert match, line
            rows.append((match["name"], match["type"], match["supplier"], match["message"]))
    return rows


REFERENCE = _reference_rows()


def test_reference_rows_are_all_loaded() -> None:
    assert len(REFERENCE) == 16


@pytest.mark.parametrize(("name", "vaccine_type", "supplier", "message"), REFERENCE, ids=[r[0] for r in REFERENCE])
def test_receiver_verdict(name: str, vaccine_type: str | None, supplier: str | None, message: str | None) -> None:
    if message is None:
        parsed = parse_batch_file_name(name, vaccine_types=VACCINE_TYPES, ods_codes=ODS_TO_SUPPLIER.keys())
        assert parsed.vaccine_type == vaccine_type
        assert ODS_TO_SUPPLIER[parsed.ods_code] == supplier
    else:
        with pytest.raises(FileNameError) as caught:
            parse_batch_file_name(name, vaccine_types=VACCINE_TYPES, ods_codes=ODS_TO_SUPPLIER.keys())
        assert caught.value.message == message


def test_ods_check_is_optional_and_types_default_to_the_packaged_mapping() -> None:
    assert parse_batch_file_name("RSV_Vaccinations_v5_ABCDE_20240708T12130100.csv").ods_code == "ABCDE"
    with pytest.raises(FileNameError, match="COVID19"):
        parse_batch_file_name("COVID19_Vaccinations_v5_YGA_20240708T12130100.csv")


def test_parsed_fields() -> None:
    parsed = parse_batch_file_name(
        "rsv_vaccinations_v5_x8e5b_20241027t01300001_extra_more.dat", vaccine_types=VACCINE_TYPES
    )
    assert parsed.timestamp == "20241027T01300001"
    assert parsed.instant == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    assert parsed.extension == "DAT"
    assert parsed.extra == ("EXTRA", "MORE")


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("archive/RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv", "bucket root"),
        ("RSV_Vaccination_v5_X8E5B_20240708T12130100.csv", "Vaccinations"),
        ("RSV_Vaccinations_v5_X8E5B_20240708T25130100.csv", "timestamp"),
        ("RSV_Vaccinations_v5_X8E5B_20240708X12130100.csv", "timestamp"),
        ("RSV_Vaccinations_v5_X8E5B_20240708T12130100.xlsx", "extension"),
        # split on the last '.', so '.csv' becomes part of the timestamp, which then fails
        ("RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv.gz", "timestamp"),
    ],
)
def test_detail_names_the_failed_check(name: str, detail: str) -> None:
    with pytest.raises(FileNameError, match=detail):
        parse_batch_file_name(name, vaccine_types=VACCINE_TYPES)


def test_timestamp_rule_is_the_receivers_strptime() -> None:
    # strptime accepts a space-padded day; so does the receiver, so must we (we never write one).
    parsed = parse_batch_file_name("RSV_Vaccinations_v5_X8E5B_202407 8T12130100.csv", vaccine_types=VACCINE_TYPES)
    assert parsed.instant.day == 8


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (datetime(2024, 7, 8, 11, 13, 1, 999_999, tzinfo=UTC), "20240708T12130101"),
        (datetime(2024, 1, 8, 12, 13, 1, tzinfo=UTC), "20240108T12130100"),
        # The October change: 01:30 happens twice in London, first in BST then in GMT.
        (datetime(2024, 10, 27, 0, 30, tzinfo=UTC), "20241027T01300001"),
        (datetime(2024, 10, 27, 1, 30, tzinfo=UTC), "20241027T01300000"),
        # The March change: 01:00 GMT is followed by 02:00 BST.
        (datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC), "20240331T00595900"),
        (datetime(2024, 3, 31, 1, 0, 0, tzinfo=UTC), "20240331T02000001"),
    ],
)
def test_name_timestamp_is_london_wall_time_with_zone_suffix(instant: datetime, expected: str) -> None:
    assert name_timestamp(instant) == expected


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        name_timestamp(datetime(2024, 7, 8, 12))


def test_batch_file_name_round_trips_through_the_receivers_check() -> None:
    name = batch_file_name("Flu", "ygm41", datetime(2024, 7, 8, 11, 13, 1, tzinfo=UTC))
    assert name == "FLU_Vaccinations_v5_YGM41_20240708T12130101.csv"
    parsed = parse_batch_file_name(name, vaccine_types=VACCINE_TYPES, ods_codes=ODS_TO_SUPPLIER.keys())
    assert parsed.instant == datetime(2024, 7, 8, 11, 13, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("vaccine_type", "ods", "ext", "message"),
    [
        ("FLU_X", "YGM41", "csv", "letters and digits"),
        ("FLU", "YG.1", "csv", "letters and digits"),
        ("FLU", "YGM41", "txt", "extension"),
    ],
)
def test_builder_refuses_what_the_receiver_would(vaccine_type: str, ods: str, ext: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        batch_file_name(vaccine_type, ods, datetime(2024, 7, 8, tzinfo=UTC), ext)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)))
def test_every_instant_gives_a_name_the_receiver_accepts_and_maps_back(instant: datetime) -> None:
    name = batch_file_name("RSV", "X8E5B", instant)
    parsed = parse_batch_file_name(name, vaccine_types=VACCINE_TYPES)
    assert parsed.instant == instant.replace(microsecond=0)


HOUR = timedelta(hours=1)


def test_parts_of_a_window_are_consecutive_seconds_from_its_start() -> None:
    start = datetime(2024, 7, 8, 11, tzinfo=UTC)
    names = [part_file_name("RSV", "X8E5B", start, HOUR, part) for part in range(3)]
    assert names == [
        "RSV_Vaccinations_v5_X8E5B_20240708T12000001.csv",
        "RSV_Vaccinations_v5_X8E5B_20240708T12000101.csv",
        "RSV_Vaccinations_v5_X8E5B_20240708T12000201.csv",
    ]


def test_a_window_has_at_most_one_part_per_second() -> None:
    start = datetime(2024, 7, 8, 11, tzinfo=UTC)
    assert window_slot(start, HOUR, 3599) == start + timedelta(seconds=3599)
    with pytest.raises(ValueError, match="3600-second window"):
        window_slot(start, HOUR, 3600)
    with pytest.raises(ValueError, match="does not fit"):
        window_slot(start, HOUR, -1)


@pytest.mark.parametrize("length", [timedelta(milliseconds=500), timedelta(seconds=1.5), timedelta(0)])
def test_windows_must_be_whole_seconds(length: timedelta) -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        window_slot(datetime(2024, 7, 8, tzinfo=UTC), length, 0)


def test_window_start_must_be_on_a_second() -> None:
    with pytest.raises(ValueError, match="whole second"):
        window_slot(datetime(2024, 7, 8, 0, 0, 0, 1, tzinfo=UTC), HOUR, 0)


@given(
    st.integers(min_value=1, max_value=7200),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 7199)), min_size=2, max_size=40),
)
def test_names_are_unique_across_windows_and_parts_even_over_the_october_change(
    length_s: int, slots: list[tuple[int, int]]
) -> None:
    length = timedelta(seconds=length_s)
    origin = datetime(2024, 10, 27, 0, 0, tzinfo=UTC)  # covers both 01:xx hours of the change
    seen: dict[str, tuple[int, int]] = {}
    for window, part in set(slots):
        if part >= length_s:
            continue
        name = part_file_name("FLU", "YGM41", origin + window * length, length, part)
        assert seen.setdefault(name, (window, part)) == (window, part)
