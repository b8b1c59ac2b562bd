"""Hold a file until the receiver's UTC date has caught up with the dates in its rows.

vaxflow judges "not in the future" for PERSON_DOB and RECORDED_DATE against London's date (the
event happened in England; decision 0003). NHS England's receiver compares them with its host's
date, which is UTC (`datetime.now().date()` in its pre-validators). During British Summer Time,
from 23:00 to 24:00 UTC, London is already on the next day: a row recorded "today" in London is
"tomorrow" at the receiver, and would come back as a BusAck failure. The event is valid, so it is
not refused; instead the file is not sent until the UTC date reaches the latest such date in it.

The latest date is read from the file itself (no field on the ready record: that would be a wire
change of the ready topic), and only when London's date is ahead of UTC's, so the parse is paid
at most one hour a day. Every row's date is at most London's date when it was validated, which is
at most London's date now, so outside that hour no row can be ahead of UTC's date.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Final

from schemas.columns import COLUMNS
from schemas.dates import Clock
from schemas.delimited import TableError, read_table

# The receiver checks these against its own date; DATE_AND_TIME is an instant, EXPIRY_DATE may be future.
HELD_COLUMNS: Final = ("PERSON_DOB", "RECORDED_DATE")
_INDEXES: Final = tuple(COLUMNS.index(name) for name in HELD_COLUMNS)
_ACTION: Final = COLUMNS.index("ACTION_FLAG")
# Past midnight by this much before sending, for the receiver's clock being a little behind ours.
MARGIN_SECONDS: Final = 5.0


def utc_date(epoch: float) -> str:
    day = datetime.fromtimestamp(epoch, UTC)
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def latest_checked_date(content: bytes) -> str | None:
    """The latest PERSON_DOB or RECORDED_DATE (YYYYMMDD) of the file's NEW and UPDATE rows.

    DELETE rows are skipped: the receiver validates no content of them, and vaxflow passes their
    other values through unchecked. A file that cannot be read gives None: the uploader is not
    the place to judge it.
    """
    try:
        table = read_table(content, COLUMNS)
    except (TableError, UnicodeDecodeError):
        return None
    latest = ""
    for row in table.rows:
        fields = row.fields
        if len(fields) != len(COLUMNS) or fields[_ACTION].upper() == "DELETE":
            continue
        for i in _INDEXES:
            value = fields[i]
            if value > latest and len(value) == 8 and value.isascii() and value.isdigit():
                latest = value
    return latest or None


def seconds_until_utc_date(content: bytes, now: float | None = None) -> float:
    """How long to hold `content` so that no checked date is after the UTC date when it is sent: 0
    when it can go now. Never more than until the next UTC midnight (at most one hour in BST),
    since no row can be later than London's date."""
    epoch = time.time() if now is None else now
    receiver = epoch - MARGIN_SECONDS  # its clock, assumed at most this far behind ours
    today_utc = utc_date(receiver)
    if Clock(datetime.fromtimestamp(epoch, UTC)).today <= today_utc:
        return 0.0  # London and UTC agree on the date (always in winter; 00:00-23:00 UTC in summer)
    latest = latest_checked_date(content)
    if latest is None or latest <= today_utc:
        return 0.0
    day = datetime.fromtimestamp(receiver, UTC).date() + timedelta(days=1)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return max(0.0, midnight - receiver)
