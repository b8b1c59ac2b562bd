"""Secrets and defaults (issue 17): what the dev commands print, and what production refuses.

The development stack's credentials are published (README, config/mesh-sandbox); outside
development mode (VAXFLOW_DEV_MODE) a process that would use them, talk plain HTTP to a remote
MESH, send to the sandbox's routes or poll MESH more often than it asks, refuses to start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from vaxflow.dev import stack
from workers.base.mesh.auth import MeshCredentials
from workers.base.mesh.client import MeshClient, MeshConfig
from workers.base.mesh.settings import own_mailbox_config
from workers.base.runtime import Health
from workers.base.settings import DEV_MESH_PASSWORDS, Settings, SettingsError
from workers.filesource.mesh_intake import intake_config
from workers.filesource.worker import run as run_filesource
from workers.uploader.worker import run as run_uploader

PRODUCTION = {"mesh_password": "a-real-mailbox-password", "mesh_shared_key": "a-real-shared-key"}


# --- what `vaxflow dev status` / `dev up` print ----------------------------------------------------


def test_dev_status_prints_development_defaults_and_masks_anything_else(tmp_path: Path) -> None:
    defaults = stack.status(Settings(dev_home=tmp_path))
    text = orjson.dumps(defaults).decode() + stack.format_status(defaults)
    assert "vaxflow-dev-shared-key" in text
    assert "vaxflow-dev-token" in text
    configured = stack.status(
        Settings(dev_home=tmp_path, mesh_shared_key="prod-key-9f8e7d", gateway_dev_token="prod-token-1a2b3c")
    )
    text = orjson.dumps(configured).decode() + stack.format_status(configured)
    assert "prod-key-9f8e7d" not in text
    assert "prod-token-1a2b3c" not in text
    assert "********" in text


def test_dev_status_with_a_tokens_file_prints_no_token(tmp_path: Path) -> None:
    report = stack.status(Settings(dev_home=tmp_path, gateway_tokens_file=tmp_path / "tokens.json"))
    text = orjson.dumps(report).decode() + stack.format_status(report)
    assert "vaxflow-dev-token" not in text


# --- plain HTTP to MESH ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://mesh.example.nhs.uk", "http://10.0.0.5:8700", "http://[fe80::1]:8700"])
def test_plain_http_mesh_url_to_anything_but_loopback_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="plain http:// is refused"):
        Settings(dev_mode=False, mesh_url=url, **PRODUCTION)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8700", "http://localhost:8700", "http://[::1]:8700", "https://mesh.example"])
def test_https_or_loopback_mesh_urls_are_accepted(url: str) -> None:
    assert Settings(dev_mode=False, mesh_url=url, **PRODUCTION).mesh_url == url


# --- development credentials and routes outside development mode -----------------------------------


def test_development_mesh_password_or_shared_key_is_refused_outside_development_mode() -> None:
    with pytest.raises(SettingsError, match="password is a development stack's"):
        own_mailbox_config(Settings(dev_mode=False, mesh_shared_key="a-real-shared-key"))
    with pytest.raises(SettingsError, match="VAXFLOW_MESH_SHARED_KEY is the development stack's"):
        own_mailbox_config(Settings(dev_mode=False, mesh_password="a-real-mailbox-password"))
    assert own_mailbox_config(Settings(dev_mode=False, **PRODUCTION)).credentials.mailbox_id
    assert own_mailbox_config(Settings(dev_mode=True)).credentials.password == "vaxflow-dev-password"


@pytest.mark.parametrize("password", ["vaxflow-dev-password", "password", "immunisation-dev-password"])
def test_the_file_source_intake_refuses_development_mesh_passwords_outside_development_mode(password: str) -> None:
    """The intake mailbox has its own password (VAXFLOW_FILESOURCE_MESH_PASSWORD): the sandbox's
    `password` of its canned mailboxes, which the tests' intake uses, was taken outside development
    mode, and a refused one named VAXFLOW_MESH_PASSWORD, a variable the operator had set right."""
    intake = {"filesource_mesh_mailbox": "X26PROVB", "filesource_mesh_password": password}
    with pytest.raises(SettingsError, match="VAXFLOW_FILESOURCE_MESH_PASSWORD") as refused:
        intake_config(Settings(dev_mode=False, **PRODUCTION, **intake))  # type: ignore[arg-type]
    assert password == "password" or password not in str(refused.value)  # never the secret itself
    assert intake_config(Settings(dev_mode=True, **intake)) is not None  # type: ignore[arg-type]
    real = {**intake, "filesource_mesh_password": "a-real-intake-password"}
    config = intake_config(Settings(dev_mode=False, **PRODUCTION, **real))  # type: ignore[arg-type]
    assert config is not None
    assert config.credentials.mailbox_id == "X26PROVB"


def test_the_file_source_intake_refuses_the_development_shared_key_outside_development_mode() -> None:
    intake = {"filesource_mesh_mailbox": "X26PROVB", "filesource_mesh_password": "a-real-intake-password"}
    settings = Settings(dev_mode=False, mesh_password="a-real-mailbox-password", **intake)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="VAXFLOW_MESH_SHARED_KEY is the development stack's"):
        intake_config(settings)


async def test_the_file_source_stops_at_start_on_a_development_intake_password(tmp_path: Path) -> None:
    settings = Settings(
        dev_mode=False, **PRODUCTION, filesource_dir=tmp_path,  # type: ignore[arg-type]
        filesource_mesh_mailbox="X26PROVB", filesource_mesh_password="password",  # type: ignore[arg-type]
    )  # fmt: skip
    with pytest.raises(SettingsError, match="VAXFLOW_FILESOURCE_MESH_PASSWORD"):  # before any Kafka connection
        await asyncio.wait_for(run_filesource(settings, asyncio.Event(), Health()), 10)


def test_every_published_sandbox_password_is_a_refused_development_password() -> None:
    mailboxes = Path(__file__).parents[2] / "config" / "mesh-sandbox" / "mailboxes.jsonl"
    published = {orjson.loads(line)["password"] for line in mailboxes.read_text().splitlines() if line.strip()}
    assert published | {"password"} <= DEV_MESH_PASSWORDS


async def test_uploader_refuses_the_sandbox_routes_outside_development_mode() -> None:
    with pytest.raises(SettingsError, match="VAXFLOW_ROUTES_FILE is required"):
        await asyncio.wait_for(run_uploader(Settings(dev_mode=False, **PRODUCTION), asyncio.Event(), Health()), 10)


# --- poll floors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["ack_poll_seconds", "filesource_poll_seconds", "filesource_mesh_poll_seconds", "nhs_sim_poll_seconds",
             "ops_sample_seconds"],
)  # fmt: skip
def test_every_poll_interval_has_a_floor(name: str) -> None:
    with pytest.raises(ValidationError):
        Settings(dev_mode=True, **{name: 0.001})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ack_poll_seconds", "filesource_mesh_poll_seconds"])
def test_mesh_polls_are_at_least_five_minutes_outside_development_mode(name: str) -> None:
    with pytest.raises(ValidationError, match="300"):
        Settings(dev_mode=False, **PRODUCTION, **{name: 10.0})  # type: ignore[arg-type]
    assert getattr(Settings(dev_mode=True, **{name: 10.0}), name) == 10.0  # type: ignore[arg-type]


# --- a handshake at least daily ----------------------------------------------------------------------


@pytest.fixture
async def fake_mesh() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def handshake(request: web.Request) -> web.Response:
        seen.append("handshake")
        return web.json_response({"mailboxId": request.match_info["mailbox"]})

    async def inbox(_: web.Request) -> web.Response:
        seen.append("inbox")
        return web.json_response({"messages": []})

    app = web.Application()
    app.router.add_post("/messageexchange/{mailbox}", handshake)
    app.router.add_get("/messageexchange/{mailbox}/inbox", inbox)
    async with TestServer(app) as server:
        yield str(server.make_url("")).rstrip("/"), seen


async def test_a_long_running_client_handshakes_again_when_the_last_is_old(fake_mesh: tuple[str, list[str]]) -> None:
    url, seen = fake_mesh
    config = MeshConfig(url=url, credentials=MeshCredentials("X26VXF001", "pw", "key"), handshake_every=0.3)
    async with MeshClient(config) as mesh:
        await mesh.inbox()
        await mesh.inbox()
        started = time.monotonic()
        await asyncio.sleep(0.4)
        await mesh.inbox()
        assert time.monotonic() - started < 5
    assert seen == ["handshake", "inbox", "inbox", "handshake", "inbox"]


def test_every_worker_mesh_client_handshakes_at_least_daily() -> None:
    """Uploader and ack reader (own_mailbox_config) and the file source's intake (mailbox_config)."""
    config = own_mailbox_config(Settings(dev_mode=True))
    assert config.handshake_every is not None
    assert config.handshake_every <= 86_400
    with pytest.raises(ValidationError):
        Settings(mesh_handshake_seconds=2 * 86_400)


# --- the development stack runs in development mode -------------------------------------------------


def test_dev_stack_starts_its_workers_in_development_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, str] = {}

    class Started:
        pid = 4242

        def __init__(self, args: list[str], **kwargs: Any) -> None:
            seen.update(kwargs["env"])

    monkeypatch.delenv("VAXFLOW_DEV_MODE")
    monkeypatch.setattr(stack.subprocess, "Popen", Started)
    stack.start_worker(Settings(dev_home=tmp_path), "gateway")
    assert seen["VAXFLOW_DEV_MODE"] == "true"


def test_dev_status_runs_in_development_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from vaxflow.cli import app

    monkeypatch.setenv("VAXFLOW_DEV_MODE", "false")
    monkeypatch.setenv("VAXFLOW_DEV_HOME", str(tmp_path))
    monkeypatch.setenv("VAXFLOW_ACK_POLL_SECONDS", "10")  # the dev stack's; refused outside development mode
    result = CliRunner().invoke(app, ["dev", "status"])
    assert result.exit_code == 0, result.output
    assert "vaxflow-dev-token" in result.output
