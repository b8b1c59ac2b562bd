"""Behaviour of validate_event and validate_record beyond the reference outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.rows import sample_row

from schemas.event import ValidEvent
from schemas.permissions import default_permissions, parse_permissions
from schemas.record import Reason, Record
from schemas.validate import MAX_EVENT_BYTES, rejection_for, validate_event, validate_record

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
P = default_permissions()



def event(**record: Any) -> dict[str, Any]:
    return {
        "vaccine_type": "RSV",
        "sender_ods": "X8E5B",
        "source_system": "unit-test",
        "record": {**sample_row(), **record},
    }


def run(raw: dict[str, Any] | bytes, now: datetime = NOW) -> ValidEvent | list[Reason]:
    data = raw if isinstance(raw, bytes) else msgspec.json.encode(raw)
    return validate_event(data, permissions=P, now=now)


def rules(result: ValidEvent | list[Reason] | Record) -> list[str]:
    assert isinstance(result, list), result
    return [r.rule for r in result]


def accepted(result: ValidEvent | list[Reason]) -> Record:
    assert isinstance(result, ValidEvent), result
    return result.record


class TestAccepted:
    def test_sample_row_is_canonicalised(self) -> None:
        result = run({**event(), "vaccine_type": "rsv", "sender_ods": "x8e5b", "received_at": "2026-11-25T11:00:00Z"})
        assert isinstance(result, ValidEvent)
        assert (result.vaccine_type, result.sender_ods, result.schema_version) == ("RSV", "X8E5B", 2)
        assert result.received_at == datetime(2026, 11, 25, 11, tzinfo=UTC)
        record = result.record
        assert record.ACTION_FLAG == "NEW"
        assert record.DATE_AND_TIME == "20240610T19332501"  # UTC 18:33:25 is 19:33:25 BST
        assert record.PERFORMING_PROFESSIONAL_SURNAME == "O\\'Reilly"  # passed through untouched

    @pytest.mark.parametrize(
        ("field", "given", "emitted"),
        [
            ("ACTION_FLAG", "nEw", "NEW"),
            ("ACTION_FLAG", "Update", "UPDATE"),
            ("PRIMARY_SOURCE", "false", "FALSE"),
            ("PRIMARY_SOURCE", "tRuE", "TRUE"),
            ("PERSON_GENDER_CODE", "male", "1"),
            ("PERSON_GENDER_CODE", "female", "2"),
            ("PERSON_GENDER_CODE", "other", "9"),
            ("PERSON_GENDER_CODE", "unknown", "0"),
            ("PERSON_DOB", "2019-01-31", "20190131"),
            ("RECORDED_DATE", "2024-06-09", "20240609"),
            ("EXPIRY_DATE", "2099-12-31", "20991231"),
            ("DOSE_AMOUNT", ".5", "0.5"),
            ("DOSE_AMOUNT", "00.50", "0.50"),
            ("DOSE_AMOUNT", "007", "7"),
            ("DOSE_AMOUNT", "0", "0"),
            ("DATE_AND_TIME", "2024-01-10T09:00:00Z", "20240110T09000000"),
            ("DATE_AND_TIME", "20240110T09000001", "20240110T08000000"),
        ],
    )
    def test_normalisations(self, field: str, given: str, emitted: str) -> None:
        assert getattr(accepted(run(event(**{field: given}))), field) == emitted

    def test_internal_invisible_characters_are_kept(self) -> None:
        assert accepted(run(event(PERSON_FORENAME="ANNE\u00a0MARIE"))).PERSON_FORENAME == "ANNE\u00a0MARIE"

    def test_non_ascii_names_pass(self) -> None:
        assert accepted(run(event(PERSON_FORENAME="ZOË", PERSON_SURNAME="NÚÑEZ-GARCÍA"))).PERSON_SURNAME == (
            "NÚÑEZ-GARCÍA"
        )

    def test_absent_optional_keys_are_empty(self) -> None:
        row = sample_row()
        for key in ("NHS_NUMBER", "DOSE_SEQUENCE", "VACCINE_PRODUCT_CODE", "EXPIRY_DATE"):
            del row[key]
        record = accepted(run({**event(), "record": row}))
        assert record.NHS_NUMBER == record.DOSE_SEQUENCE == record.EXPIRY_DATE == ""

    def test_event_at_now_is_not_future_but_one_second_later_is(self) -> None:
        assert isinstance(run(event(DATE_AND_TIME="20261125T120000")), ValidEvent)
        assert rules(run(event(DATE_AND_TIME="20261125T120001"))) == ["DATE_AND_TIME.future"]
        assert rules(run(event(DATE_AND_TIME="20261125T13000101"))) == ["DATE_AND_TIME.future"]

    def test_dates_compare_with_london_today(self) -> None:
        late_evening = datetime(2024, 6, 30, 23, 30, tzinfo=UTC)  # 00:30 on 1 July in London
        row = {"PERSON_DOB": "20240701", "RECORDED_DATE": "20240701", "DATE_AND_TIME": "20240630T230000"}
        assert isinstance(run(event(**row), now=late_evening), ValidEvent)
        assert rules(run(event(**{**row, "PERSON_DOB": "20240702"}), now=late_evening)) == ["PERSON_DOB.future"]

    def test_valid_event_json_revalidates_to_itself(self) -> None:
        first = run({**event(), "received_at": "2026-11-25T11:00:00+00:00"})
        assert isinstance(first, ValidEvent)
        assert run(msgspec.json.encode(first)) == first


class TestRejected:
    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({"NHS_NUMBER": "9674963872"}, ["NHS_NUMBER.mod11"]),
            ({"NHS_NUMBER": "96749 3871"}, ["NHS_NUMBER.format"]),
            ({"PERSON_SURNAME": "A" * 36}, ["PERSON_SURNAME.max_length"]),
            ({"PERSON_SURNAME": "SMITH\n"}, ["PERSON_SURNAME.control_char"]),
            ({"PERSON_SURNAME": " SMITH"}, ["PERSON_SURNAME.whitespace"]),
            ({"PERSON_SURNAME": "SMITH\u00a0"}, ["PERSON_SURNAME.whitespace"]),
            ({"PERSON_POSTCODE": ""}, ["PERSON_POSTCODE.mandatory"]),
            ({"DOSE_AMOUNT": "NaN"}, ["DOSE_AMOUNT.format"]),
            ({"DOSE_AMOUNT": "1_0"}, ["DOSE_AMOUNT.format"]),
            ({"DOSE_SEQUENCE": "0_1"}, ["DOSE_SEQUENCE.format"]),
            ({"DOSE_SEQUENCE": "-1"}, ["DOSE_SEQUENCE.format"]),
            ({"DOSE_AMOUNT": "0" * 21}, ["DOSE_AMOUNT.format"]),
            ({"PRIMARY_SOURCE": "falſe"}, ["PRIMARY_SOURCE.format"]),
            ({"ACTION_FLAG": "ＮＥＷ"}, ["ACTION_FLAG.format"]),
            ({"PERSON_GENDER_CODE": "MALE"}, ["PERSON_GENDER_CODE.format"]),
            ({"VACCINE_PRODUCT_CODE": "2622896019"}, ["VACCINE_PRODUCT_CODE.partition"]),
            ({"DATE_AND_TIME": "19440601T120000"}, ["DATE_AND_TIME.offset"]),
            ({"EXPIRY_DATE": "2024-13-01"}, ["EXPIRY_DATE.format"]),
            ({"UNIQUE_ID": "X" * 256}, ["UNIQUE_ID.max_length"]),
            ({"UNIQUE_ID_URI": "h" * 256}, ["UNIQUE_ID_URI.max_length"]),
            # formatted fields report the generic rule first, as free text does
            ({"PERSON_GENDER_CODE": "1 "}, ["PERSON_GENDER_CODE.whitespace"]),
            ({"ACTION_FLAG": "DELETE "}, ["ACTION_FLAG.whitespace"]),
            ({"DATE_AND_TIME": "20240610T183325\n"}, ["DATE_AND_TIME.control_char"]),
            ({"VACCINE_PRODUCT_CODE": "\u200942605811000001109"}, ["VACCINE_PRODUCT_CODE.whitespace"]),
            ({"PERSON_DOB": "2019013100"}, ["PERSON_DOB.format"]),
            ({"NHS_NUMBER": "9" * 300}, ["NHS_NUMBER.format"]),
        ],
    )
    def test_single_field_rules(self, changes: dict[str, str], expected: list[str]) -> None:
        assert rules(run(event(**changes))) == expected

    @pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x00", "\x1f", "\x7f", "\x85", "\x9f", "\u2028", "\u2029"])
    def test_forbidden_characters_inside_any_value(self, char: str) -> None:
        assert rules(run(event(VACCINE_PRODUCT_TERM=f"Abrysvo{char}vaccine"))) == ["VACCINE_PRODUCT_TERM.control_char"]

    def test_lone_surrogate_in_a_file_row(self) -> None:
        row = {**sample_row(), "PERSON_FORENAME": "A\udc80B"}
        result = validate_record("RSV", "X8E5B", row, permissions=P, now=NOW)
        assert rules(result) == ["PERSON_FORENAME.control_char"]

    def test_one_reason_per_field_in_file_order_envelope_first(self) -> None:
        bad = event(
            LOCATION_CODE="",
            NHS_NUMBER=" 9674963871",
            PERSON_DOB="20261126",
            DOSE_SEQUENCE="10",
            ACTION_FLAG="create",
        )
        result = run({**bad, "vaccine_type": "COVID19"})
        assert rules(result) == [
            "vaccine_type.unknown",
            "NHS_NUMBER.whitespace",
            "PERSON_DOB.future",
            "ACTION_FLAG.format",
            "DOSE_SEQUENCE.format",
            "LOCATION_CODE.mandatory",
        ]

    def test_messages_name_field_and_rule_never_the_value(self) -> None:
        secret = "9674963872"
        result = run(event(NHS_NUMBER=secret, PERSON_SURNAME="QZXSECRET" * 5))
        assert isinstance(result, list)
        for reason in result:
            assert reason.field in reason.message
            assert secret not in reason.message
            assert "QZXSECRET" not in reason.message


class TestDelete:
    def minimal(self, **extra: str) -> dict[str, Any]:
        row = {"ACTION_FLAG": "delete", "UNIQUE_ID": "abc", "UNIQUE_ID_URI": "https://x/", **extra}
        return {"vaccine_type": "RSV", "sender_ods": "X8E5B", "source_system": "t", "record": row}

    def test_minimal_delete_is_accepted_and_upper_cased(self) -> None:
        record = accepted(run(self.minimal()))
        assert record.ACTION_FLAG == "DELETE"
        assert record.PERSON_SURNAME == ""

    def test_content_is_not_checked(self) -> None:
        assert isinstance(run(self.minimal(PERSON_DOB="not a date", NHS_NUMBER="1")), ValidEvent)

    def test_but_every_value_must_still_be_file_safe(self) -> None:
        assert rules(run(self.minimal(PERSON_SURNAME="A\nB"))) == ["PERSON_SURNAME.control_char"]
        assert rules(run(self.minimal(PERSON_SURNAME="A "))) == ["PERSON_SURNAME.whitespace"]
        assert rules(run(self.minimal(PERSON_SURNAME="A" * 36))) == ["PERSON_SURNAME.max_length"]
        assert rules(run(self.minimal(PERSON_DOB="1" * 11))) == ["PERSON_DOB.format"]

    def test_identifier_is_mandatory(self) -> None:
        assert rules(run(self.minimal(UNIQUE_ID=""))) == ["UNIQUE_ID.mandatory"]


class TestEnvelope:
    @pytest.mark.parametrize("vaccine_type", ["COVID19", "Td-IPV", "", "ＲＳＶ", "rſv"])
    def test_unknown_vaccine_type(self, vaccine_type: str) -> None:
        assert rules(run({**event(), "vaccine_type": vaccine_type})) == ["vaccine_type.unknown"]

    @pytest.mark.parametrize("ods", ["ABCDE", "8J1100001", "", "YGM17"])
    def test_sender_without_any_permission(self, ods: str) -> None:
        assert rules(run({**event(), "sender_ods": ods})) == ["sender_ods.permission"]

    def test_sender_without_permission_for_this_type(self) -> None:
        assert rules(run({**event(), "vaccine_type": "FLU"})) == ["sender_ods.permission"]  # RAVS has no FLU

    def test_action_needs_its_letter(self) -> None:
        config = b'[{"supplier": "S", "ods_codes": ["ODS1"], "permissions": ["RSV.CR"]}]'
        mapping = b'[{"vacc_type": "RSV", "diseases": []}]'
        only_create = parse_permissions(config, mapping)
        raw = msgspec.json.encode({**event(), "sender_ods": "ods1"})
        assert isinstance(validate_event(raw, permissions=only_create, now=NOW), ValidEvent)
        update = msgspec.json.encode({**event(ACTION_FLAG="UPDATE"), "sender_ods": "ODS1"})
        assert rules(validate_event(update, permissions=only_create, now=NOW)) == ["ACTION_FLAG.permission"]

    @pytest.mark.parametrize(
        ("source", "rule"),
        [("", "mandatory"), ("a\nb", "control_char"), ("a ", "whitespace"), ("s" * 101, "max_length")],
    )
    def test_source_system(self, source: str, rule: str) -> None:
        assert rules(run({**event(), "source_system": source})) == [f"source_system.{rule}"]


class TestStructure:
    @pytest.mark.parametrize(
        ("raw", "rule"),
        [
            (b"", "event.json"),
            (b"{", "event.json"),
            (b"\xff\xfe{}", "event.json"),
            (b'{"vaccine_type": "\\ud800"}', "event.json"),
            (b"[]", "event.type"),
            (b"null", "event.type"),
            (b'"text"', "event.type"),
            (b"{}", "vaccine_type.missing"),
            (b"x" * (MAX_EVENT_BYTES + 1), "event.too_large"),
        ],
    )
    def test_raw_bytes(self, raw: bytes, rule: str) -> None:
        assert rules(run(raw)) == [rule]

    @pytest.mark.parametrize(
        ("change", "rule"),
        [
            ({"priority": "high"}, "event.unknown_field"),
            ({"record": {"NHS_NUMBR": "9674963871"}}, "record.unknown_field"),
            ({"record": {"NHS_NUMBER": None}}, "NHS_NUMBER.type"),
            ({"record": {"DOSE_SEQUENCE": 1}}, "DOSE_SEQUENCE.type"),
            ({"record": []}, "record.type"),
            ({"vaccine_type": 5}, "vaccine_type.type"),
            ({"received_at": "2026-11-25T11:00:00"}, "received_at.type"),
            ({"received_at": "yesterday"}, "received_at.type"),
            ({"schema_version": "1"}, "schema_version.type"),
            ({"schema_version": 3}, "schema_version.unsupported"),
            ({"schema_version": 0}, "schema_version.unsupported"),
        ],
    )
    def test_shape(self, change: dict[str, Any], rule: str) -> None:
        raw = event()
        if isinstance(change.get("record"), dict):
            raw["record"] = change.pop("record")
        raw.update(change)
        assert rules(run(raw)) == [rule]

    def test_missing_envelope_fields(self) -> None:
        for key in ("sender_ods", "source_system", "record"):
            raw = event()
            del raw[key]
            assert rules(run(raw)) == [f"{key}.missing"]

    @pytest.mark.parametrize("raw", [None, "text", 5, {"a": 1}, ["x"]])
    def test_non_bytes_input_is_refused_not_raised(self, raw: Any) -> None:
        assert rules(validate_event(raw, permissions=P, now=NOW)) == ["event.json"]

    def test_bytearray_and_memoryview_are_read(self) -> None:
        data = msgspec.json.encode(event())
        assert isinstance(validate_event(bytearray(data), permissions=P, now=NOW), ValidEvent)
        assert isinstance(validate_event(memoryview(data), permissions=P, now=NOW), ValidEvent)


class TestValidateRecord:
    def test_none_means_absent_and_missing_keys_are_empty(self) -> None:
        row: dict[str, str | None] = {**sample_row(), "NHS_NUMBER": None}
        del row["DOSE_AMOUNT"]
        record = validate_record("RSV", "X8E5B", row, permissions=P, now=NOW)
        assert isinstance(record, Record)
        assert record.NHS_NUMBER == ""
        assert record.DOSE_AMOUNT == ""

    def test_unknown_key_and_csv_overflow_key(self) -> None:
        row: dict[Any, Any] = {**sample_row(), None: ["extra"]}
        assert rules(validate_record("RSV", "X8E5B", row, permissions=P, now=NOW)) == ["record.unknown_field"]

    def test_non_string_value(self) -> None:
        row: dict[str, Any] = {**sample_row(), "DOSE_SEQUENCE": 1, "PERSON_POSTCODE": 5}
        assert rules(validate_record("RSV", "X8E5B", row, permissions=P, now=NOW)) == [
            "PERSON_POSTCODE.type",
            "DOSE_SEQUENCE.type",
        ]

    def test_file_name_type_and_sender_are_checked(self) -> None:
        assert rules(validate_record("COVID19", "X8E5B", sample_row(), permissions=P, now=NOW)) == [
            "vaccine_type.unknown"
        ]
        assert rules(validate_record("rsv", "ABCDE", sample_row(), permissions=P, now=NOW)) == ["sender_ods.permission"]

    def test_default_clock_is_now(self) -> None:
        tomorrow = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y%m%d")
        row = {**sample_row(), "PERSON_DOB": tomorrow}
        assert rules(validate_record("RSV", "X8E5B", row, permissions=P)) == ["PERSON_DOB.future"]
        assert isinstance(validate_record("RSV", "X8E5B", sample_row(), permissions=P), Record)


class TestRejection:
    def test_envelope_is_kept_when_readable(self) -> None:
        raw = msgspec.json.encode({**event(NHS_NUMBER="1"), "priority": 1})
        rejection = rejection_for(raw, run(raw))  # type: ignore[arg-type]
        assert (rejection.vaccine_type, rejection.sender_ods, rejection.source_system) == (
            "RSV",
            "X8E5B",
            "unit-test",
        )
        assert [r.rule for r in rejection.reasons] == ["event.unknown_field"]
        assert b"9674963871" not in msgspec.json.encode(rejection)

    @pytest.mark.parametrize("raw", [b"\xff", b"[1]", b'{"vaccine_type": ["x"]}', b'{"sender_ods": "a\\nb"}'])
    def test_unreadable_envelope_is_left_out(self, raw: bytes) -> None:
        rejection = rejection_for(raw, [])
        assert rejection.vaccine_type is None
        assert rejection.sender_ods is None
