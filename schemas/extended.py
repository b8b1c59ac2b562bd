"""Extended-attribute files: the second file family (digest end of section a, and g).

The receiver fixes their vaccine type to COVID and forwards them to DPS unparsed; the public
catalogue lists extended attributes for COVID-19 *and* flu, and the brief asks for both. The name
carries no vaccine type, so both kinds for one ODS code share one name space: the batcher should
put COVID and flu attribute rows of a window into one file (rows reference the vaccination by
its unique id, which already says which vaccine it was). Until NHS England's code accepts flu, a
supplier without COVID C/U/D permission has such a file refused; see docs/decisions/0004.
The row layout is known only from a mock in the NHS repository, so the row rules below are the
minimum that keeps a row meaningful, not an official specification.
"""

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final

import msgspec

from schemas.checks import FORBIDDEN_CHARS
from schemas.dates import Clock, canonical_date
from schemas.delimited import read_table, render_line, render_table, width_reason
from schemas.dialect import PIPE, Dialect
from schemas.event import EventAttribute
from schemas.filenames import (
    NameLayout,
    ParsedName,
    name_extension,
    name_timestamp,
    name_token,
    parsed_name,
    split_key,
)
from schemas.record import Reason

EXTENDED_COLUMNS: Final[tuple[str, ...]] = (
    "VACCINATION_UNIQUE_ID",
    "VACCINATION_UNIQUE_ID_URI",
    "ACTION_FLAG",
    "ATTRIBUTE_ID",
    "ATTRIBUTE_DISPLAYED_TEXT",
    "ATTRIBUTE_VALUE",
    "RECORDED_DATE",
)
EXTENDED_PREFIX: Final = "Vaccination_Extended_Attributes"  # the receiver routes on this, case-sensitively
EXTENDED_VERSIONS: Final = frozenset({"V1_5"})
EXTENDED_EXTENSIONS: Final = frozenset({"CSV", "DAT", "CTL"})
EXTENDED_LAYOUT: Final = NameLayout(5, EXTENDED_EXTENSIONS, "extension must be .csv, .dat or .ctl")
_KEY_FORMAT: Final = re.compile(r"^[^_.]*_[^_.]*_[^_.]*_[^_.]*_[^_.]*_[^_.]*_[^_.]*")
_FORMAT_MESSAGE: Final = "Initial file validation failed: invalid extended attributes file key format"
_REQUIRED: Final = ("VACCINATION_UNIQUE_ID", "VACCINATION_UNIQUE_ID_URI", "ATTRIBUTE_ID")
_ACTIONS: Final = frozenset({"NEW", "UPDATE", "DELETE"})
_HEADER_LINE: Final = render_line(EXTENDED_COLUMNS, PIPE.delimiter).encode()
EXTENDED_FIELD: Final = "extended_attributes"
# The types the public catalogue lists extended attributes for.
EXTENDED_VACCINE_TYPES: Final = frozenset({"COVID", "FLU"})
# NHS England's receiver files every extended-attribute file as COVID and asks the supplier for C,
# U and D permission on COVID, whatever the vaccination's type (docs/decisions/0004).
EXTENDED_PERMISSION: Final = ("COVID", frozenset("CUD"))
# Event-level refusals of an event's extended attributes (field `extended_attributes`); the
# contract's rule table is generated from these and EXTENDED_ATTRIBUTE_RULES.
EXTENDED_EVENT_MESSAGES: Final[dict[str, str]] = {
    "schema_version": "need schema_version 2 or later",
    "vaccine_type": "are sent for COVID and FLU vaccinations only",
    "permission": (
        "need the sender to hold create, update and delete permission for COVID (NHS England files every"
        " extended-attribute file as COVID)"
    ),
    "max_items": "hold more than {max_items} attributes",
}
# Per attribute (field `extended_attributes[i].COLUMN`, rule `extended_attributes.COLUMN.suffix`).
EXTENDED_ATTRIBUTE_RULES: Final[tuple[tuple[str, str], ...]] = (
    ("COLUMN.control_char", "contains a control character, line break or unpaired surrogate"),
    ("ATTRIBUTE_ID.mandatory", "is mandatory and is empty or blank"),
    ("RECORDED_DATE.format", "must be a real date YYYYMMDD (the record's RECORDED_DATE when left empty)"),
    ("RECORDED_DATE.future", "is in the future"),
    ("ATTRIBUTE_ID.repeated", "is the same as an earlier attribute's of this event"),
)


