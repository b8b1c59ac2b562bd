"""Which name a re-sent file takes (vaxflow/ops/resend.py), without a broker.

For RSV every second of a closed window names a part; for COVID and FLU a slot names a vaccination
file at `start + slot` and its extended-attribute file at the type's parity second, so the window
has half as many slots and a slot is free only when both names are.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.extended import extended_file_name, extended_name_second, extended_part_of
from schemas.filenames import part_file_name
from schemas.pipeline import ReadyFile, SentReceipt
from vaxflow.ops.resend import ResendError, free_name, free_slot, from_archive, slot_names
from workers.base.settings import Settings
from workers.batcher.archive import archive_path

START = datetime(2026, 1, 14, 9, 0, 0, tzinfo=UTC)  # an even second
LENGTH = timedelta(seconds=10)
LATER = START + timedelta(hours=1)


def sent(vaccine_type: str, name: str | None = None, part: int = 0) -> ReadyFile:
    return ReadyFile(
        file_name=name or part_file_name(vaccine_type, "YGA", START, LENGTH, part),
        vaccine_type=vaccine_type, sender_ods="YGA", window_start=START.isoformat(),
        window_end=(START + LENGTH).isoformat(), part=part, rows=1, content=b"x", origins=[(0, 0)], valid_ranges=[],
        local_id="vxf-1",
    )  # fmt: skip


def ea_name_at(second: int) -> str:
    return extended_file_name("YGA", datetime.fromtimestamp(second, UTC))


def test_a_type_without_attributes_takes_the_windows_last_free_second() -> None:
    rsv = sent("RSV")
    assert free_name(rsv, set(), 1, LATER) == (part_file_name("RSV", "YGA", START, LENGTH, 9), 9)
    taken = {part_file_name("RSV", "YGA", START, LENGTH, 9)}
    assert free_name(rsv, taken, 1, LATER)[1] == 8
    assert slot_names(rsv, 3) == (part_file_name("RSV", "YGA", START, LENGTH, 3), None)


@pytest.mark.parametrize(("vaccine_type", "parity"), [("COVID", 0), ("FLU", 1)])
def test_a_slot_of_an_attribute_type_names_both_files_inside_the_window(vaccine_type: str, parity: int) -> None:
    """Five slots in ten seconds; the top one names the vaccination file at +4 and the attribute
    file at the type's last second of the window (+8 COVID, +9 FLU)."""
    f = sent(vaccine_type)
    slot = free_slot(f, set(), 1, LATER)
    assert slot == 4
    vaccination, extended = slot_names(f, slot)
    assert vaccination == part_file_name(vaccine_type, "YGA", START, LENGTH, 4)
    assert extended == ea_name_at(int(START.timestamp()) + 8 + parity)


def test_a_slot_is_free_only_when_both_of_its_names_are() -> None:
    flu = sent("FLU")
    top_vaccination, top_extended = slot_names(flu, 4)
    assert top_extended is not None
    assert free_slot(flu, {top_vaccination}, 1, LATER) == 3
    assert free_slot(flu, {top_extended}, 1, LATER) == 3
    every = {n for slot in range(5) for n in slot_names(flu, slot) if n is not None}
    with pytest.raises(ResendError, match="every name of the window"):
        free_slot(flu, every, 1, LATER)


def test_an_attribute_file_is_renamed_in_its_own_family() -> None:
    second = extended_name_second("FLU", int(START.timestamp()), 0)
    ea = sent("FLU", name=ea_name_at(second))
    name, slot = free_name(ea, set(), 1, LATER)
    assert (name, slot) == (ea_name_at(int(START.timestamp()) + 9), 4)


def test_a_window_still_open_has_no_free_name() -> None:
    with pytest.raises(ResendError, match="closes at"):
        free_slot(sent("FLU"), set(), 1, START + LENGTH)


@pytest.mark.parametrize("vaccine_type", ["COVID", "FLU"])
@pytest.mark.parametrize("part", [0, 1, 4])
def test_the_part_of_an_attribute_files_second(vaccine_type: str, part: int) -> None:
    start = int(START.timestamp()) + 1  # an odd start too
    second = extended_name_second(vaccine_type, start, part)
    assert extended_part_of(vaccine_type, start, second) == part
    with pytest.raises(ValueError, match="names no"):
        extended_part_of(vaccine_type, start, second + 1)


def test_an_archived_attribute_file_is_read_back_with_its_part(tmp_path: Path) -> None:
    """The ready topic's retention took the record: the archive and the receipt rebuild it."""
    second = extended_name_second("FLU", int(START.timestamp()), 3)
    name = ea_name_at(second)
    archive_path(tmp_path, "FLU", "YGA", name).parent.mkdir(parents=True)
    archive_path(tmp_path, "FLU", "YGA", name).write_bytes(b"HEADER\nrow\n")
    receipt = SentReceipt(
        file_name=name, local_id="vxf-2", message_id="m", mailbox_to="X26OT303", workflow_id="w", vaccine_type="FLU",
        sender_ods="YGA", rows=1, bytes=11, sent_at=LATER.isoformat(), origins=[(0, 7)],
    )  # fmt: skip
    rebuilt = from_archive(Settings(window_seconds=10, archive_dir=tmp_path), receipt)
    assert rebuilt is not None
    assert (rebuilt.part, rebuilt.window_start, rebuilt.content) == (3, START.isoformat(), b"HEADER\nrow\n")
    assert free_name(rebuilt, {name}, 1, LATER) == (ea_name_at(int(START.timestamp()) + 9), 4)
