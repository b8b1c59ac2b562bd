"""The compiled fast path (native/fastrow) against the Python rules it must agree with.

Its one duty: accept only what Python accepts, with byte-identical rows, and decline the rest.
Each test compares `validate_event_row` with the fast path on and off over inputs chosen where
two implementations of the same rules tend to part: London's clock changes in every year the
fast path handles, every lenient spelling, JSON shapes msgspec refuses, non-ASCII text at the
edges of a value. The properties in test_schemas_validate_properties.py run through it too
(fast path on by default). The corpus test also requires that it accepts nearly every valid
event, so a fast path that declined everything could not pass.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.corpus import make_events
from schemas.dates import LONDON, Clock
from schemas.fastpath import FAST_ROWS, RowChecker, column_table, load
from schemas.permissions import default_permissions
from schemas.validate import validate_event_row
from vaxflow.dev.samples import SEED_VACCINE_TYPES, make_event

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = datetime(2150, 1, 1, tzinfo=UTC)  # so that far-future date-times are not refused as future
P = default_permissions()
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fast() -> RowChecker:
    assert FAST_ROWS is not None, "vaxflow_fastrow is not installed: run ./scripts/setup"
    return FAST_ROWS


def both(raw: bytes, now: datetime = NOW) -> tuple[object, object]:
    return (
        validate_event_row(raw, permissions=P, now=now, native=True),
        validate_event_row(raw, permissions=P, now=now, native=False),
    )


def accepted_fast(raw: bytes, now: datetime = NOW) -> bool:
    clock = Clock(now)
    return fast().row(raw, clock.epoch, clock.today) is not None


def event(seed: int = 1, **record: str) -> dict[str, Any]:
    rng = random.Random(seed)
    built = make_event(rng, rng.choice(SEED_VACCINE_TYPES), now=NOW, lenient=0.0)
    built["record"]["ACTION_FLAG"] = "NEW"
    built["record"].update(record)
    return built


def envelope_only(reasons: object) -> bool:
    """Refused only for who sent it: the fast path checks rows, the caller checks the envelope."""
    assert isinstance(reasons, list)
    return all(r.rule in ENVELOPE_RULES for r in reasons)


ENVELOPE_RULES = {"vaccine_type.unknown", "sender_ods.permission", "ACTION_FLAG.permission"} | {
    f"source_system.{rule}" for rule in ("mandatory", "control_char", "whitespace", "max_length")
}


def encode(value: object) -> bytes:
    return msgspec.json.encode(value)


def test_installed_and_built_from_this_rule_table() -> None:
    """CI builds the module (./scripts/setup); a missing or stale one fails here, not silently."""
    assert FAST_ROWS is not None
    assert load() is not None
    assert next(name for name, *_ in column_table()) == "NHS_NUMBER"


def test_corpus_same_results_and_nearly_all_valid_events_take_the_fast_path() -> None:
    events = make_events(4000, seed=7, now=NOW)
    valid = fast_valid = 0
    for raw in events:
        native, python = both(raw)
        assert native == python
        if isinstance(python, tuple):
            valid += 1
            fast_valid += accepted_fast(raw)
        else:
            assert not accepted_fast(raw) or envelope_only(python), "the fast path took a row Python refuses"
    # Declined on purpose: DELETE rows (~2% of this corpus); everything else valid is taken.
    assert valid > 3000
    assert fast_valid / valid > 0.95


def _transition_instants(year: int) -> list[datetime]:
    """The UTC instants of London's two clock changes in `year`, from Python's zoneinfo."""
    found = []
    hour = datetime(year, 1, 1, tzinfo=UTC)
    offset = hour.astimezone(LONDON).utcoffset()
    while hour.year == year:
        step = hour + timedelta(hours=1)
        now_offset = step.astimezone(LONDON).utcoffset()
        if now_offset != offset:
            found.append(step)
            offset = now_offset
        hour = step
    return found


def _spellings(instant: datetime) -> list[str]:
    plus_one = instant + timedelta(hours=1)
    return [
        instant.strftime("%Y%m%dT%H%M%S"),
        instant.strftime("%Y%m%dT%H%M%S00"),
        plus_one.strftime("%Y%m%dT%H%M%S01"),
        instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        instant.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        instant.strftime("%Y-%m-%dT%H:%M:%S-00:00"),
        plus_one.strftime("%Y-%m-%dT%H:%M:%S+01:00"),
        instant.strftime("%Y-%m-%dT%H:%M:%S+05:30"),  # declined: Python handles other offsets
        instant.strftime("%Y-%m-%dT%H:%M:%S.5+0000"),  # issue 18: colon-less offsets, fractions
        plus_one.strftime("%Y-%m-%dT%H:%M:%S.999999+0100"),
        instant.strftime("%Y-%m-%dT%H:%M:%S.1234567Z"),  # refused: seven fraction digits
    ]


@pytest.mark.parametrize("year", [1990, 1995, 1996, 1997, 2000, 2024, 2025, 2037, 2038, 2099, 2100])
def test_date_and_time_around_every_clock_change(year: int) -> None:
    """Each change, and the hours and seconds either side of it, in every spelling."""
    taken = 0
    for change in _transition_instants(year):
        for delta in (-3601, -3600, -1, 0, 1, 3599, 3600):
            for value in _spellings(change + timedelta(seconds=delta)):
                raw = encode(event(DATE_AND_TIME=value, RECORDED_DATE="20240101"))
                native, python = both(raw, LATER)
                assert native == python, value
                taken += accepted_fast(raw, LATER)
    if 1997 <= year <= 2099:
        assert taken > 0
    else:
        assert taken == 0  # years whose London rules the fast path does not carry go to Python


@SETTINGS
@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1)), st.integers(0, 10))
def test_date_and_time_any_instant(moment: datetime, spelling: int) -> None:
    value = _spellings(moment.replace(tzinfo=UTC, microsecond=0))[spelling]
    native, python = both(encode(event(DATE_AND_TIME=value, RECORDED_DATE="20240101")), LATER)
    assert native == python


digits = st.text(alphabet="0123456789", min_size=0, max_size=20)
near_values = {
    "NHS_NUMBER": digits | st.just("9434765919") | st.just("943476591"),
    "PERSON_DOB": st.from_regex(r"\A[0-9]{4}-?[0-9]{2}-?[0-9]{2}\Z")
    | st.sampled_from(["00000101", "20240229", "2023-02-29"]),
    "PERSON_GENDER_CODE": st.sampled_from(["0", "1", "2", "9", "3", "male", "Male", "female", "other", "unknown", ""]),
    "DATE_AND_TIME": st.from_regex(r"\A[0-9]{8}T[0-9]{6}(0[0-2])?\Z")
    | st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,7})?(Z|[+-]0[01]:?00)\Z"),
    "PRIMARY_SOURCE": st.from_regex(r"\A(?i:true|false|yes)\Z"),
    "ACTION_FLAG": st.from_regex(r"\A(?i:new|update|delete|nwe)\Z"),
    "VACCINATION_PROCEDURE_CODE": digits | st.sampled_from(["1324681000000101", "39114911000001105"]),
    "VACCINE_PRODUCT_CODE": digits,
    "DOSE_SEQUENCE": st.sampled_from(["1", "9", "0", "10", "01", "+1", "+01", "-1", "0_1", ""]),
    "DOSE_AMOUNT": st.from_regex(r"\A[+-]?[0-9]{0,22}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,2})?\Z"),
    "PERSON_POSTCODE": st.text(alphabet="AZ09 \u00a0", min_size=1, max_size=300),
    "SITE_OF_VACCINATION_CODE": st.text(alphabet="a1 \u00a0\u3000\u2003\u200b", max_size=8),
    "DOSE_UNIT_CODE": st.sampled_from(["ml", "a b", "a  b", "a\u00a0b", "a \u00a0b", " a", "a\u3000"]),
    "RECORDED_DATE": st.sampled_from(["00010101", "09990101", "0999-01-01", "10000101", "20240101"]),
    "UNIQUE_ID": st.text(alphabet="x\U0001f489", min_size=1, max_size=260),
    "EXPIRY_DATE": st.from_regex(r"\A[0-9]{4}-?[0-9]{2}-?[0-9]{2}\Z"),
    "PERSON_SURNAME": st.text(max_size=40),
    "PERSON_FORENAME": st.text(alphabet=st.characters(codec="utf-8"), max_size=190),
    "BATCH_NUMBER": st.text(alphabet=' "|¬\u00a0\u2003\u3000é\u0085\u2028aZ9', max_size=300),
    "SITE_CODE": st.sampled_from(["", " X", "X ", "\u00a0X", "X\u3000", "Ẋ", "X\u200bX"]),
}


@SETTINGS
@given(st.integers(0, 10**6), st.fixed_dictionaries({}, optional=near_values))
def test_values_near_the_rules(seed: int, changes: dict[str, str]) -> None:
    built = event(seed)
    built["record"].update(changes)
    try:
        raw = encode(built)
    except UnicodeEncodeError:
        return
    native, python = both(raw)
    assert native == python
    if not isinstance(python, tuple):
        assert not accepted_fast(raw) or envelope_only(python)


rfc3339ish = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,10})?([Zz]|[+-][0-9]{2}:?[0-9]{2})?\Z"
)


@SETTINGS
@given(rfc3339ish | st.text(max_size=30))
def test_received_at_spellings(value: str) -> None:
    built = event()
    built["received_at"] = value
    native, python = both(encode(built))
    assert native == python


SHAPES = [
    b'{"vaccine_type":"FLU","vaccine_type":"FLU"}',
    b"[]",
    b"null",
    b'"x"',
    b"{}",
    b"   ",
]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw.replace(b'"vaccine_type"', b'"vaccine_type":"RSV","vaccine_type"', 1),  # duplicate key
        lambda raw: raw.replace(b'"NHS_NUMBER"', b'"PERSON_SURNAME":"X","NHS_NUMBER"', 1),  # duplicate column
        lambda raw: raw.replace(b'"NHS_NUMBER"', b'"NHS_NUMBR"', 1),  # unknown column
        lambda raw: raw[:-1] + b',"extra":1}',  # unknown envelope key
        lambda raw: raw[:-1] + b',"schema_version":1}',
        lambda raw: raw[:-1] + b',"schema_version":2}',
        lambda raw: raw[:-1] + b',"schema_version":3}',
        lambda raw: raw[:-1] + b',"extended_attributes":[]}',
        lambda raw: raw[:-1] + b',"extended_attributes":[{"ATTRIBUTE_ID":"1"}]}',  # RSV: refused
        lambda raw: raw[:-1] + b',"schema_version":1.0}',
        lambda raw: raw[:-1] + b',"schema_version":null}',
        lambda raw: raw[:-1] + b',"received_at":null}',
        lambda raw: raw[:-1] + b',"received_at":"2024-06-01T10:00:00.123456+01:00"}',
        lambda raw: raw[:-1] + b',"received_at":"2024-06-01T10:00:00"}',
        lambda raw: raw + b" ",
        lambda raw: raw + b"x",
        lambda raw: b" \n\t" + raw,
        lambda raw: raw.replace(b'":"', b'" : "'),
        lambda raw: raw.replace(b'"PERSON_SURNAME":"', b'"PERSON_SURNAME":null,"x":"', 1),
        lambda raw: raw.replace(b'"PERSON_SURNAME":"', b'"PERSON_SURNAME":"\\u0041', 1),  # escape: declined
        lambda raw: raw.replace(b'"PERSON_SURNAME":"', b'"PERSON_SURNAME":"\x7f', 1),
        lambda raw: raw.replace(b'"PERSON_SURNAME":"', b'"PERSON_SURNAME":"\xc2\x85', 1),  # C1 NEL
        lambda raw: raw.replace(b'"PERSON_SURNAME":"', b'"PERSON_SURNAME":"A\xe2\x80\xa8', 1),  # U+2028
        lambda raw: raw.replace(b'"PERSON_SURNAME":"', b'"PERSON_SURNAME":"\xff', 1),  # not UTF-8
        lambda raw: raw.replace(b'"PERSON_SURNAME":"', b'"PERSON_SURNAME":"\t', 1),  # raw control
        lambda raw: raw.replace(b'"record":{', b'"record":{"ACTION_FLAG":"new",', 1),
        lambda raw: raw.replace(b'"source_system":"', b'"source_system":" ', 1),
        lambda raw: raw.replace(b'"sender_ods":"', b'"sender_ods":"x', 1),
        lambda raw: raw.replace(b'"vaccine_type":"', b'"vaccine_type":"c', 1),
        lambda raw: raw + b"\x00" * 70_000,
    ],
)
def test_json_shapes(mutate: Any) -> None:
    raw = mutate(encode(event()))
    native, python = both(raw)
    assert native == python


@pytest.mark.parametrize("raw", SHAPES)
def test_not_events(raw: bytes) -> None:
    native, python = both(raw)
    assert native == python
    assert not accepted_fast(raw)


def test_a_refused_action_is_left_to_python() -> None:
    """A sender may hold create but not update: the fast path accepts the row, the envelope refuses."""
    raw = encode(event(ACTION_FLAG="update"))
    native, python = both(raw)
    assert native == python


def test_not_bytes_go_to_python() -> None:
    raw = encode(event())
    assert validate_event_row(bytearray(raw), permissions=P, now=NOW) == both(raw)[1]  # type: ignore[arg-type]


def test_the_fast_path_takes_both_contract_versions_and_leaves_attributes_to_python() -> None:
    """Version 2 only added extended attributes: a record pinned to 1 or 2 is the fast path's to
    take; any `extended_attributes` key (even an empty list) is declined to Python (decision 0020)."""
    raw = encode(event())
    for version in (1, 2):
        assert accepted_fast(raw[:-1] + b',"schema_version":%d}' % version)
    assert not accepted_fast(raw[:-1] + b',"schema_version":3}')
    assert not accepted_fast(raw[:-1] + b',"extended_attributes":[]}')
