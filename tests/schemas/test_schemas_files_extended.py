"""Extended-attribute files: names as the receiver checks them, rows, writer and reader."""

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.extended import EXTENDED_ROW as ROW

from schemas.delimited import TableError
from schemas.dialect import NOT_SIGN
from schemas.extended import (
    EXTENDED_COLUMNS,
    ExtendedAttribute,
    extended_file_name,
    is_extended_file_name,
    parse_extended_file_name,
    read_extended,
    render_extended,
    validate_extended,
)
from schemas.filenames import FileNameError
from schemas.record import Reason

NOW = datetime(2025, 7, 30, 12, tzinfo=UTC)


def test_name_builder_and_receiver_check_agree() -> None:
    name = extended_file_name("x8e5b", datetime(2024, 7, 8, 11, 13, 1, tzinfo=UTC))
    assert name == "Vaccination_Extended_Attributes_v1_5_X8E5B_20240708T12130101.csv"
    assert is_extended_file_name(name)
    parsed = parse_extended_file_name(name, ods_codes={"X8E5B"})
    assert (parsed.vaccine_type, parsed.ods_code, parsed.extension) == ("COVID", "X8E5B", "CSV")
    assert parsed.instant == datetime(2024, 7, 8, 11, 13, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "name",
    [
        "Vaccination_Extended_Attributes_v1_5_X8E5B_20000101T00000001.csv",  # the repo's example
        "VACCINATION_EXTENDED_ATTRIBUTES_V1_5_X8E5B_20000101T00000001.DAT",
        "Vaccination_Extended_Attributes_v1_5_X8E5B_20000101T00000001.ctl",
        "Vaccination_Extended_Attributes_v1_5_X8E5B_20000101T00000001_extra.csv",
    ],
)
def test_accepted_names(name: str) -> None:
    assert parse_extended_file_name(name).ods_code == "X8E5B"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("Vaccination_Extended_Attributes_v1_X8E5B_20000101T00000001.csv", "file key format"),
        ("Vaccination_Extended_Attributes_v2_5_X8E5B_20000101T00000001.csv", "version"),
        ("Vaccination_Extended_Attributes_v1_5_ABCDE_20000101T00000001.csv", "ODS"),
        ("Vaccination_Extended_Attributes_v1_5_X8E5B_20000101T00000002.csv", "timestamp"),
        ("Vaccination_Extended_Attributes_v1_5_X8E5B_20000101T00000001.txt", "extension"),
        ("Vaccination_Extended_Attributes_v1_5_X8E5B_20000101T00000001", "missing file extension"),
        ("Vaccinations_Extended_Attributes_v1_5_X8E5B_20000101T00000001.csv", "must start"),
    ],
)
def test_refused_names(name: str, text: str) -> None:
    with pytest.raises(FileNameError, match=text):
        parse_extended_file_name(name, ods_codes={"X8E5B"})


def test_batch_names_are_not_extended_names() -> None:
    assert not is_extended_file_name("COVID_Vaccinations_v5_YGA_20240708T12130100.csv")
    assert not is_extended_file_name("vaccination_extended_attributes_v1_5_X8E5B_20000101T00000001.csv")


def test_valid_row_is_canonicalised() -> None:
    row = {**{name: getattr(ROW, name) for name in EXTENDED_COLUMNS}, "ACTION_FLAG": "update"}
    row["RECORDED_DATE"] = "2025-07-30"
    assert validate_extended(row, now=NOW) == ExtendedAttribute(
        **{**row, "ACTION_FLAG": "UPDATE", "RECORDED_DATE": "20250730"}
    )


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("VACCINATION_UNIQUE_ID", "", "VACCINATION_UNIQUE_ID.mandatory"),
        ("VACCINATION_UNIQUE_ID_URI", "  ", "VACCINATION_UNIQUE_ID_URI.mandatory"),
        ("ATTRIBUTE_ID", "", "ATTRIBUTE_ID.mandatory"),
        ("ACTION_FLAG", "create", "ACTION_FLAG.format"),
        ("ACTION_FLAG", "", "ACTION_FLAG.format"),
        ("RECORDED_DATE", "20250230", "RECORDED_DATE.format"),
        ("RECORDED_DATE", "20250731", "RECORDED_DATE.future"),
        ("RECORDED_DATE", "", "RECORDED_DATE.format"),
        ("ATTRIBUTE_VALUE", "a\nb", "ATTRIBUTE_VALUE.control_char"),
        ("ATTRIBUTE_DISPLAYED_TEXT", "tab\there", "ATTRIBUTE_DISPLAYED_TEXT.control_char"),
    ],
)
def test_row_rules(field: str, value: str, rule: str) -> None:
    row = {name: getattr(ROW, name) for name in EXTENDED_COLUMNS}
    outcome = validate_extended({**row, field: value}, now=NOW)
    assert isinstance(outcome, list)
    assert [reason.rule for reason in outcome] == [rule]
    assert all(value not in reason.message for reason in outcome if value.strip())


def test_every_failing_field_gets_a_reason() -> None:
    outcome = validate_extended({}, now=NOW)
    assert isinstance(outcome, list)
    assert {reason.field for reason in outcome} == {
        "VACCINATION_UNIQUE_ID",
        "VACCINATION_UNIQUE_ID_URI",
        "ATTRIBUTE_ID",
        "ACTION_FLAG",
        "RECORDED_DATE",
    }


def test_file_round_trip_and_exact_header() -> None:
    data = render_extended([ROW, ROW])
    assert data.startswith(b'"VACCINATION_UNIQUE_ID"|"VACCINATION_UNIQUE_ID_URI"|"ACTION_FLAG"|')
    rows = read_extended(data, now=NOW)
    assert [(row.number, row.attribute) for row in rows] == [(1, ROW), (2, ROW)]


def test_reader_reports_bad_rows_and_refuses_wrong_headers() -> None:
    data = render_extended([ROW]) + b'"only"|"three"|"fields"\r\n'
    bad = read_extended(data, now=NOW)[1]
    assert bad.attribute is None
    assert bad.reasons == (Reason(field="row", rule="row.columns", message="row has 3 fields, expected 7"),)
    with pytest.raises(TableError, match="header"):
        read_extended(b"VACCINATION_UNIQUE_ID|ACTION_FLAG\n", now=NOW)


_FREE_TEXT = st.text(st.characters(codec="cp1252", exclude_categories=["Cc"]), max_size=20)


@given(_FREE_TEXT, _FREE_TEXT)
def test_round_trip_free_text_in_the_not_sign_dialect(text: str, value: str) -> None:
    row = ExtendedAttribute(
        **{**msgspec.structs.asdict(ROW), "ATTRIBUTE_DISPLAYED_TEXT": text, "ATTRIBUTE_VALUE": value}
    )
    (read,) = read_extended(render_extended([row], NOT_SIGN), now=NOW, dialect=NOT_SIGN)
    assert read.attribute == row
