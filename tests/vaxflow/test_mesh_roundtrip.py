"""Round trips through NHS Digital's MESH sandbox over real HTTP with full HMAC authentication."""

from __future__ import annotations

import gzip
import random
import shutil
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from fixtures_mesh import MeshSandboxHandle, record_startup
from mesh_tls_support import make_pki
from support.ports import free_port

from vaxflow.dev import mesh_sandbox as sandbox
from vaxflow.dev.mesh_sandbox import MailboxRole
from workers.base.mesh.auth import MeshCredentials, authorization_header
from workers.base.mesh.client import (
    MIN_CHUNK_BYTES,
    MeshClient,
    MeshConfig,
    MeshLocalIdAmbiguousError,
    MeshPermanentError,
    MeshTransientError,
    MeshValidationError,
)

pytestmark = pytest.mark.integration


def _local_id() -> str:
    return f"vaxflow-test-{uuid.uuid4().hex}"


def _csv(rows: int) -> bytes:
    header = b'"NHS_NUMBER"|"PERSON_FORENAME"|"PERSON_SURNAME"\r\n'
    return header + b"".join(b'"9000000009"|"Jo %d"|"Bloggs"\r\n' % i for i in range(rows))


@pytest.mark.parametrize("role", [MailboxRole.IMMUNISATION, MailboxRole.DPS, MailboxRole.DEAD_LETTER])
async def test_send_list_download_acknowledge(mesh_sandbox: MeshSandboxHandle, role: MailboxRole) -> None:
    sender = mesh_sandbox.mailboxes.mailbox(MailboxRole.SENDER)
    recipient = mesh_sandbox.mailboxes.mailbox(role)
    workflow = mesh_sandbox.mailboxes.workflow(sender.mailbox_id, recipient.mailbox_id)
    data, local_id = _csv(200), _local_id()
    filename = "RSV_Vaccinations_v5_X8E5B_20250101T12000000.csv"

    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        await ours.handshake()
        message_id = await ours.send(recipient.mailbox_id, workflow, data, filename=filename, local_id=local_id)

    async with mesh_sandbox.client(role) as theirs:
        assert message_id in await theirs.inbox()
        meta, got = await theirs.download(message_id)
        assert got == data
        assert (meta.sender, meta.recipient, meta.workflow_id) == (sender.mailbox_id, recipient.mailbox_id, workflow)
        assert (meta.filename, meta.local_id, meta.total_chunks) == (filename, local_id, 1)
        await theirs.acknowledge(message_id)
        assert message_id not in await theirs.inbox()

    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        tracked = await ours.tracking(message_id)
    assert tracked is not None
    assert tracked.status == "acknowledged"
    assert tracked.complete


async def test_an_ack_file_comes_back_to_our_inbox(mesh_sandbox: MeshSandboxHandle) -> None:
    """The reverse direction the ack reader will use: Immunisation -> us on the _ACK workflow."""
    us = mesh_sandbox.mailboxes.mailbox(MailboxRole.SENDER).mailbox_id
    ack = b"MESSAGE_HEADER_ID|HEADER_RESPONSE_CODE\r\nabc|Success\r\n"
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as imms:
        message_id = await imms.send(
            us, "VACCINATIONS_1_ACK", ack, filename="ack/RSV_InfAck.csv", local_id=_local_id()
        )
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        assert message_id in await ours.inbox(workflow_filter="*_ACK*")
        meta, got = await ours.download(message_id)
        assert (got, meta.workflow_id) == (ack, "VACCINATIONS_1_ACK")
        await ours.acknowledge(message_id)


async def test_large_file_goes_chunked_and_gzipped_and_round_trips(mesh_sandbox: MeshSandboxHandle) -> None:
    data = random.Random(7).randbytes(12_000_000)  # incompressible: every chunk stays over 5 MB
    recipient = mesh_sandbox.mailboxes.mailbox(MailboxRole.IMMUNISATION)
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        message_id = await ours.send(
            recipient.mailbox_id, "VACCINATIONS_1", data, filename="big.csv", local_id=_local_id(),
            chunk_size=MIN_CHUNK_BYTES,
        )
        tracked = await ours.tracking(message_id)
    assert tracked is not None
    assert tracked.status == "accepted"

    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as theirs:
        meta, got = await theirs.download(message_id)
        assert meta.total_chunks == 3
        assert got == data
        # What MESH stored is three gzip streams, each readable on its own.
        creds = recipient.credentials(mesh_sandbox.shared_key)
        path = f"/messageexchange/{recipient.mailbox_id}/inbox/{message_id}/2"
        async with (
            aiohttp.ClientSession(auto_decompress=False) as raw,
            raw.get(mesh_sandbox.url + path, headers=_raw_headers(creds)) as resp,
        ):
            assert resp.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await resp.read()) == data[MIN_CHUNK_BYTES : 2 * MIN_CHUNK_BYTES]
        await theirs.acknowledge(message_id)


def _raw_headers(creds: MeshCredentials) -> dict[str, str]:
    return {
        "Authorization": authorization_header(creds),
        "Accept": "application/vnd.mesh.v2+json",
        "Accept-Encoding": "gzip",
    }


async def test_wrong_password_is_a_permanent_403(mesh_sandbox: MeshSandboxHandle) -> None:
    sender = mesh_sandbox.mailboxes.mailbox(MailboxRole.SENDER)
    bad = MeshCredentials(sender.mailbox_id, "not-the-password", mesh_sandbox.shared_key)
    async with mesh_sandbox.client(MailboxRole.SENDER, credentials=bad) as client:
        with pytest.raises(MeshPermanentError) as err:
            await client.handshake()
        assert err.value.status == 403
        with pytest.raises(MeshPermanentError) as err:
            await client.send("X26OT303", "VACCINATIONS_1", b"x", filename="f.csv", local_id=_local_id())
        assert err.value.status == 403


