"""Provider batch files arriving in a MESH inbox (workers/filesource/mesh_intake.py).

Unit tests for the naming and the never-overwrite rule; then, against the real broker and the real
sandbox, the file source run with an intake mailbox: a provider's file is published once (also
when MESH delivers the same file again), and messages whose names cannot be used end rejected
with reasons, never outside the watched directory and never left unread.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import empty_inbox
from pydantic import SecretStr
from support.topics import ensure

from topics import headers as h
from topics.catalogue import RAW
from workers.base.mesh.client import MeshClient
from workers.base.runtime import Health
from workers.base.settings import Settings, SettingsError
from workers.base.topic_reader import read_to_end
from workers.filesource.mesh_intake import (
    ACKNOWLEDGED,
    ALREADY_THERE,
    RENAMED,
    WAITING,
    WRITTEN,
    MeshIntake,
    intake_config,
    local_name,
)
from workers.filesource.worker import run

DATA = Path(__file__).parent / "data"
RSV = "RSV_Vaccinations_v5_X8E5B_20240610T18332501.csv"
PROVIDER, INTAKE = "X26ABC1", "X26ABC2"  # mesh-sandbox's own canned mailboxes


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (RSV, RSV),
        ("MMR_Vaccinations_v5_X8E5B_20250730T11540001.DAT", "MMR_Vaccinations_v5_X8E5B_20250730T11540001.DAT"),
        ("notes", "notes.dat"),
        ("notes.txt", "notes.txt.dat"),
        (None, "mesh-M1.dat"),
        ("", "mesh-M1.dat"),
        ("../../etc/cron.d/x.csv", "mesh-M1.dat"),
        ("..\\x.csv", "mesh-M1.dat"),
        (".hidden.csv", "mesh-M1.dat"),
        ("a\nb.csv", "mesh-M1.dat"),
        ("x" * 300 + ".csv", "mesh-M1.dat"),
    ],
)
def test_local_names_stay_in_the_directory_and_are_read(filename: str | None, expected: str) -> None:
    assert local_name(filename, "M1") == expected


@dataclass
class _Meta:
    filename: str | None
    sender: str = PROVIDER


@dataclass
class _FakeMesh:
    messages: dict[str, tuple[str | None, bytes]]
    acknowledged: list[str] = field(default_factory=list)

    async def inbox(self) -> list[str]:
        return [m for m in self.messages if m not in self.acknowledged]

    async def download(self, message_id: str) -> tuple[_Meta, bytes]:
        name, data = self.messages[message_id]
        return _Meta(name), data

    async def acknowledge(self, message_id: str) -> None:
        self.acknowledged.append(message_id)


async def test_messages_are_acknowledged_only_once_their_files_are_read(tmp_path: Path) -> None:
    (tmp_path / RSV).write_bytes(b"the provider's earlier file, not yet read")
    mesh = _FakeMesh({"M1": (RSV, b"new"), "M2": ("../x.csv", b"odd"), "M3": ("notes", b"n")})
    intake = MeshIntake(cast(MeshClient, mesh), tmp_path)
    assert (await intake.poll_once()).outcomes == {"M1": WAITING, "M2": RENAMED, "M3": RENAMED}
    assert mesh.acknowledged == []  # on disk, but not yet read: MESH still holds them
    assert (tmp_path / RSV).read_bytes() == b"the provider's earlier file, not yet read"  # never overwritten
    assert (tmp_path / "mesh-M2.dat").read_bytes() == b"odd"
    assert ((tmp_path / "mesh-M2.dat").stat().st_mode & 0o777) == 0o600
    assert (await intake.poll_once()).outcomes == {"M1": WAITING}

    (tmp_path / RSV).unlink()  # the file source has read the earlier file, and mesh-M2.dat
    (tmp_path / "mesh-M2.dat").unlink()
    assert (await intake.poll_once()).outcomes == {"M2": ACKNOWLEDGED, "M1": WRITTEN}
    assert (tmp_path / RSV).read_bytes() == b"new"
    assert mesh.acknowledged == ["M2"]

    # A restart forgets what was pending; the copies in the directory are recognised, not rewritten.
    restarted = MeshIntake(cast(MeshClient, mesh), tmp_path)
    assert (await restarted.poll_once()).outcomes == {"M1": ALREADY_THERE, "M3": ALREADY_THERE}
    for name in (RSV, "notes.dat"):
        (tmp_path / name).unlink()
    assert (await restarted.poll_once()).outcomes == {"M1": ACKNOWLEDGED, "M3": ACKNOWLEDGED}
    assert sorted(mesh.acknowledged) == ["M1", "M2", "M3"]
    assert (await restarted.poll_once()).outcomes == {}


def test_an_intake_mailbox_without_a_password_stops_the_worker() -> None:
    assert intake_config(Settings()) is None
    with pytest.raises(SettingsError, match="VAXFLOW_FILESOURCE_MESH_PASSWORD"):
        intake_config(Settings(filesource_mesh_mailbox=INTAKE))


@pytest.mark.integration
async def test_files_sent_over_mesh_are_published_once_and_odd_names_rejected(
    kafka_settings: Settings, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    await ensure(kafka_settings)
    watched = tmp_path / "in"
    watched.mkdir()
    settings = kafka_settings.model_copy(update={
        "filesource_dir": watched, "filesource_poll_seconds": 0.2, "filesource_settle_seconds": 0.0,
        "mesh_url": mesh_sandbox.url, "mesh_shared_key": SecretStr(mesh_sandbox.shared_key),
        "filesource_mesh_mailbox": INTAKE, "filesource_mesh_password": SecretStr("password"),
        "filesource_mesh_poll_seconds": 0.3,
    })
    async with mesh_sandbox.client(INTAKE) as intake:
        await empty_inbox(intake)
    content = (DATA / RSV).read_bytes()

    async def send(name: str, data: bytes) -> None:
        async with mesh_sandbox.client(PROVIDER, allowed_workflows=None) as provider:
            await provider.send(INTAKE, "PROVIDER_BATCH_FILES", data, filename=name, local_id=uuid.uuid4().hex)

    async def inbox_empty() -> bool:
        async with mesh_sandbox.client(INTAKE) as intake:
            return not await intake.inbox()

    async def until(check: Any, what: str) -> None:
        for _ in range(150):
            if await check():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def settled(done: int, rejected: int) -> Any:
        async def check() -> bool:
            names = [p.name for p in watched.glob("*") if p.is_file() and not p.name.startswith(".")]
            return (
                not names
                and await inbox_empty()
                and len(list((watched / "done").glob("*"))) == done
                and len(list((watched / "rejected").glob("*.reasons.json"))) == rejected
            )
        return check

    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, Health()))
    try:
        await send(RSV, content)
        await send("../../outside.csv", content)
        await send("notes", b"not a batch file")
        await until(settled(done=1, rejected=2), "the intake and the file source to finish")
        # MESH delivers the same file again (a provider's resend, or our crash before acknowledging):
        await send(RSV, content)
        await until(settled(done=2, rejected=2), "the second copy to be set aside")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    raw = await read_to_end(kafka_settings, kafka_settings.topic(RAW.name))
    assert [dict(r.headers)[h.SOURCE_FILE].decode() for r in raw] == [RSV]  # its one row, once
    assert not (tmp_path / "outside.csv").exists()
    assert not (tmp_path.parent / "outside.csv").exists()
    rejected = sorted(p.name for p in (watched / "rejected").iterdir() if not p.name.endswith(".json"))
    assert rejected[0].startswith("mesh-")
    assert rejected[0].endswith(".dat")
    assert rejected[1] == "notes.dat"


@pytest.mark.integration
async def test_the_real_mesh_keeps_a_message_until_its_file_is_read_also_across_a_restart(
    mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    async with mesh_sandbox.client(INTAKE) as mesh:
        await empty_inbox(mesh)
        async with mesh_sandbox.client(PROVIDER, allowed_workflows=None) as provider:
            message_id = await provider.send(
                INTAKE, "PROVIDER_BATCH_FILES", (DATA / RSV).read_bytes(), filename=RSV, local_id=uuid.uuid4().hex
            )
        assert (await MeshIntake(mesh, tmp_path).poll_once()).outcomes == {message_id: WRITTEN}
        assert await mesh.inbox() == [message_id]  # written, not yet read: MESH still holds it
        restarted = MeshIntake(mesh, tmp_path)  # a crash forgets what was pending
        assert (await restarted.poll_once()).outcomes == {message_id: ALREADY_THERE}
        assert await mesh.inbox() == [message_id]
        (tmp_path / RSV).unlink()  # the file source has read it
        assert (await restarted.poll_once()).outcomes == {message_id: ACKNOWLEDGED}
        assert await mesh.inbox() == []


@pytest.mark.integration
async def test_a_file_from_a_mailbox_not_bound_to_its_ods_code_is_never_published(
    kafka_settings: Settings, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    """Issue 17: a file from mailbox X26PROVA named for YGM17 was published as YGM17. Evidence is
    what the raw topic holds and what MESH still holds, not the file source's own report."""
    await ensure(kafka_settings)
    watched = tmp_path / "in"
    watched.mkdir()
    settings = kafka_settings.model_copy(update={
        "filesource_dir": watched, "filesource_poll_seconds": 0.2, "filesource_settle_seconds": 0.0,
        "mesh_url": mesh_sandbox.url, "mesh_shared_key": SecretStr(mesh_sandbox.shared_key),
        "filesource_mesh_mailbox": INTAKE, "filesource_mesh_password": SecretStr("password"),
        "filesource_mesh_poll_seconds": 0.3, "filesource_mesh_senders": {PROVIDER: ["X8E5B"]},
    })
    async with mesh_sandbox.client(INTAKE) as intake:
        await empty_inbox(intake)
    content = (DATA / RSV).read_bytes()
    foreign = RSV.replace("X8E5B", "YGM17")
    async with mesh_sandbox.client(PROVIDER, allowed_workflows=None) as provider:
        for name in (foreign, RSV):
            await provider.send(INTAKE, "PROVIDER_BATCH_FILES", content, filename=name, local_id=uuid.uuid4().hex)

    async def settled() -> bool:
        async with mesh_sandbox.client(INTAKE) as intake:
            empty = not await intake.inbox()
        return empty and len(list((watched / "done").glob("*"))) == 1

    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, Health()))
    try:
        for _ in range(150):
            if await settled():
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("timed out waiting for the intake and the file source")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    raw = await read_to_end(kafka_settings, kafka_settings.topic(RAW.name))
    assert [dict(r.headers)[h.SOURCE_FILE].decode() for r in raw] == [RSV]  # nothing of the foreign file
    assert not (watched / foreign).exists()
    assert not (watched / "done" / foreign).exists()
    [note] = list((watched / "rejected").glob("mesh-*.dat.reasons.json"))
    assert b"file.sender" in note.read_bytes()
    assert b"YGM17" in note.read_bytes()
