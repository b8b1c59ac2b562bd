"""What a handed-in file becomes, byte for byte (workers/filesource/records.py): the source headers
that lead back to the provider's file, row and line, a broken row's dead letter, a file-level
reason, and the original text of a row as the provider wrote it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from schemas.batchfile import ParsedRow, parse_only, read_file
from schemas.record import Reason
from topics import headers as h
from topics.catalogue import REJECTED
from workers.base.settings import FileSettings
from workers.filesource.records import (
    RowTexts,
    dead_letter_row,
    file_reason,
    printable_name,
    source_headers,
    transactional_id_for,
)

DATA = Path(__file__).parent / "data"
MMR = "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"
SHA = "ab" * 32
SOURCE = ["vaxflow.source.file", "vaxflow.source.sha256", "vaxflow.source.row", "vaxflow.source.line"]


def test_source_headers_name_file_hash_row_and_line() -> None:
    row = ParsedRow(number=7, line=12, record=None)
    assert source_headers(MMR, SHA, row) == [
        ("vaxflow.source.file", MMR.encode()),
        ("vaxflow.source.sha256", SHA.encode()),
        ("vaxflow.source.row", b"7"),
        ("vaxflow.source.line", b"12"),
    ]


def test_a_broken_row_becomes_a_dead_letter_of_its_own_text() -> None:
    row = ParsedRow(number=3, line=4, record=None)
    reasons = [Reason(field="row", rule="row.columns", message="row has 33 columns, not 34"),
               Reason(field="NHS_NUMBER", rule="nhs.mod11", message="NHS_NUMBER fails mod 11")]
    value, headers = dead_letter_row(MMR, SHA, row, "a|b|\u00e9", "cp1252", reasons)
    assert value == "a|b|\u00e9".encode("cp1252")  # in the file's own encoding
    assert headers == [
        (h.DLQ_TOPIC, f"filesource:{MMR}".encode()),
        (h.DLQ_PARTITION, b"-1"),
        (h.DLQ_OFFSET, b"-1"),
        (h.DLQ_STAGE, b"filesource"),
        (h.DLQ_EXC_CLASS, b"RowStructureError"),
        (h.DLQ_EXC_MESSAGE, b"row:row.columns; NHS_NUMBER:nhs.mod11"),
        (h.DLQ_REASONS, orjson.dumps([{"field": r.field, "rule": r.rule, "message": r.message} for r in reasons])),
        *source_headers(MMR, SHA, row),
    ]
    # it never reached the raw topic, so it carries no origin
    assert h.ORIGIN not in dict(headers)


def test_a_dead_letter_too_big_for_the_rejected_topic_is_truncated_and_says_so() -> None:
    limit = REJECTED.max_message_bytes - 64 * 1024  # headroom for the headers
    row = ParsedRow(number=1, line=2, record=None)
    reasons = [Reason(field="row", rule="row.columns", message="m")]
    value, headers = dead_letter_row(MMR, SHA, row, "x" * limit, "utf-8", reasons)
    assert value == b"x" * limit
    assert "vaxflow.source.truncated" not in dict(headers)
    value, headers = dead_letter_row(MMR, SHA, row, "x" * (limit + 1), "utf-8", reasons)
    assert value == b"x" * limit
    assert headers[-1] == ("vaxflow.source.truncated", b"true")
    assert [key for key, _ in headers[-5:-1]] == SOURCE


def test_a_file_reason_is_about_the_file() -> None:
    assert file_reason("file.name", "bad name") == Reason(field="file", rule="file.name", message="bad name")


def test_printable_name_replaces_undecodable_bytes_only() -> None:
    assert printable_name("MMR_\u00e9.csv") == "MMR_\u00e9.csv"
    assert printable_name("MMR_\udcff.csv") == "MMR_\ufffd.csv"


def test_transactional_id_is_a_digest_of_the_resolved_directory(tmp_path: Path) -> None:
    digest = hashlib.sha256(str(tmp_path.resolve()).encode()).hexdigest()
    assert transactional_id_for(FileSettings(), tmp_path) == f"vaxflow-filesource-{digest[:16]}"


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"], ids=["crlf", "cr", "lf"])
def test_a_row_spanning_lines_keeps_the_providers_line_endings(newline: bytes) -> None:
    header, *rows = (DATA / MMR).read_bytes().split(b"\n")
    rows = [row for row in rows if row]
    rows[1] = rows[1].replace(b'"TANESHA"', b'"TAN' + newline + b'ESHA"')
    assert newline in rows[1]
    text = newline.join([header, *rows]) + newline
    parsed = read_file(text, vaccine_type="MMR", sender_ods="X8E5B", validator=parse_only)
    assert [row.line for row in parsed.rows] == [2, 3, 5]
    texts = RowTexts(text, parsed)
    assert texts(parsed.rows[1]).encode() == rows[1]  # both physical lines, the break as written
    assert texts(parsed.rows[2]).encode() == rows[2]  # the last row, without the final line end
    assert texts(parsed.rows[0]).encode() == rows[0]


def test_a_row_keeps_trailing_blanks_and_letters_only_line_ends_go() -> None:
    header, *rows = (DATA / MMR).read_bytes().split(b"\n")
    rows = [row for row in rows if row]
    rows[0] = rows[0] + b"|X "  # an extra column ending in a blank
    rows[1] = rows[1] + b"|X"  # and one ending in a letter
    text = b"\r\n".join([header, *rows]) + b"\r\n"
    parsed = read_file(text, vaccine_type="MMR", sender_ods="X8E5B", validator=parse_only)
    texts = RowTexts(text, parsed)
    assert texts(parsed.rows[1]).encode() == rows[1]
    assert texts(parsed.rows[0]).encode() == rows[0]
