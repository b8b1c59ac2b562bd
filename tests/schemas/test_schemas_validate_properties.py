"""Properties: the validator never raises, and what it accepts is canonical and file-safe.

"File-safe" is checked the way the file will be read: each accepted record is rendered as one
fully quoted pipe-delimited row and parsed back with the csv module, which must give back
exactly the same 34 values. "Canonical" means validating the output again changes nothing.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.batchfile import render_row
from schemas.columns import COLUMNS
from schemas.event import ValidEvent
from schemas.permissions import default_permissions
from schemas.record import Reason, Record
from schemas.validate import FORBIDDEN_CHARS, validate_event, validate_event_row, validate_record
from vaxflow.dev.samples import SEED_VACCINE_TYPES, make_event

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
P = default_permissions()
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pipe_row(values: tuple[str, ...]) -> str:
    return "|".join('"' + v.replace('"', '""') + '"' for v in values)


def parse_row(line: str) -> tuple[str, ...]:
    return tuple(next(csv.reader(io.StringIO(line, newline=""), delimiter="|")))


def assert_well_formed(result: object) -> None:
    assert isinstance(result, ValidEvent | list | Record)
    if isinstance(result, list):
        assert result
        assert all(isinstance(r, Reason) for r in result)
        assert all(r.rule != "event.internal" for r in result), "an internal error escaped a checker"
        assert len({r.field for r in result}) == len(result), "one reason per field"


def validated(raw: bytes) -> ValidEvent | list[Reason]:
    """validate_event, checked against the validator's one-step path: same reasons, or same row."""
    result = validate_event(raw, permissions=P, now=NOW)
    row = validate_event_row(raw, permissions=P, now=NOW)
    if isinstance(result, ValidEvent):
        assert row == (result.vaccine_type, result.sender_ods, render_row(result.record), b"")
    else:
        assert row == result
    return result


def assert_canonical(record: Record, vaccine_type: str, sender: str) -> None:
    values = msgspec.structs.astuple(record)
    assert parse_row(pipe_row(values)) == values
    for value in values:
        assert FORBIDDEN_CHARS.search(value) is None
        assert value == value.strip()
    again = validate_record(vaccine_type, sender, msgspec.structs.asdict(record), permissions=P, now=NOW)
    assert again == record


def base_event(seed: int, lenient: float = 0.5) -> dict[str, Any]:
    rng = random.Random(seed)
    return make_event(rng, rng.choice(SEED_VACCINE_TYPES), now=NOW, lenient=lenient)


def _changed_event(seed: int, changes: dict[str, Any]) -> dict[str, Any]:
    event = base_event(seed)
    event["record"].update(changes)
    return event


