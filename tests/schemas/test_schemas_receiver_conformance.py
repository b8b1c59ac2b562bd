"""Issue 18: rows vaxflow accepted that NHS England's receiver rejects, and the reverse.

Each class is checked three ways: `validate_event` (Python rules), `validate_event_row` with the
compiled fast path on (it must accept only what Python accepts, with the same row) and
`vaxflow check-file` on a file holding the row under the spec's name. What the receiver does is
read from its code (NHSDigital/immunisation-fhir-api, lambdas/recordprocessor and
lambdas/shared): it rewrites YYYYMMDD with strftime, matches FHIR `code` with Python's re, reads
DOSE_SEQUENCE with int() and DOSE_AMOUNT with int() then Decimal().
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from support.rows import sample_row

from schemas.batchfile import render_file
from schemas.checkfile import main as check_file
from schemas.columns import COLUMNS
from schemas.dates import Clock
from schemas.event import ValidEvent
from schemas.fastpath import FAST_ROWS
from schemas.filenames import batch_file_name
from schemas.permissions import default_permissions
from schemas.record import Reason, Record
from schemas.validate import validate_event, validate_event_row

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
P = default_permissions()



def raw_event(**record: str) -> bytes:
    return msgspec.json.encode(
        {
            "vaccine_type": "RSV",
            "sender_ods": "X8E5B",
            "source_system": "unit-test",
            "record": {**sample_row(), **record},
        }
    )


def python(**record: str) -> ValidEvent | list[Reason]:
    return validate_event(raw_event(**record), permissions=P, now=NOW)


def fast_path_agrees(**record: str) -> bool:
    """validate_event_row gives the same answer with the compiled fast path on and off, and the fast
    path itself never takes a row Python refuses."""
    raw = raw_event(**record)
    native = validate_event_row(raw, permissions=P, now=NOW, native=True)
    plain = validate_event_row(raw, permissions=P, now=NOW, native=False)
    assert FAST_ROWS is not None, "vaxflow_fastrow is not installed: run ./scripts/setup"
    clock = Clock(NOW)
    taken = FAST_ROWS.row(raw, clock.epoch, clock.today)
    if isinstance(plain, list):
        assert taken is None, "the fast path took a row Python refuses"
    else:
        assert taken is None or taken[4] == plain[2]
    return native == plain


def refused(field: str, rule: str, **record: str) -> None:
    result = python(**record)
    assert isinstance(result, list), result
    assert [r.rule for r in result] == [f"{field}.{rule}"]
    native = validate_event_row(raw_event(**record), permissions=P, now=NOW, native=True)
    assert isinstance(native, list)
    assert [r.rule for r in native] == [f"{field}.{rule}"]
    assert fast_path_agrees(**record)


def accepted_as(field: str, emitted: str, **record: str) -> None:
    result = python(**record)
    assert isinstance(result, ValidEvent), result
    assert getattr(result.record, field) == emitted
    native = validate_event_row(raw_event(**record), permissions=P, now=NOW, native=True)
    assert isinstance(native, tuple), native
    assert f'"{emitted}"'.encode() in native[2].split(b"|")
    assert fast_path_agrees(**record)


def file_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], **record: str) -> tuple[int, list[str]]:
    """check-file on a one-row file holding the sample row with `record`'s values, written as is."""
    row = {**{c: "" for c in COLUMNS}, **sample_row(), **record}
    name = batch_file_name("RSV", "X8E5B", datetime(2026, 11, 25, 11, tzinfo=UTC))
    path = tmp_path / name
    path.write_bytes(render_file([Record(**row)]))
    code = check_file([str(path)], now=NOW)
    return code, capsys.readouterr().out.splitlines()


# --- 1. vaxflow accepted, the receiver rejects -------------------------------------------------

EARLY_DATES = ["00010101", "09990101", "0999-01-01", "0001-01-01", "09991231"]


@pytest.mark.parametrize("field", ["PERSON_DOB", "RECORDED_DATE", "EXPIRY_DATE"])
@pytest.mark.parametrize("value", EARLY_DATES)
def test_a_year_before_1000_is_refused_with_its_own_rule(field: str, value: str) -> None:
    refused(field, "year", **{field: value})


@pytest.mark.parametrize("value", ["10000101", "1000-01-01"])
def test_year_1000_is_still_a_date(value: str) -> None:
    accepted_as("PERSON_DOB", "10000101", PERSON_DOB=value)


@pytest.mark.parametrize("field", ["PERSON_DOB", "RECORDED_DATE", "EXPIRY_DATE"])
def test_check_file_reports_a_year_before_1000(tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str) -> None:
    code, lines = file_lines(tmp_path, capsys, **{field: "09990101"})
    assert code == 1
    assert any(
        line.endswith(
            f":1: {field} {field}.year – {field} has a year before 1000, which the receiver "
            "cannot read (it needs four digits)"
        )
        for line in lines
    ), lines


