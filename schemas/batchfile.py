"""The vaccination batch file: 34 quoted columns, one event per row (spec digest section b).

The writer emits only the canonical form (every field quoted, UTF-8 without BOM by default); the
reader accepts what the receiver accepts, except that a row must have exactly 34 fields. The
receiver silently drops extra values and treats missing trailing ones as empty, which hides a
shifted column; vaxflow reports it instead (digest section h.6).
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import msgspec

from schemas.columns import COLUMNS
from schemas.delimited import RawRow, read_table, render_line, render_table, width_reason
from schemas.dialect import PIPE, Dialect
from schemas.record import Reason, Record

# (vaccine_type, sender_ods, row by column name) -> the canonical record or why it was refused.
# Bind permissions and clock first, e.g. functools.partial(validate_record, permissions=..., now=...).
RowValidator = Callable[[str, str, Mapping[str, str | None]], Record | list[Reason]]


class ParsedRow(msgspec.Struct, frozen=True, kw_only=True):
    number: int  # 1..n over non-blank rows, as in the BusAck's MESSAGE_HEADER_ID `uuid^n`
    line: int
    record: Record | None
    reasons: tuple[Reason, ...] = ()


class ParsedFile(msgspec.Struct, frozen=True, kw_only=True):
    encoding: str
    delimiter: str
    rows: tuple[ParsedRow, ...]

    @property
    def records(self) -> list[Record]:
        return [row.record for row in self.rows if row.record is not None]

    @property
    def failures(self) -> list[ParsedRow]:
        return [row for row in self.rows if row.record is None]


def parse_only(vaccine_type: str, sender_ods: str, record: Mapping[str, str | None]) -> Record | list[Reason]:
    """Structure without rules: for tools that only need the values (round trips, the simulator)."""
    return Record(**{name: value or "" for name, value in record.items()})


def render_file(records: Iterable[Record], dialect: Dialect = PIPE) -> bytes:
    """The file bytes; raises UnencodableError rather than writing '?' for a cp1252 route."""
    return render_table(COLUMNS, map(msgspec.structs.astuple, records), dialect)


# The form of a row on vaccination.events.valid (docs/decisions/0011-valid-topic-rows.md): the
# canonical line of the default dialect, so assembling a file is a join of bytes.
ROW_DIALECT: Final = PIPE
_HEADER_LINE: Final = render_line(COLUMNS, ROW_DIALECT.delimiter).encode(ROW_DIALECT.encoding)


def render_row(record: Record) -> bytes:
    """One record as the line it will be in a file (without the line ending)."""
    return render_values(msgspec.structs.astuple(record))


def render_values(values: Sequence[str]) -> bytes:
    """render_row of a record given as its 34 values in column order."""
    return render_line(values, ROW_DIALECT.delimiter).encode(ROW_DIALECT.encoding)


def assemble_file(rows: Sequence[bytes], dialect: Dialect = PIPE) -> bytes:
    """The file whose rows are `rows` (from render_row): the same bytes render_file gives.

    Only the line ending may differ from the row dialect: a route with another delimiter or
    encoding would need each row re-rendered, and is refused here rather than written wrongly.
    """
    if dialect.delimiter != ROW_DIALECT.delimiter or dialect.encoding != ROW_DIALECT.encoding:
        raise ValueError(f"rows are {ROW_DIALECT.delimiter!r}/{ROW_DIALECT.encoding}; re-render them for this dialect")
    newline = dialect.newline.encode()
    return newline.join([_HEADER_LINE, *rows, b""])


def read_file(
    data: bytes,
    *,
    vaccine_type: str,
    sender_ods: str,
    validator: RowValidator = parse_only,
    dialect: Dialect | None = None,
) -> ParsedFile:
    """Every row's outcome; raises TableError for what fails the whole file (BOM, header, encoding)."""
    table = read_table(data, COLUMNS, dialect)
    rows = tuple(_parse_row(raw, vaccine_type, sender_ods, validator) for raw in table.rows)
    return ParsedFile(encoding=table.encoding, delimiter=table.delimiter, rows=rows)


def _parse_row(raw: RawRow, vaccine_type: str, sender_ods: str, validator: RowValidator) -> ParsedRow:
    reason = width_reason(raw, len(COLUMNS))
    if reason is not None:
        return ParsedRow(number=raw.number, line=raw.line, record=None, reasons=(reason,))
    outcome = validator(vaccine_type, sender_ods, dict(zip(COLUMNS, raw.fields, strict=True)))
    if isinstance(outcome, Record):
        return ParsedRow(number=raw.number, line=raw.line, record=outcome)
    return ParsedRow(number=raw.number, line=raw.line, record=None, reasons=tuple(outcome))
