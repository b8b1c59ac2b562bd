"""The placement check fails on what the workers' own records would not show (no broker needed)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.batchfile import render_file
from schemas.event import ValidEvent
from schemas.permissions import default_permissions
from schemas.record import Record
from schemas.validate import validate_event
from support.placement import SentLoad, file_row_identities
from vaxflow.dev.loadgen import generate


@pytest.fixture(scope="module")
def sent() -> tuple[SentLoad, list[list[Record]]]:
    """40 events, some invalid; the valid ones as rendered rows, 10 to a file."""
    load = generate(40, invalid_fraction=0.2, seed=14)
    events = [validate_event(p, permissions=default_permissions()) for p in load.payloads]
    assert {i for i, e in enumerate(events) if not isinstance(e, ValidEvent)} == set(load.invalid)
    records = [e.record for e in events if isinstance(e, ValidEvent)]
    return SentLoad(load.payloads, load.invalid), [records[i:i + 10] for i in range(0, len(records), 10)]


def files_of(groups: list[list[Record]]) -> dict[str, bytes]:
    return {f"f{n}": render_file(g) for n, g in enumerate(groups)}


def rejected_of(load: SentLoad) -> list[bytes]:
    return [load.payloads[i] for i in sorted(load.invalid)]


def test_the_right_placement_passes(sent: tuple[SentLoad, list[list[Record]]]) -> None:
    load, groups = sent
    placement = load.check(files_of(groups), rejected_of(load))
    assert (len(placement.in_files), len(placement.rejected)) == (len(load.valid), len(load.invalid))


def test_a_row_written_twice_in_place_of_another_fails(sent: tuple[SentLoad, list[list[Record]]]) -> None:
    """Row counts, file names and every file's validity are unchanged; the receipts would agree."""
    load, groups = sent
    swapped = [list(g) for g in groups]
    swapped[1][3] = swapped[0][2]
    with pytest.raises(AssertionError, match="more than one MESH row"):
        load.check(files_of(swapped), rejected_of(load))


def test_a_lost_row_an_unknown_row_and_a_wrong_rejection_fail(sent: tuple[SentLoad, list[list[Record]]]) -> None:
    load, groups = sent
    with pytest.raises(AssertionError, match="lost"):
        load.check(files_of([groups[0][1:], *groups[1:]]), rejected_of(load))
    stranger = msgspec.structs.replace(groups[0][0], UNIQUE_ID="never-sent")
    with pytest.raises(AssertionError, match="match no sent valid event"):
        load.check({**files_of(groups), "extra": render_file([stranger])}, rejected_of(load))
    with pytest.raises(AssertionError, match="both in MESH and rejected"):
        load.check(files_of(groups), [*rejected_of(load), load.payloads[min(load.valid)]])


def test_rows_are_read_with_their_identity_columns() -> None:
    content = b'"A"|"UNIQUE_ID"|"UNIQUE_ID_URI"\r\n"x | ""y"""|"id-1"|"https://u"\r\n\r\n"z"|"id-2"|"https://u"\r\n'
    assert file_row_identities(content) == [("https://u", "id-1"), ("https://u", "id-2")]
