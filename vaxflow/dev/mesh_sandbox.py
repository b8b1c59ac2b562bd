"""NHS Digital's MESH sandbox as a local process, configured with vaxflow's mailboxes and workflows.

The sandbox is the `mesh-sandbox` package served by uvicorn (there is no Docker engine on the
machines this project runs on). It always runs with full HMAC authentication and the file store,
so tests exercise the same auth and chunk handling the real MESH applies, and messages survive a
restart. Mailboxes and workflows come from `config/mesh-sandbox/` in the repository, copied into
the state directory at each start (see `vaxflow.dev.mesh_sandbox_app` for why that needs a small
ASGI wrapper). The process is started detached, like the Kafka broker, so it outlives the command
that started it; its pid file lets another shell stop it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import aiohttp

from vaxflow.dev import processes
from workers.base.mesh.auth import MeshCredentials
from workers.base.mesh.client import MeshClient, MeshConfig, MeshPermanentError, MeshTransientError
from workers.base.paths import MESH_SANDBOX_CONFIG

# The development defaults of workers.base.settings (VAXFLOW_MESH_URL, VAXFLOW_MESH_SHARED_KEY).
DEFAULT_PORT: Final = 8700
DEFAULT_SHARED_KEY: Final = "vaxflow-dev-shared-key"
APP: Final = "vaxflow.dev.mesh_sandbox_app:app"
# Read by the APP module in the sandbox process: where our mailboxes.jsonl/workflows.jsonl are.
CONFIG_DIR_ENV: Final = "VAXFLOW_MESH_SANDBOX_CONFIG"
MAILBOXES_FILE: Final = "mailboxes.jsonl"
WORKFLOWS_FILE: Final = "workflows.jsonl"


class SandboxError(RuntimeError):
    """The sandbox cannot be configured, started or reached."""


class MailboxRole(StrEnum):
    """What a dev mailbox stands for; `canned` marks the package's own test mailboxes."""

    SENDER = "sender"
    IMMUNISATION = "immunisation"
    DPS = "dps"
    DEAD_LETTER = "dead_letter"
    CANNED = "canned"


@dataclass(frozen=True, slots=True)
class DevMailbox:
    """One sandbox mailbox. Dev passwords only, yet still kept out of `repr` so no habit forms."""

    mailbox_id: str
    name: str
    role: MailboxRole
    password: str = field(repr=False)

    def credentials(self, shared_key: str) -> MeshCredentials:
        return MeshCredentials(self.mailbox_id, self.password, shared_key)


@dataclass(frozen=True, slots=True)
class DevWorkflow:
    workflow_id: str
    senders: tuple[str, ...]
    receivers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DevMeshConfig:
    """The sandbox's mailboxes and workflows as the repository defines them."""

    mailboxes: tuple[DevMailbox, ...]
    workflows: tuple[DevWorkflow, ...]

    def mailbox(self, key: MailboxRole | str) -> DevMailbox:
        """The first mailbox with this role, or the mailbox with this id."""
        for mb in self.mailboxes:
            if mb.role == key or mb.mailbox_id == str(key).upper():
                return mb
        raise KeyError(f"no dev mailbox {key!r}")

    def workflows_from(self, sender: str) -> frozenset[str]:
        """The allow-list a client of `sender` should enforce (the sandbox itself accepts any id)."""
        return frozenset(w.workflow_id for w in self.workflows if sender.upper() in w.senders)

    def workflow(self, sender: str, recipient: str) -> str:
        """The first workflow that carries messages from sender to recipient."""
        for w in self.workflows:
            if sender.upper() in w.senders and recipient.upper() in w.receivers:
                return w.workflow_id
        raise KeyError(f"no dev workflow from {sender} to {recipient}")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise SandboxError(f"cannot read {path}: {exc}") from exc


def _canned_dir() -> Path | None:
    """mesh-sandbox's own data directory, found without importing it (its import configures logging)."""
    spec = importlib.util.find_spec("mesh_sandbox")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "store" / "data"


def _merged(config_dir: Path, name: str, key: str, include_canned: bool) -> list[dict[str, Any]]:
    """The repository's entries, then the package's canned ones whose ids the repository does not use."""
    entries = _read_jsonl(config_dir / name)
    canned = _canned_dir()
    if include_canned and canned is not None and (canned / name).exists():
        ours = {e[key] for e in entries}
        entries += [{**e, "role": MailboxRole.CANNED.value} if name == MAILBOXES_FILE else e
                    for e in _read_jsonl(canned / name) if e[key] not in ours]
    return entries


def load_dev_config(config_dir: Path = MESH_SANDBOX_CONFIG, *, include_canned: bool = True) -> DevMeshConfig:
    """What `vaxflow dev status` prints and what tests use to log in as each mailbox."""
    try:
        mailboxes = tuple(
            DevMailbox(
                mailbox_id=str(e["mailbox_id"]).upper(),
                name=str(e.get("mailbox_name", "")),
                role=MailboxRole(e.get("role", MailboxRole.CANNED.value)),
                password=str(e["password"]),
            )
            for e in _merged(config_dir, MAILBOXES_FILE, "mailbox_id", include_canned)
        )
        workflows = tuple(
            DevWorkflow(
                workflow_id=str(e["workflow_id"]),
                senders=tuple(str(s).upper() for s in e.get("senders", [])),
                receivers=tuple(str(r).upper() for r in e.get("receivers", [])),
            )
            for e in _merged(config_dir, WORKFLOWS_FILE, "workflow_id", include_canned)
        )
    except (KeyError, ValueError) as exc:
        raise SandboxError(f"invalid MESH sandbox config in {config_dir}: {exc!r}") from exc
    return DevMeshConfig(mailboxes, workflows)


