"""The batch file writer and reader: exact bytes, round trips in both dialects, file-level refusals."""

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.batchfile import ParsedFile, read_file, render_file
from schemas.columns import COLUMNS
from schemas.delimited import TableError, UnencodableError
from schemas.dialect import NOT_SIGN, PIPE, Dialect
from schemas.record import Reason, Record

FILES = Path(__file__).parent / "data" / "files"
HEADER = "|".join(COLUMNS)
QUOTED_HEADER = '"' + '"|"'.join(COLUMNS) + '"'


def _record(**overrides: str) -> Record:
    values = {name: f"v{index}" for index, name in enumerate(COLUMNS)}
    return Record(**{**values, **overrides})


def _read(data: bytes, dialect: Dialect | None = None) -> ParsedFile:
    return read_file(data, vaccine_type="RSV", sender_ods="X8E5B", dialect=dialect)


def test_exact_bytes_every_field_quoted_crlf_no_bom() -> None:
    data = render_file([_record(NHS_NUMBER='say "hi"|¬')])
    lines = data.split(b"\r\n")
    assert lines[0] == QUOTED_HEADER.encode()
    assert lines[1].startswith(b'"say ""hi""|\xc2\xac"|"v1"|"v2"')
    assert lines[2] == b""  # the last row ends with a line ending too
    assert not data.startswith(b"\xef\xbb\xbf")


