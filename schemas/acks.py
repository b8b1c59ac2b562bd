"""Acknowledgements NHS England returns for a batch file (spec digest section e), read and written.

Readers turn the InfAck (file level), the BusAck CSV and the BusAck JSON (row level) into typed
values for the ack reader. Writers produce byte-for-byte the formats the receiver writes, so the
development NHS simulator exercises the same parsing as production does. The three formats differ
on purpose-free details (CRLF and csv quoting for the InfAck, hand-joined `\\n` lines with spaces
next to `|` squeezed out for the BusAck CSV); each writer reproduces its own.
"""

import csv
import io
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

INFACK_COLUMNS: Final[tuple[str, ...]] = (
    "MESSAGE_HEADER_ID",
    "HEADER_RESPONSE_CODE",
    "ISSUE_SEVERITY",
    "ISSUE_CODE",
    "ISSUE_DETAILS_CODE",
    "RESPONSE_TYPE",
    "RESPONSE_CODE",
    "RESPONSE_DISPLAY",
    "RECEIVED_TIME",
    "MAILBOX_FROM",
    "LOCAL_ID",
    "MESSAGE_DELIVERY",
)
BUSACK_COLUMNS: Final[tuple[str, ...]] = (
    *INFACK_COLUMNS[:11],
    "IMMS_ID",
    "OPERATION_OUTCOME",
    "MESSAGE_DELIVERY",
)
REPORT_SYSTEM: Final = "Immunisation FHIR API Batch Report"
UNHANDLED_OUTCOME: Final = "An unhandled error occurred during batch processing"
_ACK_NAME: Final = re.compile(r"(?P<stem>.+)_(?P<kind>InfAck|BusAck)_(?P<ts>\d{8}T\d{8})\.(?P<fmt>csv|json)")
_BOOLS: Final[dict[str, bool]] = {"True": True, "False": False}

AckKind = Literal["InfAck", "BusAck"]


# The largest row number read: a batch file has fewer than a billion rows, and int() of a longer
# digit string costs time (beyond 4,300 digits Python refuses it with a plain ValueError).
MAX_ROW_NUMBER_DIGITS: Final = 9

AckFormatReason = Literal["encoding", "format", "row_number", "field_too_large", "json"]


class AckFormatError(ValueError):
    """The bytes are not an acknowledgement in the receiver's format.

    Every fault of an acknowledgement's bytes is raised as this and nothing else, so the ack
    reader can quarantine the one message and go on (issue 16). `reason` is one of a few fixed
    words (a metric label); the message says where, never with the file's values.
    """

    def __init__(self, message: str, reason: AckFormatReason = "format") -> None:
        super().__init__(message)
        self.reason: AckFormatReason = reason


class _AckColumns(msgspec.Struct, frozen=True, kw_only=True):
    """The columns both acknowledgement files start with, in the receiver's order."""

    MESSAGE_HEADER_ID: str
    HEADER_RESPONSE_CODE: str
    ISSUE_SEVERITY: str
    ISSUE_CODE: str
    ISSUE_DETAILS_CODE: str
    RESPONSE_TYPE: str
    RESPONSE_CODE: str
    RESPONSE_DISPLAY: str
    RECEIVED_TIME: str
    MAILBOX_FROM: str
    LOCAL_ID: str


class InfAck(_AckColumns, frozen=True, kw_only=True):
    """The file-level outcome. Success means the header and permissions passed, not the rows."""

    MESSAGE_DELIVERY: bool

    @property
    def success(self) -> bool:
        return self.HEADER_RESPONSE_CODE == "Success"


class BusAckRow(_AckColumns, frozen=True, kw_only=True):
    """One row's outcome; only failed rows are ever listed by the current receiver. Here
    MESSAGE_HEADER_ID is `{message_id}^{row number}` and LOCAL_ID `{UNIQUE_ID}^{UNIQUE_ID_URI}`."""

    IMMS_ID: str
    OPERATION_OUTCOME: str
    MESSAGE_DELIVERY: bool

    @property
    def row_number(self) -> int:
        return row_number_from_header_id(self.MESSAGE_HEADER_ID)


class IngestionTime(msgspec.Struct, frozen=True, kw_only=True):
    start: int  # epoch seconds
    end: int