CODE_FIELDS = ["SITE_OF_VACCINATION_CODE", "ROUTE_OF_VACCINATION_CODE", "DOSE_UNIT_CODE", "INDICATION_CODE"]
# Python's \s, as the receiver's FHIR model matches `^[^\s]+(\s[^\s]+)*$` with Python's re.
BAD_CODES = ["a  b", "a\u00a0\u00a0b", "a \u00a0b", "a\u3000\u3000b", "a\u2003 b", "1 2  3"]


@pytest.mark.parametrize("field", CODE_FIELDS)
@pytest.mark.parametrize("value", BAD_CODES)
def test_a_run_of_whitespace_in_a_coded_column_is_refused(field: str, value: str) -> None:
    refused(field, "format", **{field: value})


@pytest.mark.parametrize("field", CODE_FIELDS)
@pytest.mark.parametrize("value", ["\u00a0ab", "ab\u3000", " ab"])
def test_edge_whitespace_in_a_coded_column_is_refused(field: str, value: str) -> None:
    refused(field, "whitespace", **{field: value})


@pytest.mark.parametrize("field", CODE_FIELDS)
@pytest.mark.parametrize("value", ["368208006", "a b", "a\u00a0b", "a\u3000b", "Milliliter (qualifier value)"])
def test_a_fhir_code_with_single_separators_is_accepted(field: str, value: str) -> None:
    """The pattern allows any one whitespace character between non-space runs, so one NBSP
    inside a code is taken by the receiver; we take it too."""
    accepted_as(field, value, **{field: value})


@pytest.mark.parametrize("field", CODE_FIELDS)
def test_a_coded_column_keeps_the_generic_checks(field: str) -> None:
    refused(field, "control_char", **{field: "a\u0085b"})
    accepted_as(field, "1" * 1000, **{field: "1" * 1000})  # no cap of its own (decision 0003)


@pytest.mark.parametrize("field", CODE_FIELDS)
def test_check_file_reports_a_run_of_whitespace_in_a_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    code, lines = file_lines(tmp_path, capsys, **{field: "a  b"})
    assert code == 1
    assert any(f":1: {field} {field}.format – " in line for line in lines), lines


def test_check_file_passes_the_sample_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = file_lines(tmp_path, capsys)
    assert code == 0, lines


# --- 2. vaxflow refused, the receiver accepts: canonicalised now -----------------------------


@pytest.mark.parametrize(
    ("given", "emitted"),
    [
        ("2024-06-10T18:33:25+0000", "20240610T19332501"),
        ("2024-06-10T18:33:25+0100", "20240610T18332501"),
        ("2024-06-10T18:33:25.123+00:00", "20240610T19332501"),  # dropped, never rounded up
        ("2024-06-10T18:33:25.999999+01:00", "20240610T18332501"),
        ("2024-06-10T18:33:25.5+0000", "20240610T19332501"),
        ("2024-01-10T18:33:25.5-0000", "20240110T18332500"),
        ("2024-01-10T18:33:25.5Z", "20240110T18332500"),
        ("2024-06-10T18:33:25+0530", "20240610T14032501"),
    ],
)
def test_iso_date_times_with_a_colon_less_offset_or_fraction_are_canonicalised(given: str, emitted: str) -> None:
    accepted_as("DATE_AND_TIME", emitted, DATE_AND_TIME=given)


@pytest.mark.parametrize(
    "given",
    [
        "2024-06-10T18:33:25.1234567+00:00",
        "2024-06-10T18:33:25.+00:00",
        "20240610T183325.000",
        "2024-06-10T18:33:25+000",
    ],
)
def test_date_times_the_receiver_refuses_stay_refused(given: str) -> None:
    refused("DATE_AND_TIME", "format", DATE_AND_TIME=given)


@pytest.mark.parametrize(("given", "emitted"), [("01", "1"), ("+1", "1"), ("+09", "9"), ("0000000000000000005", "5")])
def test_dose_sequences_the_receiver_reads_with_int_are_canonicalised(given: str, emitted: str) -> None:
    accepted_as("DOSE_SEQUENCE", emitted, DOSE_SEQUENCE=given)


@pytest.mark.parametrize("given", ["0", "10", "-1", "+0", "1.0", "0_1", "\u0661", "++1", "0" * 20 + "1"])
def test_dose_sequences_the_receiver_refuses_or_we_deliberately_refuse(given: str) -> None:
    refused("DOSE_SEQUENCE", "format", DOSE_SEQUENCE=given)


@pytest.mark.parametrize(
    ("given", "emitted"),
    [
        ("5.", "5"),
        ("-0.5", "-0.5"),  # the receiver takes a negative amount as it is
        ("1e-1", "0.1"),
        ("1E+2", "100"),
        ("+0.5", "0.5"),
        ("-0", "0"),
        ("-.5", "-0.5"),
        (".5", "0.5"),
        ("00.50", "0.50"),
    ],
)
def test_dose_amounts_are_written_as_the_number_the_receiver_reads(given: str, emitted: str) -> None:
    accepted_as("DOSE_AMOUNT", emitted, DOSE_AMOUNT=given)


