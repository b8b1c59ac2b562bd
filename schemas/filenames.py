"""Batch file names: building them from a window, and the receiver's own check (digest section a).

The receiver refuses a file whose name it has already seen, so a name must be unique per
(vaccine type, ODS) and must be a pure function of the window, never of the wall clock at write
time: then re-running the batcher reproduces the name, and NHS England's duplicate check becomes a
last guard against sending a file twice. docs/decisions/0004-file-names.md has the reasoning.
"""

import re
from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, NamedTuple

import msgspec

from schemas.dates import london_timestamp
from schemas.permissions import default_permissions

BST: Final = timezone(timedelta(hours=1))
_SUFFIX_ZONES: Final[dict[str, timezone]] = {"00": UTC, "01": BST}
_KEY_FORMAT: Final = re.compile(r"^[^_.]*_[^_.]*_[^_.]*_[^_.]*_[^_.]*")
_TOKEN: Final = re.compile(r"[A-Z0-9]+")
BATCH_EXTENSIONS: Final = frozenset({"CSV", "DAT"})


class NameLayout(NamedTuple):
    """What sets a file family's names apart after its own leading parts: where the ODS code
    stands (the timestamp follows it, then any extra parts the receiver ignores), and which
    extensions the receiver accepts, with its wording when the extension is another."""

    ods_part: int
    extensions: frozenset[str]
    extension_rule: str


BATCH_LAYOUT: Final = NameLayout(3, BATCH_EXTENSIONS, "extension must be .csv or .dat")

# The receiver's exact messages, so a checker's output can be matched against an InfAck's cause.
FORMAT_MESSAGE: Final = "Initial file validation failed: invalid file key format"
EXTENSION_MESSAGE: Final = "Initial file validation failed: missing file extension"
INVALID_MESSAGE: Final = "Initial file validation failed: invalid file key"


class FileNameError(ValueError):
    """The receiver would refuse this name. `message` is its wording; `detail` says which check."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(f"{message} ({detail})")
        self.message = message
        self.detail = detail


class ParsedName(msgspec.Struct, frozen=True, kw_only=True):
    vaccine_type: str  # upper-cased, as the receiver keys its configuration
    ods_code: str
    timestamp: str  # the 17 characters as written (upper-cased)
    instant: datetime  # aware: suffix 00 is GMT (+00:00), 01 is BST (+01:00)
    extension: str
    extra: tuple[str, ...] = ()  # trailing `_parts` the receiver ignores (VED-763)


def name_timestamp(instant: datetime) -> str:
    """`YYYYMMDDThhmmss` in Europe/London wall time plus 00 (GMT) or 01 (BST).

    The suffix is what keeps the two 01:30s of the October change apart: the wall time repeats,
    the (wall time, offset) pair does not.
    """
    if instant.utcoffset() is None:
        # london_timestamp would read a naive value as UTC; for a file name that guess could
        # silently shift a window by an hour, so the caller must say.
        raise ValueError("a file-name instant must be timezone-aware")
    return london_timestamp(instant)


def window_slot(window_start: datetime, window_length: timedelta, part: int) -> datetime:
    """The instant that names part `part` of a window: its start plus `part` seconds.

    Names have one-second resolution, so a window of N seconds owns exactly the N names of its own
    seconds; windows never overlap, so parts of different windows cannot collide. Hence a window
    must be whole seconds long and start on a whole second, and may have at most N parts.
    """
    seconds, remainder = divmod(window_length, timedelta(seconds=1))
    if remainder or seconds < 1:
        raise ValueError("window length must be a whole number of seconds, at least one")
    if window_start.microsecond:
        raise ValueError("window start must fall on a whole second")
    if not 0 <= part < seconds:
        raise ValueError(
            f"part {part} does not fit a {seconds}-second window: each part needs its own second; "
            "raise the row/byte cap or lengthen the window"
        )
    return window_start + timedelta(seconds=part)


def batch_file_name(vaccine_type: str, ods: str, instant: datetime, ext: str = "csv") -> str:
    """`{TYPE}_Vaccinations_v5_{ODS}_{timestamp}.{ext}`; lower-case `.csv` keeps acks findable.

    The receiver names its acknowledgements by replacing ".csv" in the key; with ".dat" or ".CSV"
    the replacement does nothing and the InfAck carries the batch file's own name.
    """
    type_token, ods_token = name_token(vaccine_type), name_token(ods)
    return f"{type_token}_Vaccinations_v5_{ods_token}_{name_timestamp(instant)}.{name_extension(ext)}"


def part_file_name(
    vaccine_type: str, ods: str, window_start: datetime, window_length: timedelta, part: int, ext: str = "csv"
) -> str:
    """The name of part `part` (0-based, in offset order) of a window's file."""
    return batch_file_name(vaccine_type, ods, window_slot(window_start, window_length, part), ext)


