"""MeshDelivery's decisions with a scripted MESH (no broker, no sandbox): a 403 is final only
after a fresh handshake; a transient failure is waited out and reported as an outage."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from schemas.pipeline import ReadyFile
from workers.base.mesh.client import MeshClient, MeshPermanentError, MeshTransientError
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.uploader.delivery import MeshDelivery
from workers.uploader.outage import MeshAvailability
from workers.uploader.outcomes import Abandoned, UploadRefused
from workers.uploader.routes import Route

FILE = ReadyFile(
    file_name="RSV_Vaccinations_v5_X8E5B_20250101T09000000.csv", vaccine_type="RSV", sender_ods="X8E5B",
    window_start="2025-01-01T09:00:00Z", window_end="2025-01-01T10:00:00Z", part=0, rows=1,
    content=b"x", origins=[(0, 0)], valid_ranges=[], local_id="vxf-0",
)
ROUTE = Route(mailbox="X26OT303", workflow_id="VACCINATIONS_1")


class ScriptedMesh:
    """Answers each send with the next scripted failure, then a message id."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls: list[str] = []
        self.tried = asyncio.Event()

    async def track_by_local_id(self, local_id: str) -> None:
        self.calls.append("track")

    async def handshake(self) -> None:
        self.calls.append("handshake")

    async def send(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append("send")
        self.tried.set()
        if self.failures:
            raise self.failures.pop(0)
        return "MSG-1"


def delivery(mesh: ScriptedMesh, stop: asyncio.Event | None = None) -> tuple[MeshDelivery, Health]:
    health = Health()
    settings = Settings(upload_backoff_initial_seconds=0.001, upload_backoff_max_seconds=0.002)
    out = MeshDelivery(settings, cast(MeshClient, mesh), health, stop or asyncio.Event(), MeshAvailability(health))
    return out, health


async def test_a_403_cured_by_a_fresh_handshake_is_not_a_refusal() -> None:
    mesh = ScriptedMesh([MeshPermanentError(403, "")])
    sent = await delivery(mesh)[0].deliver(FILE, ROUTE, asyncio.Event())
    assert sent.message_id == "MSG-1"
    assert mesh.calls == ["track", "send", "handshake", "track", "send"]


async def test_a_403_after_a_fresh_handshake_is_final() -> None:
    mesh = ScriptedMesh([MeshPermanentError(403, ""), MeshPermanentError(403, "")])
    with pytest.raises(UploadRefused) as refused:
        await delivery(mesh)[0].deliver(FILE, ROUTE, asyncio.Event())
    assert (refused.value.status, refused.value.attempts) == (403, 2)
    assert mesh.calls.count("handshake") == 1


async def test_other_refusals_are_final_at_once() -> None:
    mesh = ScriptedMesh([MeshPermanentError(417, "")])
    with pytest.raises(UploadRefused) as refused:
        await delivery(mesh)[0].deliver(FILE, ROUTE, asyncio.Event())
    assert (refused.value.status, refused.value.attempts) == (417, 1)
    assert "handshake" not in mesh.calls


async def test_transient_failures_are_waited_out_and_shown_as_an_outage_until_mesh_answers() -> None:
    mesh = ScriptedMesh([MeshTransientError("down", status=503)] * 50)
    deliver, health = delivery(mesh)
    task = asyncio.create_task(deliver.deliver(FILE, ROUTE, asyncio.Event()))
    sent = await asyncio.wait_for(task, timeout=30)
    assert sent.attempts == 51
    assert "mesh" not in health.detail  # MESH answered: the outage is over


async def test_stop_ends_a_wait_at_once() -> None:
    stop = asyncio.Event()
    mesh = ScriptedMesh([MeshTransientError("down")] * 10**6)
    deliver, health = delivery(mesh, stop)
    deliver.settings = Settings(upload_backoff_initial_seconds=60, upload_backoff_max_seconds=600)
    task = asyncio.create_task(deliver.deliver(FILE, ROUTE, asyncio.Event()))
    await asyncio.wait_for(mesh.tried.wait(), timeout=5)
    await asyncio.sleep(0.05)  # into the wait
    assert "MESH unavailable since" in str(health.detail["mesh"])
    stop.set()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(task, timeout=5)