@dataclass(frozen=True, slots=True)
class SandboxTLS:
    """Serve HTTPS, optionally demanding a client certificate, to exercise MESH's mutual TLS."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True, slots=True)
class SandboxLayout:
    """Where one sandbox keeps its configuration copy, messages, log and pid."""

    home: Path
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    tls: SandboxTLS | None = None

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def mailboxes_dir(self) -> Path:
        return self.home / "mailboxes"

    @property
    def log(self) -> Path:
        return self.home / "sandbox.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "sandbox.pid"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def prepare_state(
    layout: SandboxLayout, config_dir: Path = MESH_SANDBOX_CONFIG, *, include_canned: bool = True
) -> DevMeshConfig:
    """Copy the repository config into the state directory; messages from earlier runs stay."""
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    layout.mailboxes_dir.mkdir(parents=True, exist_ok=True)
    for name, key in ((MAILBOXES_FILE, "mailbox_id"), (WORKFLOWS_FILE, "workflow_id")):
        lines = (json.dumps(e) for e in _merged(config_dir, name, key, include_canned))
        (layout.config_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_dev_config(config_dir, include_canned=include_canned)


def read_pid(layout: SandboxLayout) -> int | None:
    """The sandbox's process id if the pid file names a live process."""
    return processes.read_pid(layout.pid_file)


def _check_port_free(host: str, port: int) -> None:
    """Fail now rather than let a handshake succeed against whatever already holds the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn does: lingering TIME_WAIT connections of a just-stopped sandbox are no obstacle.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SandboxError(f"{host}:{port} is already in use ({exc.strerror})") from exc


async def is_running(url: str, within: float = 2.0) -> bool:
    """Whether a MESH (sandbox or real) answers its unauthenticated `_ping` at `url`.

    Certificates are not checked: this asks "is something there", and trusts nothing it says.
    """
    ping = f"{url.rstrip('/')}/messageexchange/_ping"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=within)) as session,
            session.get(ping, ssl=False) as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def start_sandbox(
    layout: SandboxLayout,
    shared_key: str,
    *,
    config_dir: Path = MESH_SANDBOX_CONFIG,
    include_canned: bool = True,
) -> int:
    """Start the sandbox detached (it outlives `vaxflow dev up`); returns its pid.

    The shared key travels in the child's environment, never on its command line, where any
    user's `ps` would show it.
    """
    running = read_pid(layout)
    if running is not None:
        return running
    _check_port_free(layout.host, layout.port)
    prepare_state(layout, config_dir, include_canned=include_canned)
    env = {
        **os.environ,
        "AUTH_MODE": "full",
        "STORE_MODE": "file",
        "MAILBOXES_DATA_DIR": str(layout.mailboxes_dir),
        "FILE_STORE_DIR": str(layout.mailboxes_dir),
        "SHARED_KEY": shared_key,
        CONFIG_DIR_ENV: str(layout.config_dir),
    }
    cmd = [sys.executable, "-m", "uvicorn", APP, "--host", layout.host, "--port", str(layout.port)]
    if layout.tls is not None:
        cmd += ["--ssl-certfile", str(layout.tls.cert_file), "--ssl-keyfile", str(layout.tls.key_file)]
        if layout.tls.ca_file is not None:
            cmd += ["--ssl-ca-certs", str(layout.tls.ca_file)]
        if layout.tls.require_client_cert:
            cmd += ["--ssl-cert-reqs", str(int(ssl.CERT_REQUIRED))]
    with open(layout.log, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
    layout.pid_file.write_text(str(proc.pid))
    return proc.pid


async def wait_ready(
    config: MeshConfig, within: float = 30.0, pid: int | None = None, poll: float = 0.05
) -> float:
    """Wait until an authenticated handshake succeeds; return the seconds it took.

    A handshake proves more than an open port: the app imported, our mailboxes were loaded and
    the shared key matches. A 403 is final (wrong key or config), not "not ready yet".
    """
    started = time.monotonic()
    deadline = started + within
    last: Exception | None = None
    # Short per-attempt timeouts, so one stuck request cannot outlast `within`.
    probe = replace(config, total_timeout=min(5.0, within), connect_timeout=min(2.0, within))
    async with MeshClient(probe) as client:
        while time.monotonic() < deadline:
            if pid is not None and not processes.alive(pid):
                raise SandboxError("the MESH sandbox exited during start-up; see its sandbox.log")
            try:
                await client.handshake()
                return time.monotonic() - started
            except MeshTransientError as exc:
                last = exc
            except MeshPermanentError as exc:
                raise SandboxError(
                    f"MESH sandbox at {config.url} refused {config.credentials.mailbox_id}: {exc} "
                    "(shared key or mailbox config differs from the running sandbox?)"
                ) from exc
            await asyncio.sleep(poll)
    raise SandboxError(f"MESH sandbox at {config.url} not ready after {within:.0f}s: {last}")


def stop_sandbox(layout: SandboxLayout, timeout: float = 10.0) -> bool:
    """SIGTERM (uvicorn finishes open requests), then SIGKILL after `timeout`."""
    return processes.stop_pid_file(layout.pid_file, timeout)
