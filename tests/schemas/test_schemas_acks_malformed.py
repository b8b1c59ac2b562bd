"""Issue 16: a malformed acknowledgement raises AckFormatError with a reason, never anything else.

Each input below once escaped the parser as a plain ValueError or csv.Error, which the ack reader
does not expect: the worker crash-looped on the same message and every acknowledgement behind it
waited for ever. The reason is a short fixed word (a metric label), the message says where.
"""

from __future__ import annotations

import pytest

from schemas.acks import (
    INFACK_COLUMNS,
    AckFormatError,
    busack_failure,
    parse_busack_csv,
    parse_infack,
    render_busack_csv,
    render_infack_success,
    row_number_from_header_id,
)

CREATED = "20250101T12050000"


def busack_with_header_id(header_id: str) -> bytes:
    good = render_busack_csv([busack_failure("h", 2, "ID^https://x", CREATED, "bad")])
    return good.replace(b"h^2", header_id.encode())


@pytest.mark.parametrize(
    "header_id",
    ["h^\u00b2", "h^\u0663", "h^" + "9" * 5000, "h^1" + "0" * 20, "h^", "h^0", "h^-1", "h^ 1", "no-caret"],
    ids=["superscript-two", "arabic-indic-three", "5000-digits", "beyond-any-file", "empty", "zero", "negative",
         "space", "no-caret"],
)
def test_a_bad_row_number_is_an_ack_format_error(header_id: str) -> None:
    with pytest.raises(AckFormatError) as caught:
        row_number_from_header_id(header_id)
    assert caught.value.reason == "row_number"
    with pytest.raises(AckFormatError) as parsed:  # found while parsing, not later when the row is used
        parse_busack_csv(busack_with_header_id(header_id))
    assert parsed.value.reason == "row_number"
    assert header_id not in str(parsed.value) or header_id in ("h^", "h^0")  # no 5,000-digit messages


def test_good_row_numbers_still_read() -> None:
    assert row_number_from_header_id("abc^1") == 1
    assert row_number_from_header_id("a^b^123456789") == 123456789
    [row] = parse_busack_csv(busack_with_header_id("h^7"))
    assert row.row_number == 7


def test_an_infack_field_of_200_kb_is_an_ack_format_error() -> None:
    good = render_infack_success("h", CREATED)
    huge = good.replace(b"Success", b"S" * 200_000, 1)
    with pytest.raises(AckFormatError) as caught:
        parse_infack(huge)
    assert caught.value.reason == "field_too_large"
    assert parse_infack(good).success  # the limit is not lowered for good files


def test_other_infack_faults_carry_a_reason() -> None:
    with pytest.raises(AckFormatError) as header:
        parse_infack(b"not|an|infack\r\n")
    assert header.value.reason == "format"
    with pytest.raises(AckFormatError) as encoding:
        parse_infack("|".join(INFACK_COLUMNS).encode() + b"\r\n\xff\xfe\r\n")
    assert encoding.value.reason == "encoding"