def test_matches_csv_quote_all() -> None:
    records = [_record(PERSON_SURNAME='O\'Reilly "Jr"', DOSE_UNIT_TERM="a\r\nb"), Record()]
    expected = io.StringIO()
    writer = csv.writer(expected, delimiter="|", quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(msgspec.structs.astuple(record) for record in records)
    assert render_file(records) == expected.getvalue().encode()


def test_not_sign_dialect_in_cp1252_and_lf() -> None:
    dialect = Dialect(delimiter="¬", encoding="cp1252", line_ending="LF")
    data = render_file([_record(PERSON_SURNAME="DICÉMBRE")], dialect)
    assert data.startswith(b'"NHS_NUMBER"\xac"PERSON_FORENAME"')
    assert b'"DIC\xc9MBRE"' in data
    assert b"\r" not in data
    assert _read(data).records == [_record(PERSON_SURNAME="DICÉMBRE")]


def test_unencodable_value_is_a_clear_error_not_a_question_mark() -> None:
    records = [_record(), _record(PERSON_SURNAME="Łukasiewicz")]
    with pytest.raises(UnencodableError) as caught:
        render_file(records, NOT_SIGN)
    assert (caught.value.row, caught.value.field, caught.value.codepoint) == (2, "PERSON_SURNAME", 0x141)
    assert "Łukasiewicz" not in str(caught.value)


def test_dialect_refuses_unknown_settings() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        Dialect(delimiter=",")  # type: ignore[arg-type]
    assert msgspec.json.decode(b'{"delimiter": "\xc2\xac", "line_ending": "LF"}', type=Dialect).newline == "\n"


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_CP1252_TEXT = st.text(st.characters(codec="cp1252"), max_size=12)
_AWKWARD = ["|", '"', "¬", '""', '"|"', '"¬"', "\r\n", "\n", "\r", "é", "€", " ", ""]
_SPECIAL = st.sampled_from([*_AWKWARD, "日本", "🙂", "\x00"])
_CP1252_SPECIAL = st.sampled_from(_AWKWARD)


def _records(
    text: st.SearchStrategy[str], special: st.SearchStrategy[str] = _SPECIAL
) -> st.SearchStrategy[list[Record]]:
    value = st.one_of(text, special, st.lists(special, max_size=4).map("".join))
    row = st.fixed_dictionaries({name: value for name in COLUMNS}).map(lambda values: Record(**values))
    return st.lists(row, max_size=5)


@settings(max_examples=200)
@given(_records(_TEXT), st.sampled_from([PIPE, Dialect(delimiter="¬"), Dialect(line_ending="LF")]))
def test_round_trip_utf8(records: list[Record], dialect: Dialect) -> None:
    parsed = _read(render_file(records, dialect))
    assert parsed.records == records
    assert [row.number for row in parsed.rows] == list(range(1, len(records) + 1))
    assert parsed.encoding == "utf-8"
    assert parsed.delimiter == dialect.delimiter


@settings(max_examples=200)
@given(_records(_CP1252_TEXT, _CP1252_SPECIAL))
def test_round_trip_cp1252_not_sign(records: list[Record]) -> None:
    data = render_file(records, NOT_SIGN)
    assert _read(data, NOT_SIGN).records == records
    assert _read(data).records == records  # and sniffed, as a provider's file would be


def test_reads_minimal_quoting_lf_and_blank_lines() -> None:
    row = "|".join(["1"] * 34)
    data = f"{HEADER}\n\n{row}\n\n\n{row}\n".encode()
    parsed = _read(data)
    assert [(r.number, r.line) for r in parsed.rows] == [(1, 3), (2, 6)]
    assert parsed.records == [Record(**dict.fromkeys(COLUMNS, "1"))] * 2


def test_header_only_file_has_no_rows() -> None:
    assert _read(render_file([])).rows == ()


def test_row_numbers_skip_blank_lines_and_lines_count_embedded_newlines() -> None:
    data = render_file([_record(PERSON_FORENAME="a\nb"), _record()]).replace(b'\r\n"v0', b'\r\n\r\n"v0')
    parsed = _read(data)
    assert [(r.number, r.line) for r in parsed.rows] == [(1, 3), (2, 6)]


@pytest.mark.parametrize("width", [33, 35])
def test_rows_must_have_exactly_34_fields(width: int) -> None:
    data = (HEADER + "\n" + "|".join(["x"] * width) + "\n").encode()
    (row,) = _read(data).rows
    assert row.record is None
    assert row.reasons == (Reason(field="row", rule="row.columns", message=f"row has {width} fields, expected 34"),)


def test_the_validator_sees_every_row_and_its_reasons_are_kept() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def validator(vaccine_type: str, sender_ods: str, record: Mapping[str, str | None]) -> Record | list[Reason]:
        seen.append((vaccine_type, sender_ods, record["UNIQUE_ID"]))
        if record["UNIQUE_ID"] == "bad":
            return [Reason(field="UNIQUE_ID", rule="UNIQUE_ID.test", message="UNIQUE_ID is bad")]
        return Record(**{k: v or "" for k, v in record.items()})

    data = render_file([_record(UNIQUE_ID="good"), _record(UNIQUE_ID="bad")])
    parsed = read_file(data, vaccine_type="FLU", sender_ods="YGM41", validator=validator)
    assert seen == [("FLU", "YGM41", "good"), ("FLU", "YGM41", "bad")]
    assert [r.UNIQUE_ID for r in parsed.records] == ["good"]
    assert [(f.number, f.reasons[0].rule) for f in parsed.failures] == [(2, "UNIQUE_ID.test")]


@pytest.mark.parametrize(
    ("data", "rule", "message"),
    [
        (b"", "header.missing", "empty"),
        (b"\xef\xbb\xbf" + HEADER.encode() + b"\n", "file.bom", "UTF-8 byte-order mark"),
        ("\ufeff".join(["", HEADER]).encode("utf-16"), "file.bom", "UTF-16"),
        (b"\n" + HEADER.encode() + b"\n", "header.invalid", "first line is blank"),
        (HEADER.lower().encode(), "header.invalid", "column 1 should be NHS_NUMBER (letter case"),
        ((HEADER + "|").encode(), "header.invalid", "35 columns, expected 34"),
        (HEADER.replace("|", ";").encode(), "header.invalid", "1 columns, expected 34"),
        (HEADER.replace("PERSON_FORENAME|PERSON_SURNAME", "PERSON_SURNAME|PERSON_FORENAME").encode(),
         "header.invalid", "column 2 should be PERSON_FORENAME (found column PERSON_SURNAME here"),
        (HEADER.encode() + b"\n\x81\x8d\n", "file.encoding", "not valid utf-8 or cp1252 (byte 0x81"),
    ],
)  # fmt: skip
def test_file_level_refusals(data: bytes, rule: str, message: str) -> None:
    with pytest.raises(TableError) as caught:
        _read(data)
    assert caught.value.rule == rule
    assert message in caught.value.message


def test_header_error_never_quotes_a_patient_row() -> None:
    sample = (FILES / "RSV_Vaccinations_v5_X8E5B_20240610T18332501.csv").read_bytes()
    headerless = sample.split(b"\n", 1)[1]
    with pytest.raises(TableError) as caught:
        _read(headerless)
    assert "9674963871" not in caught.value.message
    assert "SABINA" not in caught.value.message


def test_route_dialect_is_enforced() -> None:
    with pytest.raises(TableError) as caught:
        _read(render_file([_record()]), NOT_SIGN)  # UTF-8 `|` file on a cp1252 `¬` route
    assert caught.value.rule == "header.delimiter"
    with pytest.raises(TableError) as caught:
        _read(render_file([_record(PERSON_SURNAME="É")], NOT_SIGN), Dialect(delimiter="¬"))
    assert caught.value.rule == "file.encoding"


def test_reads_the_reference_samples() -> None:
    rsv = _read((FILES / "RSV_Vaccinations_v5_X8E5B_20240610T18332501.csv").read_bytes())
    (record,) = rsv.records
    assert record.PERSON_SURNAME == "GREIR"
    assert record.PERFORMING_PROFESSIONAL_SURNAME == "O\\'Reilly"  # backslash kept, as the receiver does
    assert record.DOSE_SEQUENCE == "1"  # unquoted in the sample
    mmr = _read((FILES / "MMR_Vaccinations_v5_X26_20250730T12000001.csv").read_bytes())
    assert (mmr.encoding, len(mmr.rows)) == ("utf-8", 3)
    windows = _read((FILES / "MMR_Vaccinations_v5_X8E5B_20250730T12000001.csv").read_bytes())
    assert (windows.encoding, len(windows.rows)) == ("cp1252", 7)
    assert windows.rows[6].record is not None
    assert windows.rows[6].record.PERSON_SURNAME == "DICÉMBRE"