class ExtendedAttribute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One attribute of one vaccination; attribute names are the file's column names."""

    VACCINATION_UNIQUE_ID: str = ""
    VACCINATION_UNIQUE_ID_URI: str = ""
    ACTION_FLAG: str = ""
    ATTRIBUTE_ID: str = ""
    ATTRIBUTE_DISPLAYED_TEXT: str = ""
    ATTRIBUTE_VALUE: str = ""
    RECORDED_DATE: str = ""


class ExtendedRow(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    line: int
    attribute: ExtendedAttribute | None
    reasons: tuple[Reason, ...] = ()


def extended_file_name(ods: str, instant: datetime, *, version: str = "v1", minor: str = "5", ext: str = "csv") -> str:
    """`Vaccination_Extended_Attributes_v1_5_{ODS}_{timestamp}.csv`, same timestamp rule as batch files."""
    if f"{version}_{minor}".upper() not in EXTENDED_VERSIONS:
        raise ValueError(f"the receiver accepts only versions {sorted(EXTENDED_VERSIONS)}")
    stamp = name_timestamp(instant)
    return f"{EXTENDED_PREFIX}_{version}_{minor}_{name_token(ods)}_{stamp}.{name_extension(ext)}"


# Extended-attribute names carry no vaccine type, so COVID's and FLU's files of one ODS code share
# one name space: COVID's are named at even epoch seconds, FLU's at odd ones (docs/decisions/0020).
_NAME_PARITY: Final = {"COVID": 0, "FLU": 1}


def extended_names(vaccine_type: str, window_start_s: int, window_seconds: int) -> int | None:
    """How many extended-attribute file names the window starting at `window_start_s` has for this
    type (the seconds of its parity inside the window); None for a type that carries none."""
    parity = _NAME_PARITY.get(vaccine_type)
    if parity is None:
        return None
    return (window_seconds - (parity - window_start_s) % 2 + 1) // 2


def extended_name_second(vaccine_type: str, window_start_s: int, part: int) -> int:
    """The epoch second naming the extended-attribute file of a window's part `part`.

    Never before the part's own second (start + part), so a name is never below the key's
    `closed_until` (the batcher's rule for the vaccination files), and distinct for every part of
    every window of the key; the parity keeps COVID's and FLU's apart. extended_names says how
    many parts have one.
    """
    return window_start_s + (_NAME_PARITY[vaccine_type] - window_start_s) % 2 + 2 * part


def extended_part_of(vaccine_type: str, window_start_s: int, second: int) -> int:
    """The part of the window whose extended-attribute file is named at `second` (the inverse of
    extended_name_second), for a file known only by its name and archive copy."""
    offset = second - extended_name_second(vaccine_type, window_start_s, 0)
    if offset < 0 or offset % 2:
        raise ValueError(f"second {second} names no {vaccine_type} extended-attribute file of that window")
    return offset // 2


def is_extended_file_name(name: str) -> bool:
    return name.startswith(EXTENDED_PREFIX)


def parse_extended_file_name(name: str, *, ods_codes: Collection[str] | None = None) -> ParsedName:
    """The receiver's extended-attributes name check; `vaccine_type` is always COVID, as there."""
    parts, extension = split_key(name, _KEY_FORMAT, _FORMAT_MESSAGE)
    family_checks = (
        ("_".join(parts[:3]) == EXTENDED_PREFIX.upper(), f"name must start {EXTENDED_PREFIX}"),
        ("_".join(parts[3:5]) in EXTENDED_VERSIONS, "version must be v1_5"),
    )
    return parsed_name(EXTENDED_LAYOUT, parts, extension, "COVID", family_checks, ods_codes=ods_codes)


def validate_extended(
    row: Mapping[str, str | None], *, now: datetime | None = None, clock: Clock | None = None
) -> ExtendedAttribute | list[Reason]:
    """One reason per failing field, with the batch-row validator's rule ids and character rule;
    ACTION_FLAG and RECORDED_DATE come back in canonical form, as it does for batch rows."""
    today = (clock or Clock(now)).today
    values = {name: row.get(name) or "" for name in EXTENDED_COLUMNS}
    reasons = [
        _reason(name, "control_char", "contains a control character, line break or unpaired surrogate")
        for name, value in values.items()
        if FORBIDDEN_CHARS.search(value)
    ]
    reasons += [
        _reason(name, "mandatory", "is mandatory and is empty or blank")
        for name in _REQUIRED
        if not values[name].strip()
    ]
    action = values["ACTION_FLAG"].upper()
    if action not in _ACTIONS:
        reasons.append(_reason("ACTION_FLAG", "format", "must be NEW, UPDATE or DELETE"))
    recorded = canonical_date(values["RECORDED_DATE"])
    if recorded is None:
        reasons.append(_reason("RECORDED_DATE", "format", "must be a real date YYYYMMDD"))
    elif recorded > today:  # London's date, as for batch rows
        reasons.append(_reason("RECORDED_DATE", "future", "is in the future"))
    if reasons or recorded is None:
        return reasons
    return ExtendedAttribute(**{**values, "ACTION_FLAG": action, "RECORDED_DATE": recorded})


def _reason(field: str, suffix: str, text: str) -> Reason:
    return Reason(field=field, rule=f"{field}.{suffix}", message=f"{field} {text}")


def event_extended_rows(
    attributes: Sequence[EventAttribute], *, unique_id: str, unique_id_uri: str, action: str, recorded_date: str,
    clock: Clock,
) -> tuple[list[ExtendedAttribute], list[Reason]]:
    """The extended-attribute file rows of one valid event's attributes, and why not (contract v2):
    the rows count only when there are no reasons.

    The row's identity columns are the event's own (canonical values of a record that passed), so
    an attribute always refers to the vaccination that carried it. Reasons use the field
    `extended_attributes[i].COLUMN` (one reason per attribute and column) and the stable rule ids
    `extended_attributes.COLUMN.suffix`; neither names a value.
    """
    reasons: list[Reason] = []
    rows: list[ExtendedAttribute] = []
    seen: set[str] = set()
    for i, attribute in enumerate(attributes):
        outcome = validate_extended(
            {
                "VACCINATION_UNIQUE_ID": unique_id,
                "VACCINATION_UNIQUE_ID_URI": unique_id_uri,
                "ACTION_FLAG": action,
                "ATTRIBUTE_ID": attribute.ATTRIBUTE_ID,
                "ATTRIBUTE_DISPLAYED_TEXT": attribute.ATTRIBUTE_DISPLAYED_TEXT,
                "ATTRIBUTE_VALUE": attribute.ATTRIBUTE_VALUE,
                "RECORDED_DATE": attribute.RECORDED_DATE or recorded_date,
            },
            clock=clock,
        )
        if isinstance(outcome, list):
            reasons += [
                Reason(
                    field=f"{EXTENDED_FIELD}[{i}].{r.field}", rule=f"{EXTENDED_FIELD}.{r.rule}",
                    message=f"{EXTENDED_FIELD}[{i}].{r.message}",
                )
                for r in outcome
            ]
        elif outcome.ATTRIBUTE_ID in seen:
            reasons.append(Reason(
                field=f"{EXTENDED_FIELD}[{i}].ATTRIBUTE_ID", rule=f"{EXTENDED_FIELD}.ATTRIBUTE_ID.repeated",
                message=f"{EXTENDED_FIELD}[{i}].ATTRIBUTE_ID is the same as an earlier attribute's of this event",
            ))
        else:
            seen.add(outcome.ATTRIBUTE_ID)
            rows.append(outcome)
    return rows, reasons


def render_extended_rows(rows: Iterable[ExtendedAttribute]) -> bytes:
    """The rows as the lines of a file (quoted, `|`, UTF-8), joined by LF and without a header: what
    travels with a valid event (header `vaxflow.extended`) until the batcher writes the file."""
    return "\n".join(render_line(msgspec.structs.astuple(row), PIPE.delimiter) for row in rows).encode()


def assemble_extended(lines: Iterable[bytes], dialect: Dialect = PIPE) -> bytes:
    """An extended-attribute file from render_extended_rows' lines: header, rows, final line ending
    (the same bytes render_extended gives for the same rows)."""
    newline = dialect.newline.encode()
    return newline.join([_HEADER_LINE, *lines, b""])


def render_extended(rows: Iterable[ExtendedAttribute], dialect: Dialect = PIPE) -> bytes:
    return render_table(EXTENDED_COLUMNS, map(msgspec.structs.astuple, rows), dialect)


def read_extended(data: bytes, *, now: datetime | None = None, dialect: Dialect | None = None) -> list[ExtendedRow]:
    """Every row's outcome; raises TableError for a BOM, a wrong header or an undecodable file."""
    table = read_table(data, EXTENDED_COLUMNS, dialect)
    out: list[ExtendedRow] = []
    for raw in table.rows:
        reason = width_reason(raw, len(EXTENDED_COLUMNS))
        if reason is not None:
            out.append(ExtendedRow(number=raw.number, line=raw.line, attribute=None, reasons=(reason,)))
            continue
        outcome = validate_extended(dict(zip(EXTENDED_COLUMNS, raw.fields, strict=True)), now=now)
        if isinstance(outcome, ExtendedAttribute):
            out.append(ExtendedRow(number=raw.number, line=raw.line, attribute=outcome))
        else:
            out.append(ExtendedRow(number=raw.number, line=raw.line, attribute=None, reasons=tuple(outcome)))
    return out
