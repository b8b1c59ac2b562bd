"""The rule table is complete and self-consistent."""

from __future__ import annotations

from schemas.columns import COLUMNS
from schemas.fields import COLUMN_RULES, REASONS, Kind, Mandate, all_rule_ids


def test_table_covers_the_34_columns_in_file_order() -> None:
    assert tuple(r.name for r in COLUMN_RULES) == COLUMNS


def test_receiver_limits_and_mandation() -> None:
    rules = {r.name: r for r in COLUMN_RULES}
    assert rules["PERSON_SURNAME"].max_length == 35
    assert rules["PERSON_FORENAME"].max_length == 180
    assert {n for n, r in rules.items() if r.mandate is Mandate.ALWAYS} == {"ACTION_FLAG", "UNIQUE_ID", "UNIQUE_ID_URI"}
    assert {n for n, r in rules.items() if r.mandate is Mandate.NEW_UPDATE} == {
        "PERSON_FORENAME", "PERSON_SURNAME", "PERSON_DOB", "PERSON_GENDER_CODE", "PERSON_POSTCODE",
        "DATE_AND_TIME", "SITE_CODE", "SITE_CODE_TYPE_URI", "RECORDED_DATE", "PRIMARY_SOURCE",
        "VACCINATION_PROCEDURE_CODE", "LOCATION_CODE", "LOCATION_CODE_TYPE_URI",
    }  # fmt: skip
    assert {n for n, r in rules.items() if r.not_future} == {"PERSON_DOB", "DATE_AND_TIME", "RECORDED_DATE"}
    assert {n for n, r in rules.items() if r.kind is Kind.SNOMED} == {
        "VACCINATION_PROCEDURE_CODE",
        "VACCINE_PRODUCT_CODE",
    }


def test_rule_ids_are_field_dot_suffix_and_messages_start_with_the_field() -> None:
    for (field, suffix), reason in REASONS.items():
        assert reason.field == field
        assert reason.rule == f"{field}.{suffix}"
        assert reason.message.startswith(field + " ")
    assert len(all_rule_ids()) == len(REASONS)
