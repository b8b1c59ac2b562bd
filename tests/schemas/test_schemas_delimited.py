"""The quoted, delimited table layer (schemas/delimited.py): what writing refuses and where, and
what reading says, word for word, about a file it cannot read (the messages reach the provider)."""

from __future__ import annotations

import pytest

from schemas.delimited import TableError, UnencodableError, read_table, render_table
from schemas.dialect import Dialect

HEADER = ["A", "B", "C"]
CP1252 = Dialect(encoding="cp1252")


def table_error(data: bytes, header: list[str], dialect: Dialect | None = None) -> TableError:
    with pytest.raises(TableError) as caught:
        read_table(data, header, dialect)
    return caught.value


@pytest.mark.parametrize("line_ending", ["CRLF", "LF"])
@pytest.mark.parametrize(
    ("rows", "row", "field"),
    [
        ([["1", "2", "\u0141"]], 1, "C"),  # the last character of the first row
        ([["1", "2", "3"], ["4", "5", "6"], ["7", "8", "x\u0141"]], 3, "C"),  # the end of a later row
        ([["1", "2", "3"], ["\u0141", "5", "6"]], 2, "A"),  # the first character of a row
        ([["1", "2", "3"], ["4", "\u0141y", "6"]], 2, "B"),
    ],
)
def test_an_unencodable_value_is_refused_with_its_row_field_and_code_point(
    rows: list[list[str]], row: int, field: str, line_ending: str
) -> None:
    dialect = Dialect(encoding="cp1252", line_ending=line_ending)  # type: ignore[arg-type]
    with pytest.raises(UnencodableError) as caught:
        render_table(HEADER, rows, dialect)
    error = caught.value
    assert (error.row, error.field, error.codepoint, error.encoding) == (row, field, 0x141, "cp1252")
    assert str(error) == f"row {row} field {field}: character U+0141 cannot be encoded in cp1252"


def test_a_row_of_the_wrong_width_is_refused_by_its_number() -> None:
    with pytest.raises(ValueError, match=r"^row 1 has 2 values, expected 3$"):
        render_table(HEADER, [["1", "2"]], CP1252)
    with pytest.raises(ValueError, match=r"^row 2 has 4 values, expected 3$"):
        render_table(HEADER, [["1", "2", "3"], ["1", "2", "3", "4"]], CP1252)


def test_a_byte_order_mark_is_refused_with_the_reason() -> None:
    error = table_error(b"\xef\xbb\xbfA|B|C\r\n", HEADER)
    assert error.rule == "file.bom"
    assert error.message == (
        "file starts with a UTF-8 byte-order mark; the receiver decodes plain UTF-8 and would refuse the header"
    )


def test_an_empty_file_has_no_header() -> None:
    error = table_error(b"", HEADER)
    assert (error.rule, error.message) == ("header.missing", "file is empty: it has no header row")


def test_without_a_delimiter_in_the_header_line_the_first_is_assumed() -> None:
    table = read_table(b'"A"\r\n"1"\r\n', ["A"])
    assert table.delimiter == "|"
    assert [raw.fields for raw in table.rows] == [["1"]]


def test_a_field_over_the_csv_limit_makes_the_file_malformed() -> None:
    data = b'"A"|"B"|"C"\r\n"1"|"2"|"3"\r\n"1"|"' + b"x" * 200_000 + b'"|"3"\r\n'
    error = table_error(data, HEADER)
    assert error.rule == "file.malformed"
    assert error.message.startswith("line 3: field larger than field limit")


@pytest.mark.parametrize("first_line", [b"", b'""'])
def test_a_blank_first_line_is_not_a_header(first_line: bytes) -> None:
    error = table_error(first_line + b'\r\n"A"|"B"|"C"\r\n', HEADER)
    assert (error.rule, error.message) == (
        "header.invalid", "the first line is blank; the header must be the first line"
    )


def test_a_header_in_another_delimiter_names_both() -> None:
    error = table_error("A¬B¬C\r\n".encode(), HEADER, Dialect(delimiter="|"))
    assert (error.rule, error.message) == ("header.delimiter", "header is delimited by '¬', but this route uses '|'")


def test_a_header_of_the_wrong_width_shows_the_first_two_expected_columns() -> None:
    error = table_error(b"A|B\r\n", HEADER)
    assert error.rule == "header.invalid"
    assert error.message == "header has 2 columns, expected 3 ('|'-delimited: A, B, …)"
    error = table_error(b"A|B\r\n", HEADER, Dialect(delimiter="|"))
    assert error.message == "header has 2 columns, expected 3 ('|'-delimited: A, B, …)"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"A|X|C", "header column 2 should be B"),
        (b"A|b|C", "header column 2 should be B (letter case differs; the receiver compares case-sensitively)"),
        (b"A|C|B", "header column 2 should be B (found column C here, which belongs at position 3)"),
        (b"C|B|A", "header column 1 should be A (found column C here, which belongs at position 3)"),
    ],
)
def test_a_wrong_header_column_is_named_with_a_hint(line: bytes, message: str) -> None:
    error = table_error(line + b"\r\n", HEADER)
    assert (error.rule, error.message) == ("header.invalid", message)
