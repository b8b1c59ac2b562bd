"""Quoted, delimited text tables: the layer that batch files and extended-attribute files share.

Writing is hand-rolled because it is on the batcher's hot path and the rule is simple (quote every
field, double any `"`); reading uses the csv module because files handed in by providers may use
any quoting the receiver's `csv.DictReader` accepts, and matching its parse is the point.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from schemas.dialect import DELIMITERS, Dialect
from schemas.record import Reason

_BOMS: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\xef\xbb\xbf", "UTF-8"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


class TableError(ValueError):
    """The file as a whole is unreadable: the receiver would refuse it before looking at any row.

    `rule` is a stable id for machines; the message never quotes file content, because a file
    without its header starts with a patient's row.
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class UnencodableError(ValueError):
    """A value cannot be written in the route's encoding.

    Raised instead of substituting '?', which would silently change a name or identifier in a
    clinical record. Carries the position and the code point, never the value.
    """

    def __init__(self, *, row: int, field: str, codepoint: int, encoding: str) -> None:
        super().__init__(f"row {row} field {field}: character U+{codepoint:04X} cannot be encoded in {encoding}")
        self.row = row
        self.field = field
        self.codepoint = codepoint
        self.encoding = encoding


class RawRow(NamedTuple):
    number: int  # 1..n over non-blank data rows: the n of a BusAck MESSAGE_HEADER_ID `uuid^n`
    line: int  # physical line the row starts on, for people opening the file in an editor
    fields: list[str]


class Table(NamedTuple):
    encoding: str
    delimiter: str
    rows: list[RawRow]


def width_reason(raw: RawRow, width: int) -> Reason | None:
    """Stricter than the receiver, which pads or drops values silently and so hides a shifted column."""
    if len(raw.fields) == width:
        return None
    return Reason(field="row", rule="row.columns", message=f"row has {len(raw.fields)} fields, expected {width}")


def render_line(values: Sequence[str], delimiter: str) -> str:
    """One row without its line ending: every field quoted, `"` doubled."""
    sep = '"' + delimiter + '"'
    line = '"' + sep.join(values) + '"'
    # With every field quoted a clean row has exactly 2 * width quote characters, so one count over
    # the joined line replaces a membership test per value; escaping runs only when a value has `"`.
    if line.count('"') != 2 * len(values):
        line = '"' + sep.join([value.replace('"', '""') for value in values]) + '"'
    return line


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]], dialect: Dialect) -> bytes:
    """Every field quoted, `"` doubled, one line per row, a line ending after the last row too."""
    width = len(header)
    delimiter = dialect.delimiter
    lines = [render_line(header, delimiter)]
    append = lines.append
    for number, values in enumerate(rows, start=1):
        if len(values) != width:
            raise ValueError(f"row {number} has {len(values)} values, expected {width}")
        append(render_line(values, delimiter))
    append("")
    text = dialect.newline.join(lines)
    try:
        return text.encode(dialect.encoding)
    except UnicodeEncodeError as error:
        raise _locate_unencodable(lines, header, error.start, dialect) from None


def _locate_unencodable(lines: list[str], header: Sequence[str], start: int, dialect: Dialect) -> UnencodableError:
    """Map a character offset in the whole text back to (row, field); only runs on the error path."""
    offset = 0
    step = len(dialect.newline)
    for number, line in enumerate(lines):
        if start < offset + len(line):
            fields = next(csv.reader([line], delimiter=dialect.delimiter))
            for name, value in zip(header, fields, strict=False):
                try:
                    value.encode(dialect.encoding)
                except UnicodeEncodeError as error:
                    codepoint = ord(value[error.start])
                    return UnencodableError(row=number, field=name, codepoint=codepoint, encoding=dialect.encoding)
            break
        offset += len(line) + step
    raise AssertionError("unencodable character not found in any row")  # pragma: no cover


def decode(data: bytes, dialect: Dialect | None) -> tuple[str, str]:
    """Text and the encoding used: the route's, or UTF-8 then cp1252 like the receiver (VED-754).

    The receiver falls back part-way through a file, keeping the rows it had already decoded as
    UTF-8; here the fallback applies to the whole file. The two differ only for a file mixing both
    encodings, whose non-ASCII characters are wrong either way.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise TableError(
                "file.bom",
                f"file starts with a {name} byte-order mark; the receiver decodes plain UTF-8 "
                "and would refuse the header",
            )
    encodings = (dialect.encoding,) if dialect is not None else ("utf-8", "cp1252")
    bad_offset = 0
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as error:
            bad_offset = error.start
    raise TableError(
        "file.encoding",
        f"file is not valid {' or '.join(encodings)} (byte 0x{data[bad_offset]:02X} at offset {bad_offset})",
    )


def read_table(data: bytes, header: Sequence[str], dialect: Dialect | None = None) -> Table:
    """Decode, check the header exactly, and split the rows; row content is the caller's business.

    With no dialect the delimiter is taken from the header line (the only place it can be seen
    without knowing the layout); with one, the route's delimiter and encoding are enforced.
    """
    text, encoding = decode(data, dialect)
    if not text:
        raise TableError("header.missing", "file is empty: it has no header row")
    first_line = text.partition("\n")[0]
    delimiter: str
    if dialect is not None:
        delimiter = dialect.delimiter
    else:
        delimiter = next((d for d in DELIMITERS if d in first_line), DELIMITERS[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        found = next(reader, [])
        _check_header(found, header, delimiter, first_line)
        rows: list[RawRow] = []
        before = reader.line_num
        for fields in reader:
            if fields:
                rows.append(RawRow(len(rows) + 1, before + 1, fields))
            before = reader.line_num
    except csv.Error as error:
        raise TableError("file.malformed", f"line {reader.line_num}: {error}") from None
    return Table(encoding, delimiter, rows)


def _check_header(found: list[str], expected: Sequence[str], delimiter: str, first_line: str) -> None:
    if found == list(expected):
        return
    if not found or found == [""]:
        raise TableError("header.invalid", "the first line is blank; the header must be the first line")
    others = [d for d in DELIMITERS if d != delimiter and d in first_line]
    if len(found) == 1 and others:
        raise TableError("header.delimiter", f"header is delimited by {others[0]!r}, but this route uses {delimiter!r}")
    if len(found) != len(expected):
        raise TableError(
            "header.invalid",
            f"header has {len(found)} columns, expected {len(expected)} "
            f"({delimiter!r}-delimited: {', '.join(expected[:2])}, …)",
        )
    for position, (got, want) in enumerate(zip(found, expected, strict=True), start=1):
        if got != want:
            hint = ""
            if got.upper() == want:
                hint = " (letter case differs; the receiver compares case-sensitively)"
            elif got in expected:
                hint = f" (found column {got} here, which belongs at position {expected.index(got) + 1})"
            raise TableError("header.invalid", f"header column {position} should be {want}{hint}")
