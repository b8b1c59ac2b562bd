"""The simulated NHS England's extended-attribute path, without a sandbox (`receive` and `commit` are
pure apart from the clock): the receiver's name, permission and duplicate rules, an InfAck failure
named from the EA key, and no acknowledgement at all for a file it forwards (digest end of section a)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.acks import ack_file_kind, parse_infack
from schemas.extended import ExtendedAttribute, extended_file_name, render_extended
from vaxflow.dev.nhs_sim.worker import (
    DUPLICATE,
    EXTENDED_ATTRIBUTES,
    FORWARDED,
    INVALID_NAME,
    NO_PERMISSION,
    VACCINATIONS,
    NhsSimulator,
    ReceivedFile,
)
from workers.base.mesh.client import InboxMessage
from workers.base.settings import Settings

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
URI = "https://supplier.example/vacc"


def _attribute(unique_id: str, attribute_id: str, **more: str) -> ExtendedAttribute:
    values = {"VACCINATION_UNIQUE_ID": unique_id, "VACCINATION_UNIQUE_ID_URI": URI, "ACTION_FLAG": "NEW",
              "ATTRIBUTE_ID": attribute_id, "ATTRIBUTE_DISPLAYED_TEXT": "text", "ATTRIBUTE_VALUE": "value",
              "RECORDED_DATE": "20250601", **more}
    return ExtendedAttribute(**values)


def _meta(name: str, message_id: str = "M1") -> InboxMessage:
    return InboxMessage(message_id, "DATA", "X26VXF001", "X26OT303", "VACCINATIONS_1", name, None, None, None, 1, {})


@pytest.fixture
def sim(tmp_path: Path) -> NhsSimulator:
    settings = Settings(nhs_sim_log_file=tmp_path / "log.jsonl", nhs_sim_files_dir=tmp_path / "files")
    return NhsSimulator(settings, clock=lambda: NOW)


def _receive(sim: NhsSimulator, name: str, data: bytes, message_id: str = "M1") -> tuple[ReceivedFile, list[str]]:
    record, replies = sim.receive("X26OT303", _meta(name, message_id), data)
    sim.commit(record, data)
    for reply in replies:
        assert not parse_infack(reply.data).success
    return record, [r.name for r in replies]


def test_an_accepted_ea_file_is_forwarded_with_no_acknowledgement_and_its_rows_recorded(sim: NhsSimulator) -> None:
    name = extended_file_name("YGM41", NOW)
    rows = [_attribute("A", "EA1"), _attribute("A", "EA2"), _attribute("B", "EA1", RECORDED_DATE="2099-01-01")]
    data = render_extended(rows)
    record, replies = _receive(sim, name, data)
    assert replies == []
    assert (record.outcome, record.family, record.rows, record.infack_success) == (FORWARDED, EXTENDED_ATTRIBUTES,
                                                                                 3, False)
    assert record.row_ids == [f"A^{URI}", f"A^{URI}", "^"]  # row 3's date is in the future: not readable as valid
    assert record.attribute_ids == ["EA1", "EA2", ""]
    assert (record.row_valid, record.failed_rows) == ([True, True, False], [3])
    assert sim.repeated_row_ids() == {}  # EA rows repeat an event's id by design: not a duplicate event
    kept = sim.settings.nhs_sim_files_dir / "M1" / name  # type: ignore[operator]
    assert kept.read_bytes() == data

    again, replies = _receive(sim, name, data, "M2")
    assert again.outcome == DUPLICATE
    [infack] = replies
    ack = ack_file_kind(infack)
    assert ack is not None
    assert (ack.kind, ack.batch_file_key) == ("InfAck", name)
    # the log keeps the family and lets a restarted simulator refuse the name too
    restarted = NhsSimulator(sim.settings, clock=lambda: NOW)
    assert name.upper() in restarted.processed_names
    assert [r.family for r in restarted.received] == [EXTENDED_ATTRIBUTES, EXTENDED_ATTRIBUTES]


def test_ea_files_are_refused_by_name_and_by_covid_cud_permission(sim: NhsSimulator) -> None:
    data = render_extended([_attribute("A", "EA1")])
    flu_only = extended_file_name("V0V8L", NOW)  # MAVIS: C, U and D for flu, nothing for COVID
    record, [infack] = _receive(sim, flu_only, data)
    assert (record.outcome, record.family) == (NO_PERMISSION, EXTENDED_ATTRIBUTES)
    assert infack.startswith(flu_only.removesuffix(".csv") + "_InfAck_")
    bad_version = flu_only.replace("V0V8L", "YGM41").replace("_v1_5_", "_v1_4_")
    record, [infack] = _receive(sim, bad_version, data)
    assert record.outcome == INVALID_NAME
    assert "v1_5" in record.detail
    unknown_ods = extended_file_name("ABCDE", NOW)
    assert _receive(sim, unknown_ods, data)[0].outcome == INVALID_NAME
    # a refused name is no duplicate: it may come again
    assert flu_only.upper() not in sim.processed_names


def test_an_ea_file_the_simulator_cannot_read_is_still_forwarded_as_the_receiver_does(sim: NhsSimulator) -> None:
    record, replies = _receive(sim, extended_file_name("YGA", NOW), b"\xef\xbb\xbfnot|the|header\n")
    assert (record.outcome, replies, record.rows) == (FORWARDED, [], 0)
    assert record.detail


def test_batch_files_keep_their_family(sim: NhsSimulator) -> None:
    record, _ = sim.receive("X26OT303", _meta("RSV_Vaccinations_v5_ABCDE_20250101T12000000.csv"), b"x")
    assert (record.family, record.outcome) == (VACCINATIONS, INVALID_NAME)
