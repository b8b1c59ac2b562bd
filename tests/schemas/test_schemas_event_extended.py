"""Extended attributes on the event contract (version 2, docs/decisions/0020): what is accepted,
what is refused and why, and that the rows the validator hands on are the file's rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.rows import sample_row

from schemas.event import MAX_EXTENDED_ATTRIBUTES, EventAttribute, ValidEvent
from schemas.extended import (
    ExtendedAttribute,
    assemble_extended,
    read_extended,
    render_extended,
    render_extended_rows,
)
from schemas.permissions import default_permissions
from schemas.record import Reason
from schemas.validate import validate_event, validate_event_row

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
P = default_permissions()
ATTRIBUTE = {"ATTRIBUTE_ID": "1324681000000101", "ATTRIBUTE_DISPLAYED_TEXT": 'At risk: "clinical" | group',
             "ATTRIBUTE_VALUE": "Y"}  # fmt: skip



def event(attributes: Any = None, *, vaccine_type: str = "COVID", ods: str = "YGA", **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "vaccine_type": vaccine_type,
        "sender_ods": ods,
        "source_system": "unit-test",
        "record": {**sample_row(), **extra.pop("record", {})},
        **extra,
    }
    if attributes is not None:
        body["extended_attributes"] = attributes
    return msgspec.json.encode(body)


def rules(result: object) -> list[str]:
    assert isinstance(result, list), result
    return [r.rule for r in result if isinstance(r, Reason)]


@pytest.mark.parametrize(("vaccine_type", "ods"), [("COVID", "YGA"), ("FLU", "YGM41"), ("covid", "yga")])
def test_attributes_become_the_rows_of_the_extended_file(vaccine_type: str, ods: str) -> None:
    second = {"ATTRIBUTE_ID": "2", "ATTRIBUTE_VALUE": "N", "RECORDED_DATE": "2024-06-08"}
    raw = event([ATTRIBUTE, second], vaccine_type=vaccine_type, ods=ods, record={"ACTION_FLAG": "new"})
    result = validate_event_row(raw, permissions=P, now=NOW)
    assert isinstance(result, tuple), result
    _, _, row, extended = result
    expected = [
        ExtendedAttribute(
            VACCINATION_UNIQUE_ID="0001_RSV_v5_RUN_2_CDFDPS-742_valid_dose_1",
            VACCINATION_UNIQUE_ID_URI="https://www.ravs.england.nhs.uk/",
            ACTION_FLAG="NEW",
            RECORDED_DATE="20240609",
            **ATTRIBUTE,
        ),
        ExtendedAttribute(
            VACCINATION_UNIQUE_ID="0001_RSV_v5_RUN_2_CDFDPS-742_valid_dose_1",
            VACCINATION_UNIQUE_ID_URI="https://www.ravs.england.nhs.uk/",
            ACTION_FLAG="NEW",
            ATTRIBUTE_ID="2",
            ATTRIBUTE_VALUE="N",
            RECORDED_DATE="20240608",  # its own date, canonical
        ),
    ]
    assert extended == render_extended_rows(expected)
    # The lines the batcher joins make the same file render_extended writes, and it reads back whole.
    content = assemble_extended(extended.split(b"\n"))
    assert content == render_extended(expected)
    assert [r.attribute for r in read_extended(content, now=NOW)] == expected
    # validate_event agrees, and its JSON (a redrive) validates to the same rows again
    full = validate_event(raw, permissions=P, now=NOW)
    assert isinstance(full, ValidEvent)
    assert full.extended_attributes[1] == EventAttribute(
        ATTRIBUTE_ID="2", ATTRIBUTE_VALUE="N", RECORDED_DATE="20240608"
    )
    again = validate_event_row(msgspec.json.encode(full), permissions=P, now=NOW)
    assert isinstance(again, tuple)
    assert again[2:] == (row, extended)


def test_an_event_without_attributes_is_unchanged_by_version_2() -> None:
    """No header, the same row, with or without an explicit schema_version 1 (producers that pin it)."""
    plain = validate_event_row(event(), permissions=P, now=NOW)
    pinned = validate_event_row(event(schema_version=1), permissions=P, now=NOW)
    empty = validate_event_row(event([]), permissions=P, now=NOW)
    assert isinstance(plain, tuple)
    assert plain[3] == b""
    assert plain == pinned == empty


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (event([ATTRIBUTE], schema_version=1), "extended_attributes.schema_version"),
        (event([ATTRIBUTE], vaccine_type="RSV", ods="YGA"), "extended_attributes.vaccine_type"),
        # V0V8L may send FLU (C, U, D) but nothing for COVID: NHS England refuses its EA files
        (event([ATTRIBUTE], vaccine_type="FLU", ods="V0V8L"), "extended_attributes.permission"),
        (
            event([{**ATTRIBUTE, "ATTRIBUTE_ID": str(i)} for i in range(MAX_EXTENDED_ATTRIBUTES + 1)]),
            "extended_attributes.max_items",
        ),
        (event([{"ATTRIBUTE_ID": "a", "COLOUR": "x"}]), "extended_attributes.unknown_field"),
        (event([{"ATTRIBUTE_ID": 7}]), "extended_attributes.type"),
        (event({"ATTRIBUTE_ID": "a"}), "extended_attributes.type"),
        (event([{"ATTRIBUTE_ID": " "}]), "extended_attributes.ATTRIBUTE_ID.mandatory"),
        (event([{"ATTRIBUTE_ID": "a", "ATTRIBUTE_VALUE": "x\ny"}]), "extended_attributes.ATTRIBUTE_VALUE.control_char"),
        (event([{"ATTRIBUTE_ID": "a", "RECORDED_DATE": "20241301"}]), "extended_attributes.RECORDED_DATE.format"),
        (event([{"ATTRIBUTE_ID": "a", "RECORDED_DATE": "20261126"}]), "extended_attributes.RECORDED_DATE.future"),
        (event([{"ATTRIBUTE_ID": "a"}, {"ATTRIBUTE_ID": "a"}]), "extended_attributes.ATTRIBUTE_ID.repeated"),
        # a DELETE need not carry RECORDED_DATE, so its attributes must bring their own
        (
            event([{"ATTRIBUTE_ID": "a"}], record={"ACTION_FLAG": "DELETE", "RECORDED_DATE": ""}),
            "extended_attributes.RECORDED_DATE.format",
        ),
    ],
)
def test_refused_attributes_name_field_and_rule_never_the_value(raw: bytes, rule: str) -> None:
    result = validate_event_row(raw, permissions=P, now=NOW)
    assert rules(result) == [rule]
    assert rules(validate_event(raw, permissions=P, now=NOW)) == [rule]
    assert isinstance(result, list)
    for reason in result:
        assert "x\ny" not in reason.message
        assert "20241301" not in reason.message


def test_one_reason_per_attribute_and_column() -> None:
    raw = event(
        [
            {"ATTRIBUTE_ID": "", "RECORDED_DATE": "x"},
            {"ATTRIBUTE_ID": "b"},
            {"ATTRIBUTE_ID": "", "ATTRIBUTE_VALUE": "\x00"},
        ]
    )
    result = validate_event_row(raw, permissions=P, now=NOW)
    assert isinstance(result, list)
    assert [(r.field, r.rule) for r in result] == [
        ("extended_attributes[0].ATTRIBUTE_ID", "extended_attributes.ATTRIBUTE_ID.mandatory"),
        ("extended_attributes[0].RECORDED_DATE", "extended_attributes.RECORDED_DATE.format"),
        ("extended_attributes[2].ATTRIBUTE_VALUE", "extended_attributes.ATTRIBUTE_VALUE.control_char"),
        ("extended_attributes[2].ATTRIBUTE_ID", "extended_attributes.ATTRIBUTE_ID.mandatory"),
    ]


def test_a_record_refusal_comes_first_and_alone() -> None:
    """The record is judged first: attributes of a vaccination that is refused are not looked at."""
    raw = event([{"ATTRIBUTE_ID": ""}], record={"NHS_NUMBER": "123"})
    assert rules(validate_event_row(raw, permissions=P, now=NOW)) == ["NHS_NUMBER.format"]


def test_the_compiled_fast_path_leaves_attributes_to_python() -> None:
    """It knows no `extended_attributes` key and declines the event: the result is Python's."""
    raw = event([ATTRIBUTE])
    assert validate_event_row(raw, permissions=P, now=NOW, native=True) == validate_event_row(
        raw, permissions=P, now=NOW, native=False
    )