def name_token(value: str) -> str:
    """Upper-cased; refuses anything that would shift the receiver's `_`/`.` split."""
    token = value.upper()
    if not _TOKEN.fullmatch(token):
        raise ValueError("vaccine type and ODS code must be letters and digits only (no '_' or '.')")
    return token


def name_extension(ext: str) -> str:
    if ext.upper() not in BATCH_EXTENSIONS:
        raise ValueError(f"extension must be one of {sorted(BATCH_EXTENSIONS)}, case aside")
    return ext


def timestamp_instant(timestamp: str) -> datetime | None:
    """The receiver's timestamp rule: 17 characters, strptime on the first 15, suffix 00 or 01.

    strptime is used on purpose: it is what the receiver runs, quirks included (it accepts, for
    example, a space-padded day), and this function must agree with it, not with a cleaner rule.
    """
    if len(timestamp) != 17 or timestamp[15:] not in _SUFFIX_ZONES:
        return None
    try:
        wall = datetime.strptime(timestamp[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    return wall.replace(tzinfo=_SUFFIX_ZONES[timestamp[15:]])


def split_key(name: str, format_pattern: re.Pattern[str], format_message: str) -> tuple[list[str], str]:
    """Steps 1-3 of the receiver: root only, leading-parts regex, upper-case, split off extension."""
    if "/" in name:
        raise FileNameError(INVALID_MESSAGE, "the receiver ignores keys outside the bucket root ('/')")
    if not format_pattern.match(name):
        raise FileNameError(format_message, "needs at least five '_'-separated parts before any '.'")
    stem_and_extension = name.upper().rsplit(".", 1)
    if len(stem_and_extension) != 2:
        raise FileNameError(EXTENSION_MESSAGE, "no '.' in the name")
    stem, extension = stem_and_extension
    return stem.split("_"), extension


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """The receiver ANDs its checks into one message; the first failing one becomes the detail."""
    for passed, detail in checks:
        if not passed:
            raise FileNameError(INVALID_MESSAGE, detail)


def parse_batch_file_name(
    name: str, *, vaccine_types: Collection[str] | None = None, ods_codes: Collection[str] | None = None
) -> ParsedName:
    """The receiver's algorithm, step for step; ODS codes are checked only when given.

    Both collections hold upper-case values; vaccine types default to the packaged disease
    mapping, as the receiver's come from its own copy of that file.
    """
    if vaccine_types is None:
        vaccine_types = default_permissions().vaccine_types
    parts, extension = split_key(name, _KEY_FORMAT, FORMAT_MESSAGE)
    vaccine_type, vaccinations, version = parts[:3]
    family_checks = (
        (vaccine_type in vaccine_types, f"vaccine type {vaccine_type!r} is not a known type"),
        (vaccinations == "VACCINATIONS", "second part must be 'Vaccinations'"),
        (version == "V5", "third part must be the version 'v5'"),
    )
    return parsed_name(BATCH_LAYOUT, parts, extension, vaccine_type, family_checks, ods_codes=ods_codes)


def parsed_name(
    layout: NameLayout,
    parts: list[str],
    extension: str,
    vaccine_type: str,
    family_checks: Iterable[tuple[bool, str]],
    *,
    ods_codes: Collection[str] | None,
) -> ParsedName:
    """The checks every file family ends with, after its own: ODS code, timestamp, extension.

    The receiver checks in that order for batch and extended-attribute names alike, and the first
    failing check becomes the detail, so both parsers share this one copy of the tail.
    """
    ods_code, timestamp = parts[layout.ods_part], parts[layout.ods_part + 1]
    instant = timestamp_instant(timestamp)
    require(
        (
            *family_checks,
            (ods_codes is None or ods_code in ods_codes, f"ODS code {ods_code!r} maps to no supplier"),
            (instant is not None, "timestamp must be YYYYMMDDThhmmss plus 00 (GMT) or 01 (BST), a real time"),
            (extension in layout.extensions, layout.extension_rule),
        )
    )
    assert instant is not None
    return ParsedName(
        vaccine_type=vaccine_type,
        ods_code=ods_code,
        timestamp=timestamp,
        instant=instant,
        extension=extension,
        extra=tuple(parts[layout.ods_part + 2 :]),
    )
