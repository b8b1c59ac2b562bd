"""The uploader holds a file while UTC's date is behind a PERSON_DOB or RECORDED_DATE in it (issue 18).

Both clocks are fixed: the validator's (which judges "not in the future" by London's date) and the
uploader's (which decides when the file may go). The receiver's rule is modelled independently of
the code under test: a row fails there if its date is after the UTC date at which it arrives.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from typing import cast

import msgspec
import pytest
from prometheus_client import REGISTRY

from schemas.batchfile import render_file
from schemas.event import ValidEvent
from schemas.permissions import default_permissions
from schemas.pipeline import ReadyFile
from schemas.record import Record
from schemas.validate import validate_event
from vaxflow.dev.samples import make_valid_record
from workers.base.mesh.client import MeshClient
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.uploader.delivery import HOLD_SLICE_SECONDS, MeshDelivery
from workers.uploader.outage import MeshAvailability
from workers.uploader.outcomes import Abandoned
from workers.uploader.utcdate import MARGIN_SECONDS, latest_checked_date, seconds_until_utc_date

SUMMER_LATE = datetime(2026, 7, 14, 23, 30, tzinfo=UTC)  # 00:30 on 15 July in London
LONDON_TODAY = "20260715"


def valid_record(now: datetime, **values: str) -> Record:
    """A record as the validator would pass it at `now` (the first clock)."""
    record = make_valid_record(random.Random(3), "RSV", now=now - timedelta(hours=2))
    raw = msgspec.json.encode(
        {
            "vaccine_type": "RSV",
            "sender_ods": "X8E5B",
            "source_system": "test",
            "record": {**record, "ACTION_FLAG": "NEW", **values},
        }
    )
    result = validate_event(raw, permissions=default_permissions(), now=now)
    assert isinstance(result, ValidEvent), result  # a valid event is never refused for the hour
    return result.record


def receiver_rejects(content: bytes, arrives: datetime) -> bool:
    """NHS England's check, independently: birthDate and recorded must not be after its host's
    (UTC) date when it processes the row."""
    text = content.decode()
    header, *rows = [line.split("|") for line in text.splitlines()]
    names = [name.strip('"') for name in header]
    day = arrives.astimezone(UTC).date()
    for row in rows:
        values = dict(zip(names, (v.strip('"') for v in row), strict=True))
        for field in ("PERSON_DOB", "RECORDED_DATE"):
            if date(int(values[field][:4]), int(values[field][4:6]), int(values[field][6:])) > day:
                return True
    return False


@pytest.mark.parametrize("field", ["RECORDED_DATE", "PERSON_DOB"])
def test_a_row_dated_londons_today_is_held_until_utc_midnight(field: str) -> None:
    content = render_file([valid_record(SUMMER_LATE, **{field: LONDON_TODAY})])
    assert receiver_rejects(content, SUMMER_LATE)  # what issue 18 reproduced: sent now, it fails
    wait = seconds_until_utc_date(content, SUMMER_LATE.timestamp())
    assert wait == 30 * 60 + MARGIN_SECONDS
    send_at = SUMMER_LATE + timedelta(seconds=wait)
    assert not receiver_rejects(content, send_at)
    assert seconds_until_utc_date(content, send_at.timestamp()) == 0


def test_nothing_is_held_when_the_dates_are_not_ahead_of_utc() -> None:
    content = render_file([valid_record(SUMMER_LATE, RECORDED_DATE="20260714")])
    assert latest_checked_date(content) == "20260714"
    assert seconds_until_utc_date(content, SUMMER_LATE.timestamp()) == 0
    # at 22:59 UTC London is still on the 14th too: the file is not even parsed
    assert seconds_until_utc_date(b"not a file", datetime(2026, 7, 14, 22, 59, tzinfo=UTC).timestamp()) == 0


def test_winter_never_holds() -> None:
    winter = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
    content = render_file([valid_record(winter, RECORDED_DATE="20260114")])
    assert seconds_until_utc_date(content, winter.timestamp()) == 0


def test_delete_rows_do_not_hold_a_file() -> None:
    row = valid_record(SUMMER_LATE, RECORDED_DATE=LONDON_TODAY)
    deleting = msgspec.structs.replace(row, ACTION_FLAG="DELETE")
    assert latest_checked_date(render_file([deleting])) is None
    assert seconds_until_utc_date(render_file([deleting, row]), SUMMER_LATE.timestamp()) > 0


def ready(content: bytes) -> ReadyFile:
    return ReadyFile(
        file_name="RSV_Vaccinations_v5_X8E5B_20260715T00300001.csv",
        vaccine_type="RSV",
        sender_ods="X8E5B",
        window_start="",
        window_end="",
        part=1,
        rows=1,
        content=content,
        origins=[],
        valid_ranges=[],
        local_id="vxf-test",
    )


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_the_uploader_holds_in_slices_and_counts_the_file_once() -> None:
    """The file waits in its key's lane, in one-minute slices (a moved clock is read again)."""
    content = render_file([valid_record(SUMMER_LATE, RECORDED_DATE=LONDON_TODAY)])
    clock = [SUMMER_LATE.timestamp()]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    health = Health()
    delivery = MeshDelivery(
        Settings(), cast(MeshClient, None), health, asyncio.Event(), MeshAvailability(health), clock=lambda: clock[0]
    )
    files = metric("vaxflow_uploader_held_for_utc_date_files_total")
    seconds = metric("vaxflow_uploader_held_for_utc_date_seconds_total")
    file = ready(content)

    asyncio.run(delivery.hold_for_utc_date(file, sleep))
    assert slept[0] == HOLD_SLICE_SECONDS
    assert len(slept) == 31  # 30 minutes and 5 seconds, in one-minute slices
    assert not receiver_rejects(content, datetime.fromtimestamp(clock[0], UTC))
    assert metric("vaxflow_uploader_held_for_utc_date_files_total") == files + 1
    assert metric("vaxflow_uploader_held_for_utc_date_seconds_total") == pytest.approx(seconds + 30 * 60 + 5)


def test_a_halt_ends_the_hold() -> None:
    """Revocation or SIGTERM during a hold hands the file back (Abandoned), uncommitted."""
    content = render_file([valid_record(SUMMER_LATE, RECORDED_DATE=LONDON_TODAY)])

    async def halted(seconds: float) -> None:
        raise Abandoned()

    health = Health()
    delivery = MeshDelivery(
        Settings(), cast(MeshClient, None), health, asyncio.Event(), MeshAvailability(health),
        clock=lambda: SUMMER_LATE.timestamp(),
    )
    with pytest.raises(Abandoned):
        asyncio.run(delivery.hold_for_utc_date(ready(content), halted))
