"""Session fixtures for NHS Digital's MESH sandbox (the real mesh-sandbox app, full HMAC auth).

The sandbox is started once per test session on a free port, in a temporary state directory,
with a random shared key (so nothing can pass by accident on a default key); or an already-running
one is reused when VAXFLOW_TEST_MESH_URL names it (its key in VAXFLOW_TEST_MESH_SHARED_KEY, default
the dev key). Tests isolate themselves by unique local ids and by the message ids they get back,
not by separate sandboxes. The measured start-up time is printed in the terminal summary.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from support.ports import free_port

from vaxflow.dev import mesh_sandbox as sandbox
from workers.base.mesh.client import MeshClient, MeshConfig

_STARTUPS: list[tuple[str, float]] = []


@dataclass
class MeshSandboxHandle:
    """The test sandbox: its URL and key, the dev mailboxes, and clients for any of them."""

    url: str
    shared_key: str = field(repr=False)
    mailboxes: sandbox.DevMeshConfig
    layout: sandbox.SandboxLayout | None
    startup_seconds: float

    def config(self, mailbox: sandbox.MailboxRole | str, **overrides: Any) -> MeshConfig:
        """Client settings for a dev mailbox; the allow-list is that mailbox's workflows."""
        mb = self.mailboxes.mailbox(mailbox)
        base = MeshConfig(
            url=self.url,
            credentials=mb.credentials(self.shared_key),
            allowed_workflows=self.mailboxes.workflows_from(mb.mailbox_id),
        )
        return replace(base, **overrides)

    def client(self, mailbox: sandbox.MailboxRole | str, **overrides: Any) -> MeshClient:
        return MeshClient(self.config(mailbox, **overrides))

    def stop(self) -> None:
        if self.layout is None:
            pytest.skip("the reused MESH sandbox cannot be stopped by tests")
        sandbox.stop_sandbox(self.layout)

    async def start_async(self) -> float:
        """Start (again) and wait for an authenticated handshake; for async tests."""
        assert self.layout is not None
        pid = sandbox.start_sandbox(self.layout, self.shared_key)
        ready = self.config(sandbox.MailboxRole.SENDER)
        return await sandbox.wait_ready(ready, within=60, pid=pid)

    def start(self) -> float:
        """The same from synchronous code (no event loop running)."""
        return asyncio.run(self.start_async())

    async def restart_async(self) -> float:
        self.stop()
        return await self.start_async()


@pytest.fixture(scope="session")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshSandboxHandle]:
    mailboxes = sandbox.load_dev_config()
    reuse = os.environ.get("VAXFLOW_TEST_MESH_URL")
    if reuse:
        key = os.environ.get("VAXFLOW_TEST_MESH_SHARED_KEY", sandbox.DEFAULT_SHARED_KEY)
        handle = MeshSandboxHandle(reuse, key, mailboxes, None, 0.0)
        asyncio.run(sandbox.wait_ready(handle.config(sandbox.MailboxRole.SENDER), within=10))
        yield handle
        return
    layout = sandbox.SandboxLayout(home=Path(tmp_path_factory.mktemp("mesh-sandbox")), port=free_port())
    handle = MeshSandboxHandle(layout.url, secrets.token_urlsafe(24), mailboxes, layout, 0.0)
    started = time.monotonic()
    try:
        handle.start()
        handle.startup_seconds = time.monotonic() - started
        _STARTUPS.append(("MESH sandbox (start -> first authenticated handshake)", handle.startup_seconds))
        yield handle
    finally:
        sandbox.stop_sandbox(layout)


def record_startup(what: str, seconds: float) -> None:
    """Let a test add a start-up figure to the session summary (e.g. a TLS sandbox)."""
    _STARTUPS.append((what, seconds))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for what, seconds in _STARTUPS:
        terminalreporter.write_line(f"[mesh] {what}: {seconds:.2f}s")