async def test_wrong_shared_key_is_a_permanent_403(mesh_sandbox: MeshSandboxHandle) -> None:
    sender = mesh_sandbox.mailboxes.mailbox(MailboxRole.SENDER)
    bad = MeshCredentials(sender.mailbox_id, sender.password, "BackBone")
    async with mesh_sandbox.client(MailboxRole.SENDER, credentials=bad) as client:
        with pytest.raises(MeshPermanentError) as err:
            await client.handshake()
    assert err.value.status == 403


async def test_unknown_recipient_is_permanent(mesh_sandbox: MeshSandboxHandle) -> None:
    async with mesh_sandbox.client(MailboxRole.SENDER) as client:
        with pytest.raises(MeshPermanentError) as err:
            await client.send("X26NOSUCH", "VACCINATIONS_1", b"x", filename="f.csv", local_id=_local_id())
    assert (err.value.status, err.value.code) == (417, "12")


async def test_tracking_by_local_id_finds_what_was_sent(mesh_sandbox: MeshSandboxHandle) -> None:
    local_id = _local_id()
    async with mesh_sandbox.client(MailboxRole.SENDER) as client:
        assert await client.track_by_local_id(local_id) is None
        message_id = await client.send(
            "X26DPS001", "DPS_FLU_VAC", _csv(3), filename="FLU_Vaccinations_v5_DPSFULL_20250101T12000000.csv",
            local_id=local_id,
        )
        found = await client.track_by_local_id(local_id)
        assert found is not None
        assert (found.message_id, found.local_id, found.recipient) == (message_id, local_id, "X26DPS001")
        assert found.complete
        assert found.delivered
        assert found.success is True

        # A reused local id no longer names one message: the uploader must not guess.
        await client.send("X26DPS001", "DPS_FLU_VAC", b"x", filename="f.csv", local_id=local_id)
        with pytest.raises(MeshLocalIdAmbiguousError):
            await client.track_by_local_id(local_id)


async def test_unregistered_workflow_is_refused_by_the_client(mesh_sandbox: MeshSandboxHandle) -> None:
    """The sandbox accepts any workflow id (real MESH: code 17); the allow-list stops it here."""
    async with mesh_sandbox.client(MailboxRole.SENDER, allowed_workflows=None) as loose:
        assert await loose.send("X26OT303", "ANY_WORKFLOW", b"x", filename="f.csv", local_id=_local_id())
    local_id = _local_id()
    async with mesh_sandbox.client(MailboxRole.SENDER) as strict:
        with pytest.raises(MeshValidationError):
            await strict.send("X26OT303", "ANY_WORKFLOW", b"x", filename="f.csv", local_id=local_id)
        assert await strict.track_by_local_id(local_id) is None


async def test_the_sandbox_serves_the_repository_workflows(mesh_sandbox: MeshSandboxHandle) -> None:
    url = f"{mesh_sandbox.url}/messageexchange/workflowsearch/VACCINATIONS_1"
    async with aiohttp.ClientSession() as http, http.get(
        url, headers={"Accept": "application/vnd.mesh.v2+json"}
    ) as resp:
        found = {r["mailbox_id"] for r in (await resp.json())["results"]}
    assert found == {"X26OT303", "X26OT304"}
    assert await sandbox.is_running(mesh_sandbox.url)


# ------------------------------------------------------------------------------------- mutual TLS


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_mutual_tls_client_certificate(tmp_path: Path, mesh_sandbox: MeshSandboxHandle) -> None:
    make_pki(tmp_path)
    tls = sandbox.SandboxTLS(tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem", True)
    port = free_port()
    layout = sandbox.SandboxLayout(home=tmp_path / "state", port=port, tls=tls)
    base = mesh_sandbox.config(MailboxRole.SENDER)
    with_cert = MeshConfig(
        url=layout.url, credentials=base.credentials, ca_file=tmp_path / "ca.pem",
        cert_file=tmp_path / "client.pem", key_file=tmp_path / "client.key",
    )
    started = time.monotonic()
    pid = sandbox.start_sandbox(layout, mesh_sandbox.shared_key)
    try:
        await sandbox.wait_ready(with_cert, within=60, pid=pid)
        record_startup("MESH sandbox with mutual TLS", time.monotonic() - started)
        without_cert = MeshConfig(url=layout.url, credentials=base.credentials, ca_file=tmp_path / "ca.pem")
        async with MeshClient(without_cert) as client:
            with pytest.raises(MeshTransientError):
                await client.handshake()
    finally:
        assert sandbox.stop_sandbox(layout)
    assert sandbox.read_pid(layout) is None



async def test_messages_survive_a_sandbox_restart(mesh_sandbox: MeshSandboxHandle) -> None:
    """The file store keeps state, so outage tests can stop and start the sandbox mid-flow."""
    local_id = _local_id()
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        message_id = await ours.send("X26OT303", "VACCINATIONS_1", b"kept", filename="k.csv", local_id=local_id)
    mesh_sandbox.stop()
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        with pytest.raises(MeshTransientError):
            await ours.handshake()
    record_startup("MESH sandbox restart (start -> handshake)", await mesh_sandbox.start_async())
    async with mesh_sandbox.client(MailboxRole.SENDER) as ours:
        found = await ours.track_by_local_id(local_id)
        assert found is not None
        assert found.message_id == message_id
    async with mesh_sandbox.client(MailboxRole.IMMUNISATION) as theirs:
        assert (await theirs.download(message_id))[1] == b"kept"
        await theirs.acknowledge(message_id)
