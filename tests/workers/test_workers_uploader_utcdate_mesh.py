"""The uploader's hold for UTC's date against the real broker and MESH sandbox (issue 18).

The uploader's clock is set to 23:59:50 UTC on a summer day (London: 00:59:50 the next day) and
runs on from there; the file holds a RECORDED_DATE of London's date. Evidence is taken from MESH's
side: the instant, on the uploader's clock, at which the message was handed to MESH, and what the
recipient's inbox holds.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import (
    acknowledge_all,
    inbox_messages,
    pipeline_settings,
    produce_ready,
    upload,
    valid_records,
)
from prometheus_client import REGISTRY
from support.topics import ensure

from schemas.batchfile import render_file
from schemas.batchkey import local_id_for
from schemas.filenames import batch_file_name
from schemas.pipeline import ReadyFile, SentReceipt
from vaxflow.dev.mesh_sandbox import MailboxRole
from workers.base.mesh.client import MeshClient
from workers.uploader import delivery
from workers.uploader.utcdate import MARGIN_SECONDS

pytestmark = pytest.mark.integration

MIDNIGHT = datetime(2026, 7, 15, tzinfo=UTC)  # UTC's date turns to London's at this instant


async def test_a_file_dated_londons_today_goes_to_mesh_only_after_utc_midnight(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline_settings(kafka, namespace, mesh_sandbox)
    await ensure(settings)
    offset = MIDNIGHT.timestamp() - 10 - time.time()
    monkeypatch.setattr(delivery, "wall_clock", lambda: time.time() + offset)

    records = valid_records(random.Random(18), "RSV", "X8E5B", 2)
    # as the validator passed them at 00:59 BST on 15 July: one row of the 14th, one of London's today
    records = [
        msgspec.structs.replace(records[0], RECORDED_DATE="20260714", DATE_AND_TIME="20260714T10000001"),
        msgspec.structs.replace(records[1], RECORDED_DATE="20260715", DATE_AND_TIME="20260715T00300001"),
    ]
    content = render_file(records)
    name = batch_file_name("RSV", "X8E5B", MIDNIGHT - timedelta(minutes=5))
    file = ReadyFile(
        file_name=name, vaccine_type="RSV", sender_ods="X8E5B", window_start="", window_end="", part=0,
        rows=2, content=content, origins=[(0, 0), (0, 1)], valid_ranges=[], local_id=local_id_for(name, content),
    )  # fmt: skip

    handed_over: list[float] = []  # the uploader's clock when each message went to MESH
    real_send = MeshClient.send

    async def send(self: MeshClient, *args: object, **kwargs: object) -> str:
        handed_over.append(delivery.wall_clock())
        return await real_send(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MeshClient, "send", send)
    held = REGISTRY.get_sample_value("vaxflow_uploader_held_for_utc_date_files_total") or 0.0
    await produce_ready(settings, [file])
    sent = await upload(settings, {name}, timeout=90)

    assert len(sent) == 1
    assert msgspec.json.decode(sent[0].value or b"", type=SentReceipt).file_name == name
    assert len(handed_over) == 1
    # Not before UTC's date reached the row's date (plus the margin for the receiver's clock) ...
    assert handed_over[0] >= MIDNIGHT.timestamp() + MARGIN_SECONDS
    # ... so the receiver's check (row date <= its UTC date on arrival) holds for every row.
    arrival_date = datetime.fromtimestamp(handed_over[0], UTC).strftime("%Y%m%d")
    assert max(max(r.RECORDED_DATE, r.PERSON_DOB) for r in records) <= arrival_date
    assert (REGISTRY.get_sample_value("vaxflow_uploader_held_for_utc_date_files_total") or 0.0) == held + 1
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        found = await inbox_messages(imms, [name])
        assert [data for _, data in found[name]] == [content]  # once, byte-identical
        await acknowledge_all(imms, found)
