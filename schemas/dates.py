"""Dates and date-times in the spec's forms, and their canonical Europe/London rendering.

The receiver reads the DATE_AND_TIME suffix `00` as +00:00 and `01` as +01:00 and a missing
suffix as UTC (spec digest section c, #7), so every accepted input names one instant. We always
emit that instant as London wall time with the suffix London used at that instant, which is the
only rendering that reads back as the same instant and also looks right to a person in England.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import ClassVar, Final
from zoneinfo import ZoneInfo

LONDON: Final = ZoneInfo("Europe/London")
_ZERO: Final = timedelta(0)
_ONE_HOUR: Final = timedelta(hours=1)
_PLUS_ONE: Final = timezone(_ONE_HOUR)

_DATE_COMPACT: Final = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DATE_ISO: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DT_COMPACT: Final = re.compile(r"[0-9]{8}T[0-9]{6}(?:0[01])?")
# Fractional seconds of one to six digits (the receiver's strptime %f) are read and dropped; the
# offset may be written with or without its colon (`+0000`, as strptime's %z takes it).
_DT_ISO: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?"
    r"(Z|([+-])([0-9]{2}):?([0-9]{2}))"
)

# A DATE_AND_TIME outcome that is not a (canonical, epoch seconds) pair.
BAD_FORMAT: Final = "format"
BAD_OFFSET: Final = "offset"


@lru_cache(maxsize=1 << 16)
def canonical_date(value: str) -> str | None:
    """`YYYYMMDD` for a real calendar date given as YYYYMMDD or YYYY-MM-DD, else None.

    Cached: birth dates repeat across a population and parsing dominates the cost.
    """
    m = _DATE_COMPACT.fullmatch(value) or _DATE_ISO.fullmatch(value)
    if m is None:
        return None
    y, mo, d = m.groups()
    try:
        date(int(y), int(mo), int(d))
    except ValueError:
        return None
    return y + mo + d


def _offset_of(sign: str | None, hh: str | None, mm: str | None) -> timezone | None:
    if sign is None or hh is None or mm is None:
        return UTC
    minutes = int(hh) * 60 + int(mm)
    if int(mm) > 59 or minutes >= 24 * 60:
        return None
    delta = timedelta(minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def canonical_datetime(value: str) -> tuple[str, float] | str:
    """(canonical `YYYYMMDDThhmmss00|01`, epoch seconds) or the failed rule suffix.

    Accepted: the spec form with suffix 00 or 01 or none (UTC), and ISO 8601 with `Z` or an
    explicit offset (`+01:00` or `+0100`), with or without fractional seconds. The receiver takes
    ISO values with up to six fraction digits; the spec form has no place for them, so they are
    dropped (truncated: the instant emitted is never later than the one given). Rejected: naive
    ISO values, more than six fraction digits (the receiver refuses them too), and instants where
    London was on neither +00:00 nor +01:00 (before 1972 that happened; the spec's two suffixes
    cannot express it).
    """
    if _DT_COMPACT.fullmatch(value) is not None:
        return _from_hour(value[:11], _SPEC_SUFFIXES[value[15:]], value[11:13], value[13:15])
    m = _DT_ISO.fullmatch(value)
    if m is None:
        return BAD_FORMAT
    suffix = _ISO_WHOLE_HOUR_ZONES.get(m[7])
    if suffix is not None:  # the usual case: same hour arithmetic as the spec form
        hour = f"{value[0:4]}{value[5:7]}{value[8:10]}T{value[11:13]}"
        return _from_hour(hour, suffix, value[14:16], value[17:19])
    return _iso_datetime(m)


# Suffixes meaning UTC share one cache key ("").
_SPEC_SUFFIXES: Final = {"": "", "00": "", "01": "01"}
_ISO_WHOLE_HOUR_ZONES: Final = {
    "Z": "", "+00:00": "", "-00:00": "", "+0000": "", "-0000": "", "+01:00": "01", "+0100": "01",
}  # fmt: skip


def _from_hour(hour: str, suffix: str, minute: str, second: str) -> tuple[str, float] | str:
    if minute > "59" or second > "59":  # two ASCII digits each, so string order is numeric
        return BAD_FORMAT
    found = _compact_hour(hour, suffix)
    if isinstance(found, str):
        return found
    prefix, london_suffix, epoch = found
    return prefix + minute + second + london_suffix, epoch + int(minute) * 60 + int(second)


@lru_cache(maxsize=8192)
def _compact_hour(hour: str, suffix: str) -> tuple[str, str, float] | str:
    """London rendering of one spec-form hour `YYYYMMDDThh` with its suffix ("" is UTC, or "01").

    London changes offset only on whole UTC hours (since 1847), and the suffixes are whole
    hours, so the hour decides the rendering; caching it makes real traffic, whose timestamps
    cluster in recent hours, skip the time-zone arithmetic.
    """
    tz = _PLUS_ONE if suffix == "01" else UTC
    found = _in_london(tz, int(hour[:4]), int(hour[4:6]), int(hour[6:8]), int(hour[9:11]))
    if isinstance(found, str):
        return found
    local, london_suffix, epoch = found
    return f"{local.year:04d}{local.month:02d}{local.day:02d}T{local.hour:02d}", london_suffix, epoch


def _in_london(
    tz: timezone, year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0
) -> tuple[datetime, str, float] | str:
    """The instant these fields name in `tz`, as London wall time with London's suffix and epoch
    seconds; or the failed rule: no such time, or a London offset the spec's suffixes cannot say.
    The cached hour path and the rare-offset path both end here, so they cannot disagree on
    which instants are accepted."""
    try:
        instant = datetime(year, month, day, hour, minute, second, tzinfo=tz)
        local = instant.astimezone(LONDON)
        epoch = instant.timestamp()
    except (ValueError, OverflowError):
        return BAD_FORMAT
    london_suffix = _suffix(local)
    if london_suffix is None:
        return BAD_OFFSET
    return local, london_suffix, epoch


def _suffix(local: datetime) -> str | None:
    offset = local.utcoffset()
    if offset == _ZERO:
        return "00"
    if offset == _ONE_HOUR:
        return "01"
    return None


def _iso_datetime(m: re.Match[str]) -> tuple[str, float] | str:
    """Any other offset, e.g. +05:30: rare, so computed in full and not cached."""
    y, mo, d, h, mi, s, _zone, sign, oh, om = m.groups()
    tz = _offset_of(sign, oh, om)
    if tz is None:
        return BAD_FORMAT
    found = _in_london(tz, int(y), int(mo), int(d), int(h), int(mi), int(s))
    if isinstance(found, str):
        return found
    local, london_suffix, epoch = found
    return render_london(local, london_suffix), epoch


def render_london(local: datetime, suffix: str) -> str:
    """Spec form of a London wall time; f-string, as strftime is twice as slow and locale-bound."""
    return (
        f"{local.year:04d}{local.month:02d}{local.day:02d}T{local.hour:02d}{local.minute:02d}{local.second:02d}{suffix}"
    )


def london_timestamp(instant: datetime) -> str:
    """Spec form of any aware instant (naive means UTC), e.g. for a test or a generator."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    local = instant.astimezone(LONDON)
    return render_london(local, "01" if local.utcoffset() == _ONE_HOUR else "00")


class Clock:
    """ "Now" for one validation: epoch seconds and London's calendar date as YYYYMMDD.

    Dates are "not in the future" against London's date: the event happened in England and
    the file reaches the receiver later than we validate, never earlier. London's date is
    cached per London day so that the default clock costs one `time.time()` per event.
    """

    __slots__ = ("epoch", "today")

    _day: ClassVar[tuple[float, float, str]] = (0.0, 0.0, "")

    def __init__(self, now: datetime | None = None) -> None:
        if now is None:
            self.epoch = time.time()
        else:
            if now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
            self.epoch = now.timestamp()
        start, end, today = Clock._day
        if not start <= self.epoch < end:
            start, end, today = _london_day(self.epoch)
            Clock._day = (start, end, today)
        self.today = today


def _london_day(epoch: float) -> tuple[float, float, str]:
    """[start, end) epoch seconds of the London day containing `epoch`, and that day's YYYYMMDD."""
    local = datetime.fromtimestamp(epoch, LONDON)
    day = local.date()
    start = datetime(day.year, day.month, day.day, tzinfo=LONDON).timestamp()
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=LONDON).timestamp()
    return start, end, f"{day.year:04d}{day.month:02d}{day.day:02d}"
