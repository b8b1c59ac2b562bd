"""Acknowledgements: the receiver's exact InfAck bytes, BusAck CSV/JSON round trips, ack file names."""

import ast
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.acks import (
    AckFormatError,
    AckName,
    BusAckRow,
    ack_file_kind,
    ack_file_name,
    ack_timestamp,
    busack_failure,
    busack_report,
    parse_busack_csv,
    parse_busack_json,
    parse_infack,
    render_busack_csv,
    render_busack_json,
    render_infack_failure,
    render_infack_success,
    row_number_from_header_id,
    split_local_id,
)


def _reference_infacks() -> list[tuple[str, bytes]]:
    lines = [
        line
        for line in (Path(__file__).parent / "data" / "reference_infacks.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return [(key, ast.literal_eval(body).encode()) for key, body in zip(lines[::2], lines[1::2], strict=True)]


REFERENCE = _reference_infacks()
RECEIVED = "20240708T12140000"


def test_reference_examples_loaded() -> None:
    assert len(REFERENCE) == 2


def test_infack_success_bytes_are_the_receivers() -> None:
    key, expected = REFERENCE[0]
    assert render_infack_success("3f1c2a9e-0000-4000-8000-000000000001", RECEIVED) == expected
    assert key == "ack/" + ack_file_name("RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv", "InfAck", RECEIVED)


def test_infack_failure_bytes_are_the_receivers() -> None:
    key, expected = REFERENCE[1]
    assert render_infack_failure("3f1c2a9e-0000-4000-8000-000000000002", RECEIVED) == expected
    assert key == "ack/" + ack_file_name("FLU_Vaccinations_v5_YGM41_20240708T12130100.csv", "InfAck", RECEIVED)


@pytest.mark.parametrize(("index", "success"), [(0, True), (1, False)])
def test_parse_reference_infacks(index: int, success: bool) -> None:
    ack = parse_infack(REFERENCE[index][1])
    assert ack.success is success
    assert ack.MESSAGE_DELIVERY is success
    assert ack.RECEIVED_TIME == RECEIVED
    assert ack.MESSAGE_HEADER_ID.endswith(str(index + 1))
    assert (ack.MAILBOX_FROM, ack.LOCAL_ID) == ("", "")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"MESSAGE_HEADER_ID|X\r\n",
        REFERENCE[0][1] + b"another|row\r\n",
        REFERENCE[0][1].replace(b"|True", b"|Yes"),
    ],
)
def test_parse_infack_refuses_other_shapes(data: bytes) -> None:
    with pytest.raises(AckFormatError):
        parse_infack(data)


def _failure(row: int, outcome: str | None) -> BusAckRow:
    return busack_failure("0f0e-uuid", row, "MMR_X^HTTPS://ravsTest-123", RECEIVED, outcome)


def test_busack_csv_is_the_receivers_hand_joined_format() -> None:
    data = render_busack_csv([_failure(3, "Validation errors:\n  NHS number\tis not valid ")])
    header, row, end = data.decode().split("\n")
    assert header.startswith("MESSAGE_HEADER_ID|HEADER_RESPONSE_CODE|")
    assert header.endswith("|MESSAGE_DELIVERY")
    assert row == (
        "0f0e-uuid^3|Fatal Error|Fatal|Fatal Error|30002|Business|30002|"
        "Business Level Response Value - Processing Error|20240708T12140000||MMR_X^HTTPS://ravsTest-123||"
        "Validation errors: NHS number is not valid|False"
    )
    assert end == ""


def test_busack_csv_round_trip_and_pipe_in_outcome() -> None:
    rows = [_failure(3, "a | b|c"), _failure(7, None)]
    parsed = parse_busack_csv(render_busack_csv(rows))
    assert [r.row_number for r in parsed] == [3, 7]
    assert parsed[0].OPERATION_OUTCOME == "a|b|c"  # the receiver squeezes spaces next to '|'
    assert parsed[1].OPERATION_OUTCOME == "An unhandled error occurred during batch processing"
    assert parsed[1] == rows[1]
    assert split_local_id(parsed[0].LOCAL_ID) == ("MMR_X", "HTTPS://ravsTest-123")