@pytest.mark.parametrize("given", ["abc", "NaN", "Infinity", "1_0", ".", "1e", "1e21", "1e-21", "0" * 21])
def test_dose_amounts_refused(given: str) -> None:
    refused("DOSE_AMOUNT", "format", DOSE_AMOUNT=given)


@pytest.mark.parametrize(
    "field",
    ["PERSON_POSTCODE", "BATCH_NUMBER", "VACCINE_PRODUCT_TERM", "VACCINE_MANUFACTURER", "SITE_CODE_TYPE_URI"],
)
def test_free_text_has_no_cap_of_our_own(field: str) -> None:
    accepted_as(field, "X" * 5000, **{field: "X" * 5000})


@pytest.mark.parametrize("field", ["UNIQUE_ID", "UNIQUE_ID_URI"])
def test_the_identifier_pair_stays_within_the_receivers_2048_byte_key(field: str) -> None:
    accepted_as(field, "\U0001f489" * 255, **{field: "\U0001f489" * 255})
    refused(field, "max_length", **{field: "x" * 256})


def test_receiver_caps_stay() -> None:
    refused("PERSON_SURNAME", "max_length", PERSON_SURNAME="A" * 36)
    refused("PERSON_FORENAME", "max_length", PERSON_FORENAME="A" * 181)


@pytest.mark.parametrize(
    ("field", "given", "emitted"),
    [
        ("DATE_AND_TIME", "2024-06-10T18:33:25.123+0000", "20240610T19332501"),
        ("DOSE_SEQUENCE", "01", "1"),
        ("DOSE_AMOUNT", "1e-1", "0.1"),
        ("BATCH_NUMBER", "B" * 300, "B" * 300),
    ],
)
def test_check_file_passes_what_the_receiver_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, given: str, emitted: str
) -> None:
    code, lines = file_lines(tmp_path, capsys, **{field: given})
    assert code == 0, lines


@pytest.mark.parametrize(
    "given", ["2024-06-10T18:33:25+0000", "2024-06-10T18:33:25.123+00:00", "2024-06-10T18:33:25.999999+0100"]
)
def test_the_fast_path_takes_colon_less_offsets_and_fractions_itself(given: str) -> None:
    """Common producer output, so not left to the slower Python path."""
    assert FAST_ROWS is not None
    clock = Clock(NOW)
    raw = raw_event(DATE_AND_TIME=given, PERFORMING_PROFESSIONAL_SURNAME="Reilly")  # no JSON escape
    assert FAST_ROWS.row(raw_event(PERFORMING_PROFESSIONAL_SURNAME="Reilly"), clock.epoch, clock.today) is not None
    assert FAST_ROWS.row(raw, clock.epoch, clock.today) is not None


@pytest.mark.parametrize("given", ["2024-06-10T18:33:25Z", "2024-06-10T18:33:25-00:00", "2024-06-10T18:33:25.5+05:30"])
def test_check_file_reports_an_iso_offset_the_receiver_refuses_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """The pipeline rewrites these (so events carrying them are valid), but a file is sent as it is."""
    assert isinstance(python(DATE_AND_TIME=given), ValidEvent)
    code, lines = file_lines(tmp_path, capsys, DATE_AND_TIME=given)
    assert code == 1
    assert any(":1: DATE_AND_TIME DATE_AND_TIME.file_offset – " in line for line in lines), lines


@pytest.mark.parametrize("given", ["2024-06-10T18:33:25+00:00", "2024-06-10T18:33:25.123+0100", "20240610T183325"])
def test_check_file_passes_offsets_the_receiver_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    code, lines = file_lines(tmp_path, capsys, DATE_AND_TIME=given)
    assert code == 0, lines


@pytest.mark.parametrize("field", ["PERSON_DOB", "RECORDED_DATE"])
def test_check_file_judges_dates_by_the_receivers_utc_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    """At 23:30 UTC in summer London's date is a day ahead: valid for the pipeline (which holds the
    file until UTC midnight), but a file sent now fails at the receiver, so check-file says so."""
    late_evening = datetime(2026, 7, 14, 23, 30, tzinfo=UTC)
    row = {field: "20260715", "DATE_AND_TIME": "20260714T230000"}
    assert isinstance(validate_event(raw_event(**row), permissions=P, now=late_evening), ValidEvent)
    full = {**{c: "" for c in COLUMNS}, **sample_row(), **row}
    path = tmp_path / batch_file_name("RSV", "X8E5B", late_evening)
    path.write_bytes(render_file([Record(**full)]))
    assert check_file([str(path)], now=late_evening) == 1
    assert any(f":1: {field} {field}.future – " in line for line in capsys.readouterr().out.splitlines())
    assert check_file([str(path)], now=datetime(2026, 7, 15, 0, 0, 1, tzinfo=UTC)) == 0