class ReportSummary(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    total_records: int
    succeeded: int
    failed: int
    ingestion_time: IngestionTime


class ReportFailure(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    row_id: int
    response_code: str
    response_display: str
    severity: str
    local_id: str
    operation_outcome: str


class BusAckReport(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The BusAck JSON; field order is the receiver's, so the writer's output matches it."""

    system: str
    version: int
    generated_date: str  # `YYYY-MM-DDTHH:MM:SS.000Z`
    provider: str
    filename: str  # the batch file key without its extension
    message_header_id: str
    summary: ReportSummary
    failures: list[ReportFailure]


class AckName(msgspec.Struct, frozen=True, kw_only=True):
    kind: AckKind
    format: Literal["csv", "json"]
    batch_file_key: str  # the name of the file this acknowledges
    created_at: str  # `YYYYMMDDThhmmss00`, UTC


def split_local_id(local_id: str) -> tuple[str, str]:
    """`ID^URI` → (ID, URI); split at the last `^`, which a URI may not contain unescaped (RFC 3986)."""
    unique_id, caret, uri = local_id.rpartition("^")
    if not caret:
        raise AckFormatError("LOCAL_ID has no '^' between UNIQUE_ID and UNIQUE_ID_URI")
    return unique_id, uri


def row_number_from_header_id(header_id: str) -> int:
    """`uuid^3` → 3: the 1-based data row of the batch file, as the receiver numbers it."""
    _, caret, number = header_id.rpartition("^")
    # isdigit() alone takes '²' and other digits int() refuses; the length bound keeps int() cheap
    if not caret or not (number.isascii() and number.isdigit()) or len(number) > MAX_ROW_NUMBER_DIGITS:
        raise AckFormatError(
            f"MESSAGE_HEADER_ID must end in '^' and a row number of 1 to {MAX_ROW_NUMBER_DIGITS} digits",
            "row_number",
        )
    if int(number) < 1:
        raise AckFormatError("MESSAGE_HEADER_ID row numbers start at 1", "row_number")
    return int(number)


def ack_timestamp(instant: datetime) -> str:
    """The receiver's `created_at`: UTC, `%Y%m%dT%H%M%S00` (always suffix 00)."""
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%S00")


def ack_file_name(batch_file_key: str, kind: AckKind, created_at: str, fmt: str = "csv") -> str:
    """The receiver's naming, quirk included: it replaces ".csv", so `.dat` keys keep their name."""
    return batch_file_key.replace(".csv", f"_{kind}_{created_at}.{fmt}")


def ack_file_kind(name: str) -> AckName | None:
    """Recognise an ack file by name (any directory prefix ignored); None for anything else."""
    match = _ACK_NAME.fullmatch(name.rpartition("/")[2])
    if match is None or (match["kind"] == "InfAck" and match["fmt"] != "csv"):
        return None
    kind: AckKind = "InfAck" if match["kind"] == "InfAck" else "BusAck"
    return AckName(
        kind=kind,
        format="csv" if match["fmt"] == "csv" else "json",
        batch_file_key=f"{match['stem']}.csv",
        created_at=match["ts"],
    )


def _bool(value: str, column: str) -> bool:
    try:
        return _BOOLS[value]
    except KeyError:
        raise AckFormatError(f"{column} must be True or False") from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AckFormatError(f"acknowledgement is not UTF-8 (offset {error.start})", "encoding") from None


def parse_infack(data: bytes) -> InfAck:
    try:  # csv refuses a field over csv.field_size_limit() (128 KiB) and a NUL with csv.Error
        rows = [row for row in csv.reader(io.StringIO(_text(data), newline=""), delimiter="|") if row]
    except csv.Error as error:
        too_large = "field larger than field limit" in str(error)
        reason: AckFormatReason = "field_too_large" if too_large else "format"
        raise AckFormatError(f"InfAck is not readable as CSV: {error}", reason) from None
    if not rows or tuple(rows[0]) != INFACK_COLUMNS:
        raise AckFormatError("InfAck header is not the receiver's 12 columns")
    if len(rows) != 2 or len(rows[1]) != len(INFACK_COLUMNS):
        raise AckFormatError("InfAck must have exactly one data row of 12 fields")
    values = dict(zip(INFACK_COLUMNS, rows[1], strict=True))
    delivered = _bool(values.pop("MESSAGE_DELIVERY"), "MESSAGE_DELIVERY")
    return InfAck(**values, MESSAGE_DELIVERY=delivered)


def parse_busack_csv(data: bytes) -> list[BusAckRow]:
    """Rows are split by hand, as they were joined: unquoted, so a `|` inside the free-text
    OPERATION_OUTCOME would add fields; those are folded back into that column."""
    lines = [line.removesuffix("\r") for line in _text(data).split("\n")]
    lines = [line for line in lines if line]
    if not lines or tuple(lines[0].split("|")) != BUSACK_COLUMNS:
        raise AckFormatError("BusAck header is not the receiver's 14 columns")
    rows: list[BusAckRow] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("|")
        if len(fields) < len(BUSACK_COLUMNS):
            raise AckFormatError(f"BusAck line {number} has {len(fields)} fields, expected 14")
        fields[12:-1] = ["|".join(fields[12:-1])]
        values = dict(zip(BUSACK_COLUMNS[:13], fields, strict=False))
        row = BusAckRow(**values, MESSAGE_DELIVERY=_bool(fields[-1], "MESSAGE_DELIVERY"))
        try:
            row.row_number  # noqa: B018 - checked here, so a bad one is a parse error, not a later crash
        except AckFormatError as error:
            raise AckFormatError(f"BusAck line {number}: {error}", error.reason) from None
        rows.append(row)
    return rows


def parse_busack_json(data: bytes) -> BusAckReport:
    try:
        return msgspec.json.decode(data, type=BusAckReport)
    except msgspec.ValidationError as error:
        raise AckFormatError(f"BusAck JSON: {error}", "json") from None
    except msgspec.DecodeError as error:
        raise AckFormatError(f"BusAck JSON is not valid JSON: {error}", "json") from None


# --- writers (the development NHS simulator) ---


def render_infack(message_id: str, received_time: str, *, validation_passed: bool, delivered: bool) -> bytes:
    """The receiver's InfAck: Python's csv writer, `|`, minimal quoting, CRLF."""
    ok = validation_passed and delivered
    row = (
        message_id,
        "Success" if ok else "Failure",
        "Information" if validation_passed else "Fatal",
        "OK" if validation_passed else "Fatal Error",
        "20013" if validation_passed else "10001",
        "Technical",
        "20013" if ok else "10002",
        "Success" if ok else "Infrastructure Level Response Value - Processing Error",
        received_time,
        "",
        "",
        delivered,
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="|")
    writer.writerow(INFACK_COLUMNS)
    writer.writerow(row)
    return buffer.getvalue().encode("utf-8")


def render_infack_success(message_id: str, received_time: str) -> bytes:
    return render_infack(message_id, received_time, validation_passed=True, delivered=True)


def render_infack_failure(message_id: str, received_time: str) -> bytes:
    return render_infack(message_id, received_time, validation_passed=False, delivered=False)


def busack_failure(
    message_id: str, row_number: int, local_id: str, received_time: str, diagnostics: str | None
) -> BusAckRow:
    """A failed row as the receiver builds it: diagnostics squeezed onto one line, or the
    unhandled-error text when there are none (an HTTP 500 or unknown error)."""
    outcome = " ".join((diagnostics or UNHANDLED_OUTCOME).split())  # str.split() also splits on \xa0
    return BusAckRow(
        MESSAGE_HEADER_ID=f"{message_id}^{row_number}",
        HEADER_RESPONSE_CODE="Fatal Error",
        ISSUE_SEVERITY="Fatal",
        ISSUE_CODE="Fatal Error",
        ISSUE_DETAILS_CODE="30002",
        RESPONSE_TYPE="Business",
        RESPONSE_CODE="30002",
        RESPONSE_DISPLAY="Business Level Response Value - Processing Error",
        RECEIVED_TIME=received_time,
        MAILBOX_FROM="",
        LOCAL_ID=local_id,
        IMMS_ID="",
        OPERATION_OUTCOME=outcome,
        MESSAGE_DELIVERY=False,
    )


def render_busack_csv(rows: Iterable[BusAckRow]) -> bytes:
    """Header then one `\\n`-terminated line per row, each squeezed exactly as the receiver does."""
    lines = ["|".join(BUSACK_COLUMNS)]
    for row in rows:
        joined = "|".join(str(value) for value in msgspec.structs.astuple(row))
        lines.append(joined.replace(" |", "|").replace("| ", "|").strip())
    return ("\n".join(lines) + "\n").encode("utf-8")


def busack_report(
    *,
    provider: str,
    batch_file_key: str,
    message_id: str,
    total_records: int,
    failures: Iterable[BusAckRow],
    ingestion_start: int,
    ingestion_end: int,
    generated: datetime,
) -> BusAckReport:
    listed = [
        ReportFailure(
            row_id=row.row_number,
            response_code=row.RESPONSE_CODE,
            response_display=row.RESPONSE_DISPLAY,
            severity=row.ISSUE_SEVERITY,
            local_id=row.LOCAL_ID,
            operation_outcome=row.OPERATION_OUTCOME,
        )
        for row in failures
    ]
    return BusAckReport(
        system=REPORT_SYSTEM,
        version=1,
        generated_date=generated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + ".000Z",
        provider=provider,
        filename=batch_file_key.split(".")[0],
        message_header_id=message_id,
        summary=ReportSummary(
            total_records=total_records,
            succeeded=total_records - len(listed),
            failed=len(listed),
            ingestion_time=IngestionTime(start=ingestion_start, end=ingestion_end),
        ),
        failures=listed,
    )


def render_busack_json(report: BusAckReport) -> bytes:
    """Python's `json.dumps(indent=2)`, as the receiver writes it (ASCII-escaped, `: ` separators)."""
    return json.dumps(msgspec.to_builtins(report), indent=2).encode("utf-8")
