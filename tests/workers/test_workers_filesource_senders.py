"""Sender binding (issue 17, workers/filesource/senders.py): a file for an ODS code its origin may
not submit for is rejected with reasons and nothing of it is published or left to be read.

Without a broker: FileSource.process rejects before it needs a producer (a publish would fail
with "producer not connected", so a file that gets past the check shows as None, not rejected),
and the intake is run against a fake MESH.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec

from workers.base.mesh.client import MeshClient
from workers.base.settings import Settings
from workers.filesource.mesh_intake import REJECTED, WRITTEN, MeshIntake
from workers.filesource.records import RejectedFile
from workers.filesource.senders import RULE, may_submit
from workers.filesource.worker import FileSource

DATA = Path(__file__).parent / "data"
MMR = "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"
FOR_YGM17 = "MMR_Vaccinations_v5_YGM17_20250730T11525001.csv"


def settings(**overrides: Any) -> Settings:
    return Settings(**{"topic_namespace": "unit", "filesource_settle_seconds": 0, **overrides})


async def test_a_drop_directory_file_for_another_ods_code_is_rejected(tmp_path: Path) -> None:
    shutil.copyfile(DATA / MMR, tmp_path / FOR_YGM17)
    source = FileSource(settings(filesource_dir_senders=["X8E5B"]), tmp_path)
    outcome = await source.process(tmp_path / FOR_YGM17)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert not (tmp_path / FOR_YGM17).exists()
    note = msgspec.json.decode((tmp_path / "rejected" / f"{FOR_YGM17}.reasons.json").read_bytes(), type=RejectedFile)
    assert [r.rule for r in note.reasons] == [RULE]
    assert "YGM17" in note.reasons[0].message


async def test_a_drop_directory_file_for_a_bound_code_goes_on_to_publish(tmp_path: Path) -> None:
    shutil.copyfile(DATA / MMR, tmp_path / MMR)
    source = FileSource(settings(filesource_dir_senders=["x8e5b"]), tmp_path)
    assert await source.process(tmp_path / MMR) is None  # reached the publish: no producer in this test
    assert (tmp_path / MMR).exists()


def test_binding_values() -> None:
    assert may_submit(None, "YGM17")
    assert may_submit(["*"], "YGM17")
    assert not may_submit([], "YGM17")
    assert not may_submit(["X8E5B"], "YGM17")


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


@dataclass
class _Meta:
    filename: str | None
    sender: str | None


@dataclass
class _FakeMesh:
    messages: dict[str, tuple[str | None, str | None, bytes]]
    acknowledged: list[str] = field(default_factory=list)

    async def inbox(self) -> list[str]:
        return [m for m in self.messages if m not in self.acknowledged]

    async def download(self, message_id: str) -> tuple[_Meta, bytes]:
        name, sender, data = self.messages[message_id]
        return _Meta(name, sender), data

    async def acknowledge(self, message_id: str) -> None:
        self.acknowledged.append(message_id)


async def test_a_mesh_file_for_an_ods_code_its_mailbox_is_not_bound_to_is_rejected(tmp_path: Path) -> None:
    data = (DATA / MMR).read_bytes()
    mesh = _FakeMesh({
        "M1": (FOR_YGM17, "X26PROVA", data),  # the audit's case: X26PROVA submitting for YGM17
        "M2": (MMR, "X26PROVA", data),  # its own provider: written for the file source
        "M3": (MMR, "X26OTHER", data),  # a mailbox bound to nothing
    })
    intake = MeshIntake(cast(MeshClient, mesh), tmp_path, senders={"X26PROVA": ["X8E5B"]})
    assert (await intake.poll_once()).outcomes == {"M1": REJECTED, "M2": WRITTEN, "M3": REJECTED}
    assert files_in(tmp_path) == [MMR]  # nothing else for the file source to read
    assert (tmp_path / MMR).read_bytes() == data
    assert sorted(mesh.acknowledged) == ["M1", "M3"]
    for message_id, why in (("M1", "YGM17"), ("M3", "X26OTHER")):
        reasons = tmp_path / "rejected" / f"mesh-{message_id}.dat.reasons.json"
        note = msgspec.json.decode(reasons.read_bytes(), type=RejectedFile)
        assert [r.rule for r in note.reasons] == [RULE]
        assert why in note.reasons[0].message
