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
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Final

import msgspec

from schemas.dates import Clock, canonical_date
from schemas.delimited import read_table, render_table, width_reason
from schemas.dialect import PIPE, Dialect
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
from schemas.validate import FORBIDDEN_CHARS

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
    row: Mapping[str, str | None], *, now: datetime | None = None
) -> ExtendedAttribute | list[Reason]:
    """One reason per failing field, with the batch-row validator's rule ids and character rule;
    ACTION_FLAG and RECORDED_DATE come back in canonical form, as it does for batch rows."""
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
    elif recorded > Clock(now).today:  # London's date, as for batch rows
        reasons.append(_reason("RECORDED_DATE", "future", "is in the future"))
    if reasons or recorded is None:
        return reasons
    return ExtendedAttribute(**{**values, "ACTION_FLAG": action, "RECORDED_DATE": recorded})


def _reason(field: str, suffix: str, text: str) -> Reason:
    return Reason(field=field, rule=f"{field}.{suffix}", message=f"{field} {text}")


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