def test_busack_json_round_trip_and_layout() -> None:
    report = busack_report(
        provider="RAVS",
        batch_file_key="MMR_Vaccinations_v5_X26_20250730T12000001.csv",
        message_id="0f0e-uuid",
        total_records=3,
        failures=[_failure(3, "Validation errors: bad")],
        ingestion_start=1722340000,
        ingestion_end=1722340042,
        generated=datetime(2025, 7, 30, 12, 0, 42, 123456, tzinfo=UTC),
    )
    data = render_busack_json(report)
    assert parse_busack_json(data) == report
    loaded = json.loads(data)
    assert list(loaded) == [
        "system", "version", "generatedDate", "provider", "filename", "messageHeaderId", "summary", "failures",
    ]  # fmt: skip
    assert loaded["generatedDate"] == "2025-07-30T12:00:42.000Z"
    assert loaded["filename"] == "MMR_Vaccinations_v5_X26_20250730T12000001"
    assert loaded["summary"] == {
        "totalRecords": 3,
        "succeeded": 2,
        "failed": 1,
        "ingestionTime": {"start": 1722340000, "end": 1722340042},
    }
    assert loaded["failures"] == [
        {
            "rowId": 3,
            "responseCode": "30002",
            "responseDisplay": "Business Level Response Value - Processing Error",
            "severity": "Fatal",
            "localId": "MMR_X^HTTPS://ravsTest-123",
            "operationOutcome": "Validation errors: bad",
        }
    ]
    assert data.startswith(b'{\n  "system": "Immunisation FHIR API Batch Report",\n  "version": 1,')


def test_busack_json_refuses_other_shapes() -> None:
    with pytest.raises(AckFormatError):
        parse_busack_json(b'{"system": "x"}')
    with pytest.raises(AckFormatError):
        parse_busack_json(b"not json")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "ack/RSV_Vaccinations_v5_X8E5B_20240708T12130100_InfAck_20240708T12140000.csv",
            AckName(
                kind="InfAck",
                format="csv",
                batch_file_key="RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv",
                created_at="20240708T12140000",
            ),
        ),
        (
            "forwardedFile/FLU_Vaccinations_v5_YGM41_20240708T12130100_BusAck_20240708T12140000.json",
            AckName(
                kind="BusAck",
                format="json",
                batch_file_key="FLU_Vaccinations_v5_YGM41_20240708T12130100.csv",
                created_at="20240708T12140000",
            ),
        ),
        (
            "FLU_Vaccinations_v5_YGM41_20240708T12130100_BusAck_20240708T12140000.csv",
            AckName(
                kind="BusAck",
                format="csv",
                batch_file_key="FLU_Vaccinations_v5_YGM41_20240708T12130100.csv",
                created_at="20240708T12140000",
            ),
        ),
        ("RSV_Vaccinations_v5_X8E5B_20240708T12130100_InfAck_20240708T12140000.json", None),
        ("RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv", None),
        ("RSV_Vaccinations_v5_X8E5B_20240708T12130100_InfAck_2024.csv", None),
    ],
)
def test_ack_file_kind(name: str, expected: AckName | None) -> None:
    assert ack_file_kind(name) == expected


def test_ack_names_round_trip_and_keep_the_dat_quirk() -> None:
    key = "RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv"
    created = ack_timestamp(datetime(2024, 7, 8, 13, 14, tzinfo=UTC))
    assert created == "20240708T13140000"
    for kind in ("InfAck", "BusAck"):
        name = ack_file_name(key, kind, created)
        found = ack_file_kind(name)
        assert found is not None
        assert (found.kind, found.batch_file_key) == (kind, key)
    assert ack_file_name(key.replace(".csv", ".dat"), "InfAck", created) == key.replace(".csv", ".dat")


def test_local_id_and_header_id_helpers() -> None:
    assert split_local_id("A^B^https://x/y") == ("A^B", "https://x/y")
    assert row_number_from_header_id("3f1c2a9e-0000-4000-8000-000000000001^12") == 12
    for bad in ("no-caret", "uuid^", "uuid^0", "uuid^x"):
        with pytest.raises(AckFormatError):
            row_number_from_header_id(bad)
    with pytest.raises(AckFormatError):
        split_local_id("no-caret")
