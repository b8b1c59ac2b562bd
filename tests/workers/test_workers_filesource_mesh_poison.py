"""Issue 16: one undecodable MESH intake message never stops the file source.

Before: a message that was not valid gzip failed the download, which ended the poll; the next poll
tried it first again, so every message behind it waited for ever. A `mex-filename` of non-UTF-8
bytes raised UnicodeEncodeError while its length was measured, which nothing caught: the whole
file source crash-looped. Now each is rejected with its reason and acknowledged, and the good
file behind them is published. Judged from the raw topic, rejected/ and what MESH still holds.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import empty_inbox
from mesh_poison_support import send_raw, send_raw_filename
from pydantic import SecretStr
from support.topics import ensure

from topics import headers as h
from topics.catalogue import RAW
from workers.base.mesh.client import MeshClient, MeshPermanentError, _inbox_message
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end
from workers.filesource.mesh_intake import REJECTED, RENAMED, UNDECODABLE, WRITTEN, MeshIntake, local_name
from workers.filesource.records import RejectedFile
from workers.filesource.worker import run

DATA = Path(__file__).parent / "data"
RSV = "RSV_Vaccinations_v5_X8E5B_20240610T18332501.csv"
PROVIDER, INTAKE = "X26ABC1", "X26ABC2"  # mesh-sandbox's own canned mailboxes
WORKFLOW = "PROVIDER_BATCH_FILES"


def test_a_name_of_non_utf8_bytes_gets_a_safe_name() -> None:
    odd = b"RSV_Vaccinations_\xff.csv".decode("utf-8", "surrogateescape")  # as aiohttp hands it over
    assert local_name(odd, "M1") == "mesh-M1.dat"
    assert local_name("caf\u00e9.csv", "M1") == "caf\u00e9.csv"  # UTF-8 that is not ASCII is a name


def test_a_chunk_count_that_is_no_number_is_one_chunk() -> None:
    assert _inbox_message("M", {"mex-chunk-range": "1:\u00b2"}).total_chunks == 1
    assert _inbox_message("M", {"mex-chunk-range": "1:" + "9" * 5000}).total_chunks == 1
    assert _inbox_message("M", {"mex-chunk-range": "1:3"}).total_chunks == 3


@dataclass
class _Meta:
    filename: str | None
    sender: str = PROVIDER


@dataclass
class _FakeMesh:
    messages: dict[str, tuple[str | None, bytes | Exception]]
    acknowledged: list[str] = field(default_factory=list)

    async def inbox(self) -> list[str]:
        return [m for m in self.messages if m not in self.acknowledged]

    async def download(self, message_id: str) -> tuple[_Meta, bytes]:
        name, data = self.messages[message_id]
        if isinstance(data, Exception):
            raise data
        return _Meta(name), data

    async def acknowledge(self, message_id: str) -> None:
        self.acknowledged.append(message_id)


async def test_an_undecodable_message_is_rejected_acknowledged_and_the_next_one_written(tmp_path: Path) -> None:
    odd = b"\xff\xfe.csv".decode("utf-8", "surrogateescape")
    mesh = _FakeMesh({
        "M1": (RSV, MeshPermanentError(None, "", reason="message M1 is not valid gzip")),
        "M2": (odd, b"odd"),
        "M3": (RSV, b"good"),
    })
    intake = MeshIntake(cast(MeshClient, mesh), tmp_path)
    assert (await intake.poll_once()).outcomes == {"M1": REJECTED, "M2": RENAMED, "M3": WRITTEN}
    assert mesh.acknowledged == ["M1"]  # the others once the file source has read their files
    note = msgspec.json.decode((tmp_path / "rejected" / "mesh-M1.dat.reasons.json").read_bytes(), type=RejectedFile)
    assert [(r.rule, "gzip" in r.message) for r in note.reasons] == [(UNDECODABLE, True)]
    assert (tmp_path / RSV).read_bytes() == b"good"
    assert (tmp_path / "mesh-M2.dat").read_bytes() == b"odd"


@pytest.mark.integration
async def test_undecodable_intake_messages_are_rejected_and_the_good_file_behind_them_published(
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
    async with mesh_sandbox.client(PROVIDER, allowed_workflows=None) as provider:
        bad_gzip = await send_raw(provider, INTAKE, WORKFLOW, content, filename=RSV, local_id=uuid.uuid4().hex,
                                  gzip_claimed=True)  # says gzip, is not
        odd_name = await send_raw_filename(provider, INTAKE, WORKFLOW, content, local_id=uuid.uuid4().hex,
                                           filename=b"RSV_Vaccinations_v5_X8E5B_\xff\xfe.csv")
        # neither UTF-8 nor cp1252 (0x81 and 0x8D are undefined in cp1252)
        bad_encoding = await provider.send(INTAKE, WORKFLOW, b"\x81\x8d\x90" * 100,
                                           filename=RSV.replace("T18", "T19"), local_id=uuid.uuid4().hex)
        good = await provider.send(INTAKE, WORKFLOW, content, filename=RSV, local_id=uuid.uuid4().hex)

    async def finished() -> bool:
        waiting = [p for p in watched.glob("*") if p.is_file() and not p.name.startswith(".")]
        async with mesh_sandbox.client(INTAKE) as mesh:
            in_mesh = set(await mesh.inbox()) & {bad_gzip, odd_name, bad_encoding, good}
        return not waiting and not in_mesh and len(list((watched / "done").glob("*"))) == 1

    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, Health()))
    try:
        for _ in range(150):
            if task.done() or await finished():
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)  # raises what crashed it, if anything did
    assert await finished(), "the intake and the file source did not finish"

    raw = await read_to_end(kafka_settings, kafka_settings.topic(RAW.name))
    assert [dict(r.headers)[h.SOURCE_FILE].decode() for r in raw] == [RSV]  # the good file's one row
    notes: dict[str, Any] = {
        p.name: msgspec.json.decode(p.read_bytes(), type=RejectedFile)
        for p in (watched / "rejected").glob("*.reasons.json")
    }
    rules = {name: [r.rule for r in note.reasons] for name, note in notes.items()}
    assert rules[f"mesh-{bad_gzip}.dat.reasons.json"] == [UNDECODABLE]
    assert rules[f"mesh-{odd_name}.dat.reasons.json"] == ["file.name"]  # read, its name refused
    assert rules[f"{RSV.replace('T18', 'T19')}.reasons.json"] == ["file.encoding"]
    assert len(notes) == 3