def changed_events(changes: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Sample events (base_event of a drawn seed) with the record fields `changes` draws replaced."""
    return st.builds(_changed_event, st.integers(0, 10**6), changes)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
any_text = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()),  # includes controls and surrogates
    max_size=40,
)


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert_well_formed(validated(raw))


@SETTINGS
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    assert_well_formed(validated(msgspec.json.encode(value)))


@SETTINGS
@given(changed_events(st.dictionaries(st.sampled_from(COLUMNS), json_values, max_size=6)))
def test_wrong_types_in_record_never_raise(event: dict[str, Any]) -> None:
    assert_well_formed(validated(msgspec.json.encode(event)))


@SETTINGS
@given(changed_events(st.dictionaries(st.sampled_from(COLUMNS), any_text, max_size=6)))
def test_arbitrary_strings_in_fields(event: dict[str, Any]) -> None:
    try:
        raw = msgspec.json.encode(event)
    except UnicodeEncodeError:
        raw = b""  # lone surrogates cannot be JSON; the file reader path still gets them below
    if raw:
        result = validated(raw)
        assert_well_formed(result)
        if isinstance(result, ValidEvent):
            assert_canonical(result.record, result.vaccine_type, result.sender_ods)
            assert validate_event(msgspec.json.encode(result), permissions=P, now=NOW) == result
    row = validate_record(event["vaccine_type"], event["sender_ods"], event["record"], permissions=P, now=NOW)
    assert_well_formed(row)
    if isinstance(row, Record):
        assert_canonical(row, event["vaccine_type"], event["sender_ods"])


# Values near the accepted forms, so that many examples are accepted and their canonical
# forms get checked, not only their rejections.
plausible = {
    "PERSON_DOB": st.from_regex(r"\A(19[0-9]{2}|20[0-2][0-9])-?(0[1-9]|1[0-2])-?([0-2][0-9]|3[01])\Z"),
    "RECORDED_DATE": st.from_regex(r"\A20[0-2][0-9](0[1-9]|1[0-2])([0-2][0-9]|3[01])\Z"),
    "EXPIRY_DATE": st.from_regex(r"\A2[0-9]{3}-(0[1-9]|1[0-2])-([0-2][0-9]|3[01])\Z"),
    "DATE_AND_TIME": st.from_regex(r"\A20[0-2][0-9](0[1-9]|1[0-2])([0-2][0-9]|3[01])T[0-2][0-9][0-5][0-9]{3}(00|01)?\Z")
    | st.from_regex(
        r"\A20[0-2][0-9]-(0[1-9]|1[0-2])-([0-2][0-9])T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])\Z"
    ),
    "DOSE_AMOUNT": st.from_regex(r"\A[0-9]{0,3}(\.[0-9]{1,3})?\Z"),
    "DOSE_SEQUENCE": st.from_regex(r"\A[0-9]{1,2}\Z"),
    "PERSON_GENDER_CODE": st.sampled_from(["0", "1", "2", "9", "male", "female", "other", "unknown", "3"]),
    "PRIMARY_SOURCE": st.from_regex(r"\A(?i:true|false)\Z"),
    "ACTION_FLAG": st.from_regex(r"\A(?i:new|update|delete)\Z"),
    "NHS_NUMBER": st.from_regex(r"\A[0-9]{10}\Z"),
    "PERSON_SURNAME": st.text(min_size=1, max_size=40),
    "PERSON_FORENAME": st.text(min_size=1, max_size=20),
    "VACCINE_PRODUCT_TERM": st.text(max_size=20),
}


@SETTINGS
@given(changed_events(st.fixed_dictionaries({}, optional=plausible)))
def test_accepted_values_are_canonical_and_idempotent(event: dict[str, Any]) -> None:
    result = validated(msgspec.json.encode(event))
    assert_well_formed(result)
    if isinstance(result, ValidEvent):
        record = result.record
        assert_canonical(record, result.vaccine_type, result.sender_ods)
        if record.ACTION_FLAG != "DELETE":
            assert len(record.DATE_AND_TIME) == 17
            assert record.DATE_AND_TIME[-2:] in ("00", "01")
            assert record.PERSON_DOB.isdigit()
            assert len(record.PERSON_DOB) == 8
            assert record.PERSON_GENDER_CODE in ("0", "1", "2", "9")
            assert record.PRIMARY_SOURCE in ("TRUE", "FALSE")
        assert record.ACTION_FLAG in ("NEW", "UPDATE", "DELETE")


MARK = "QZJ"  # letters that appear in no field name, rule id or message


@SETTINGS
@given(st.integers(0, 10**6), st.sampled_from(COLUMNS), st.text(max_size=20))
def test_reasons_never_quote_the_value(seed: int, field: str, tail: str) -> None:
    event = base_event(seed, lenient=0.0)
    event["record"][field] = MARK + tail + "\n"  # always rejected for the control character
    try:
        raw = msgspec.json.encode(event)
    except UnicodeEncodeError:
        return
    result = validate_event(raw, permissions=P, now=NOW)
    assert isinstance(result, list)
    assert all(MARK not in r.message and MARK not in r.rule for r in result)
