"""The uploader worker against a MESH sandbox served over mutual TLS, configured only by its settings.

Production MESH demands a client certificate issued under NHS England's CA; the worker gets there
through VAXFLOW_MESH_URL (https) and VAXFLOW_MESH_CA_FILE / _CERT_FILE / _KEY_FILE, which
workers.base.mesh.settings turns into the MeshConfig. One TLS sandbox (its own state directory, the
session sandbox's shared key, `require_client_cert`) serves every test of this module.

A server certificate that fails verification (wrong CA bundle) says nothing about any file: the
uploader holds files, reports not-ready with the reason, and sends once the settings are fixed. A
missing client certificate only shows as a dropped connection (TLS 1.3 sends the alert after the
handshake), which is indistinguishable from an outage: retried for as long as it lasts, like any
outage (never dead-lettered).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle, record_startup
from mesh_pipeline_support import (
    FileFactory,
    assert_each_delivered_once,
    committed_offsets,
    decoded,
    delivered_once_each,
    end_offsets,
    pipeline_settings,
    produce_ready,
    read_topic,
    upload,
)
from mesh_tls_support import make_pki
from support.ports import free_port
from support.topics import ensure
from support.workers import running

from schemas.pipeline import SentReceipt
from topics.catalogue import DEADLETTER, READY, SENT
from vaxflow.dev import mesh_sandbox as sandbox
from vaxflow.dev.mesh_sandbox import MailboxRole
from workers.base.mesh.client import MeshClient, MeshConfig
from workers.base.settings import Settings
from workers.uploader import worker as uploader

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

IMMS, DPS = "X26OT303", "X26DPS001"


@dataclass(frozen=True)
class TLSMesh:
    """The mutual-TLS sandbox: its https URL, our PKI, and another CA that signed nothing of it."""

    layout: sandbox.SandboxLayout
    pki: Path
    other_pki: Path
    base: MeshSandboxHandle

    @property
    def url(self) -> str:
        return self.layout.url

    def config(self, role: MailboxRole) -> MeshConfig:
        """A dev mailbox over mutual TLS (the sandbox accepts any client cert under its CA)."""
        return self.base.config(
            role, url=self.url, ca_file=self.pki / "ca.pem",
            cert_file=self.pki / "client.pem", key_file=self.pki / "client.key",
        )

    def client(self, role: MailboxRole) -> MeshClient:
        return MeshClient(self.config(role))

    def settings(self, kafka: KafkaHandle, namespace: str, **overrides: Any) -> Settings:
        """Pipeline settings pointing the worker at this sandbox with the right CA and client cert."""
        values: dict[str, Any] = {
            "mesh_url": self.url,
            "mesh_ca_file": self.pki / "ca.pem",
            "mesh_cert_file": self.pki / "client.pem",
            "mesh_key_file": self.pki / "client.key",
            **overrides,
        }
        return pipeline_settings(kafka, namespace, self.base, **values)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tls_mesh(
    tmp_path_factory: pytest.TempPathFactory, mesh_sandbox: MeshSandboxHandle
) -> AsyncIterator[TLSMesh]:
    pki, other = tmp_path_factory.mktemp("mesh-pki"), tmp_path_factory.mktemp("mesh-pki-other")
    make_pki(pki)
    make_pki(other)
    tls = sandbox.SandboxTLS(pki / "server.pem", pki / "server.key", pki / "ca.pem", require_client_cert=True)
    layout = sandbox.SandboxLayout(home=tmp_path_factory.mktemp("mesh-tls-state"), port=free_port(), tls=tls)
    handle = TLSMesh(layout, pki, other, mesh_sandbox)
    assert layout.url.startswith("https://")
    started = time.monotonic()
    pid = sandbox.start_sandbox(layout, mesh_sandbox.shared_key)
    try:
        await sandbox.wait_ready(handle.config(MailboxRole.SENDER), within=60, pid=pid)
        record_startup("MESH sandbox with mutual TLS (uploader tests)", time.monotonic() - started)
        yield handle
    finally:
        stopped = sandbox.stop_sandbox(layout)
    assert stopped
    assert sandbox.read_pid(layout) is None



async def test_uploader_delivers_over_mutual_tls_from_settings_alone(
    kafka: KafkaHandle, namespace: str, tls_mesh: TLSMesh
) -> None:
    settings = tls_mesh.settings(kafka, namespace)
    await ensure(settings)
    make = FileFactory()
    rsv, flu = make.ready("RSV", 4), make.ready("FLU", 2)
    # Over the 5 MiB chunk size and incompressible: two gzip chunks, each its own TLS request.
    big = make.ready("COVID", 2, content=random.Random(11).randbytes(6 * 1024 * 1024))
    files = [rsv, flu, big]
    await produce_ready(settings, files)

    records = await upload(settings, {f.file_name for f in files}, timeout=60)

    assert len(records) == len(files)  # one receipt per file, no more
    assert await read_topic(settings, DEADLETTER.name, timeout=0.5) == []
    receipts = {r.file_name: r for r in decoded(records, SentReceipt)}
    expected_box = {rsv.file_name: IMMS, flu.file_name: DPS, big.file_name: IMMS}
    for f in files:
        receipt = receipts[f.file_name]
        assert receipt.mailbox_to == expected_box[f.file_name]
        assert (receipt.local_id, receipt.recovered, receipt.rows) == (f.local_id, False, f.rows)
        assert receipt.bytes == len(f.content)

    # byte-identical through TLS, gzip and chunking
    await assert_each_delivered_once(
        tls_mesh.client, files, expected_box, receipts, chunks_of=lambda f: 2 if f is big else 1
    )


@pytest.mark.parametrize("broken", ["no_client_cert", "untrusted_server_cert"])
async def test_a_tls_failure_records_nothing_and_commits_nothing_until_fixed(
    kafka: KafkaHandle, namespace: str, tls_mesh: TLSMesh, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A missing client certificate looks like a dropped connection (an outage: retried for as long
    # as it lasts); an untrusted server certificate is held, and reported on /readyz.
    held = broken == "untrusted_server_cert"
    good = tls_mesh.settings(
        kafka, namespace, upload_backoff_initial_seconds=0.2, upload_backoff_max_seconds=1.0,
    )
    if broken == "no_client_cert":  # the right CA, but the sandbox demands a certificate we lack
        bad = good.model_copy(update={"mesh_cert_file": None, "mesh_key_file": None})
    else:  # our certificate, but trusting a CA that did not sign the server's
        bad = good.model_copy(update={"mesh_ca_file": tls_mesh.other_pki / "ca.pem"})
    await ensure(good)
    make = FileFactory()
    files = [make.ready("RSV", 2), make.ready("FLU", 2)]
    await produce_ready(good, files)
    group = good.group(good.uploader_group)

    with caplog.at_level(logging.WARNING, logger="vaxflow.uploader"):
        async with running(uploader.run, bad) as worker:
            await asyncio.sleep(5)  # several failed attempts, each backing off
            assert not worker.task.done()  # waiting, not crashed
            assert await read_topic(good, SENT.name, timeout=0.5) == []
            assert await read_topic(good, DEADLETTER.name, timeout=0.5) == []
            ends = await end_offsets(good, READY.name)
            committed = await committed_offsets(good, group, READY.name)
            assert sum(ends.values()) == len(files)
            assert all(committed.get(p, 0) < end for p, end in ends.items() if end > 0), (committed, ends)
            if held:  # /readyz says why: an operator sees it without reading logs
                assert not worker.health.ready
                assert "VAXFLOW_MESH_CA_FILE" in str(worker.health.detail["mesh_tls"])
    message = "MESH certificate verification failed; holding the file until it is fixed" if held else \
        "transient MESH failure, retrying"
    retries = [r for r in caplog.records if r.getMessage() == message]
    assert len(retries) >= 2, [r.getMessage() for r in caplog.records]
    errors = [str(getattr(r, "error", "")) for r in retries]
    # MESH never answered: every attempt died in the connection (no HTTP status), e.g.
    # "ClientOSError: [Errno 104] Connection reset by peer" when the server drops a certificate-less
    # client, "ClientConnectorCertificateError: ... CERTIFICATE_VERIFY_FAILED" for the wrong CA.
    assert all(re.search(r" failed: \w+Error: ", e) and not re.search(r"HTTP \d{3}", e) for e in errors), errors
    if held:
        assert all("CERTIFICATE_VERIFY_FAILED" in e for e in errors), errors

    # Nothing reached MESH: no message under either local id.
    async with tls_mesh.client(MailboxRole.SENDER) as ours:
        for f in files:
            assert await ours.track_by_local_id(f.local_id) is None

    # The operator fixes the settings; the same group picks the files up and sends each once.
    records = await upload(good, {f.file_name for f in files}, timeout=60)
    assert len(records) == len(files)
    assert all(not r.recovered for r in decoded(records, SentReceipt))
    assert await read_topic(good, DEADLETTER.name, timeout=0.5) == []
    await delivered_once_each(tls_mesh, {MailboxRole.IMMUNISATION: files[0], MailboxRole.DPS: files[1]})

