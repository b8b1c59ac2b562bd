"""The gateway's edge against a hostile or careless world (issue 17, decision 0019).

Each test shows one attack or misconfiguration failing: the public development token outside
development mode, plain or world-readable tokens files, idle sockets, one token starving the others,
a body that would stall the event loop, plain HTTP where TLS was asked for, patient values in logs.
No Kafka is needed: a fake sink stands in (tests/workers/test_workers_gateway_http.py), and the
served tests run the real `run()` with its Kafka connection refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from support.ports import free_port
from typer.testing import CliRunner

from topics import headers as h
from vaxflow.cli import app as cli
from vaxflow.dev.pki import make_pki
from vaxflow.dev.samples import make_event
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.gateway import tokens as tokens_module
from workers.gateway.tokens import TokensFileError, TokenTable, hash_token, load_tokens
from workers.gateway.worker import KafkaSink, Outgoing, SinkUnavailable, create_app, run

TOKEN_A = "edge-token-a-0123456789abcdef"
TOKEN_B = "edge-token-b-0123456789abcdef"
CLIENT_A = "feed-a"


def tokens_json(*pairs: tuple[str, str]) -> bytes:
    return orjson.dumps(
        {"tokens": [{"client": client, "token_sha256": hash_token(token), "senders": ["*"]} for client, token in pairs]}
    )


def table() -> TokenTable:
    return TokenTable.from_json(tokens_json((CLIENT_A, TOKEN_A), ("feed-b", TOKEN_B)))


def write_tokens(path: Path, *pairs: tuple[str, str], mode: int = 0o600) -> Path:
    path.write_bytes(tokens_json(*pairs))
    path.chmod(mode)
    return path


def headers(token: str, content_type: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": content_type}


def event(seed: int = 1) -> dict[str, Any]:
    return make_event(random.Random(seed), "MMR", "X8E5B")


@pytest.fixture(autouse=True)
def _no_real_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: KafkaSink) -> None:
        raise OSError("these tests do not connect to Kafka")

    monkeypatch.setattr(KafkaSink, "start", refuse)


class GatedSink:
    """Publishes at once, except that requests of `held_client` wait for `gate`."""

    def __init__(self, held_client: str | None = None) -> None:
        self.gate = asyncio.Event()
        self.held_client = held_client
        self.held = 0
        self.two_held = asyncio.Event()
        self.offset = 0

    @property
    def ready(self) -> bool:
        return True

    async def publish(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        client = dict(records[0][2])[h.GATEWAY_CLIENT].decode()
        if client == self.held_client:
            self.held += 1
            if self.held >= 2:
                self.two_held.set()
            await self.gate.wait()
        first, self.offset = self.offset, self.offset + len(records)
        return [(0, first + i) for i in range(len(records))]


def unit_settings(**overrides: Any) -> Settings:
    return Settings(topic_namespace="edge", **overrides)


# --- 1. no public fallback token; hashed, private, reloadable tokens files ------------------------


def test_without_a_tokens_file_outside_development_mode_the_gateway_refuses_naming_the_setting() -> None:
    with pytest.raises(TokensFileError, match="VAXFLOW_GATEWAY_TOKENS_FILE is not set"):
        load_tokens(Settings(dev_mode=False))
    # in development mode the development token still works, for every sender
    grant = load_tokens(Settings(dev_mode=True)).lookup("vaxflow-dev-token")
    assert grant is not None
    assert grant.allows("ANY01")


def test_gateway_process_exits_2_without_a_tokens_file_outside_development_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAXFLOW_")}
    env |= {
        "VAXFLOW_DEV_MODE": "false",
        "VAXFLOW_GATEWAY_PORT": str(free_port()),
        "VAXFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "PYTHONPATH": os.getcwd(),
    }
    done = subprocess.run(
        [sys.executable, "-m", "workers.gateway"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "VAXFLOW_GATEWAY_TOKENS_FILE is not set" in done.stderr
    assert "vaxflow-dev-token" not in done.stderr + done.stdout


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o622])
def test_a_tokens_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_tokens(tmp_path / "tokens.json", (CLIENT_A, TOKEN_A), mode=mode)
    with pytest.raises(TokensFileError, match="chmod 600"):
        load_tokens(Settings(gateway_tokens_file=path))


def test_a_symlinked_tokens_file_is_judged_by_its_target(tmp_path: Path) -> None:
    """Secret mounts are symlinks: followed, and the file they point to must be private."""
    link = tmp_path / "tokens.json"
    link.symlink_to(write_tokens(tmp_path / "private.json", (CLIENT_A, TOKEN_A)))
    assert load_tokens(Settings(gateway_tokens_file=link)).lookup(TOKEN_A) is not None
    shared = tmp_path / "shared.json"
    shared.symlink_to(write_tokens(tmp_path / "readable.json", (CLIENT_A, TOKEN_A), mode=0o644))
    with pytest.raises(TokensFileError, match="chmod 600"):
        load_tokens(Settings(gateway_tokens_file=shared))
    (tmp_path / "directory").mkdir(mode=0o700)
    with pytest.raises(TokensFileError, match="not a regular file"):
        load_tokens(Settings(gateway_tokens_file=tmp_path / "directory"))


def test_plain_tokens_are_refused_and_hashed_ones_work(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_bytes(orjson.dumps({"tokens": [{"client": "c", "token": TOKEN_A, "senders": ["*"]}]}))
    path.chmod(0o600)
    with pytest.raises(TokensFileError, match="plain 'token' entries are refused") as caught:
        load_tokens(Settings(gateway_tokens_file=path))
    assert TOKEN_A not in str(caught.value)
    write_tokens(path, (CLIENT_A, TOKEN_A))
    assert load_tokens(Settings(gateway_tokens_file=path)).lookup(TOKEN_A) is not None


def test_a_changed_tokens_file_is_reloaded_and_a_broken_one_keeps_the_old_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tokens_module, "RELOAD_CHECK_SECONDS", 0.0)
    path = write_tokens(tmp_path / "tokens.json", (CLIENT_A, TOKEN_A))
    store = load_tokens(Settings(gateway_tokens_file=path))
    assert store.lookup(TOKEN_A) is not None
    # revoke A, grant B: a new file moved into place, as an operator's tooling does
    write_tokens(tmp_path / "new.json", ("feed-b", TOKEN_B)).replace(path)
    assert store.lookup(TOKEN_A) is None
    assert store.lookup(TOKEN_B) is not None
    # a broken edit is logged and the previous tokens stay (never fail open, never lock everyone out)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "broken.json").chmod(0o600)
    (tmp_path / "broken.json").replace(path)
    assert store.lookup(TOKEN_B) is not None
    assert "tokens file not reloaded" in caplog.text


def test_hash_token_makes_a_token_and_its_entry() -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["gateway", "hash-token", "--client", "emis", "--sender", "x8e5b"])
    assert made.exit_code == 0, made.output
    entry = orjson.loads(made.stdout.strip().splitlines()[-1])
    token = made.stderr.rsplit(": ", 1)[1].strip()
    assert entry == {"client": "emis", "token_sha256": hash_token(token), "senders": ["X8E5B"]}
    assert TokenTable.from_json(orjson.dumps({"tokens": [entry]})).lookup(token) is not None
    hashed = runner.invoke(cli, ["gateway", "hash-token", "--stdin"], input=TOKEN_A + "\n")
    assert orjson.loads(hashed.stdout)["token_sha256"] == hash_token(TOKEN_A)
    short = runner.invoke(cli, ["gateway", "hash-token", "--stdin"], input="guessable\n")
    assert short.exit_code == 2


def test_docker_compose_never_publishes_the_development_gateway_on_all_interfaces() -> None:
    import yaml

    compose = yaml.safe_load(Path("docker-compose.yml").read_text())
    gateway = compose["services"]["gateway"]
    environment = {**compose["x-vaxflow"]["environment"], **gateway["environment"]}
    if "VAXFLOW_GATEWAY_TOKENS_FILE" not in environment:
        # without a tokens file the gateway runs only in development mode, on the development token
        assert str(environment.get("VAXFLOW_DEV_MODE", "false")).lower() == "true"
        assert all(str(port).startswith("127.0.0.1:") for port in gateway.get("ports", [])), gateway["ports"]


# --- served: header timeout, connection cap, TLS, SIGHUP ----------------------------------------


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[None]:
    """`run()` as the process runs it, until the block ends; waits for /healthz first."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, Health()))
    try:
        deadline = time.monotonic() + 10
        while True:
            assert not task.done(), task.exception() if task.done() else None
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{settings.gateway_port}/healthz") as response,
                ):
                    if response.status == 200:
                        break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def healthz_seconds(port: int, context: ssl.SSLContext | None = None) -> float:
    started = time.monotonic()
    scheme = "https" if context else "http"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{scheme}://127.0.0.1:{port}/healthz", ssl=context or True) as response,
    ):
        assert response.status == 200
    return time.monotonic() - started


async def test_idle_connections_with_unfinished_headers_are_closed_and_healthz_answers() -> None:
    port = free_port()
    settings = unit_settings(gateway_port=port, gateway_header_timeout_seconds=0.5, gateway_max_connections=20)
    async with served(settings):
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        started = time.monotonic()
        for _, writer in connections:  # unauthenticated, headers never finished
            writer.write(b"POST /v1/events HTTP/1.1\r\nHost: gateway\r\nContent-Le")
        closed = await asyncio.gather(*(closed_by_server(reader, 10) for reader, _ in connections))
        elapsed = time.monotonic() - started
        for _, writer in connections:
            writer.close()
        assert all(closed), f"{closed.count(False)} of {len(closed)} idle connections still open"
        assert elapsed < 5, f"closed after {elapsed:.1f} s with a 0.5 s header timeout"
        assert await healthz_seconds(port) < 5


async def test_connections_over_the_cap_are_closed_at_once_and_healthz_answers_after_the_timeout() -> None:
    port = free_port()
    settings = unit_settings(gateway_port=port, gateway_header_timeout_seconds=1.5, gateway_max_connections=10)
    async with served(settings):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader, 1.0), "the connection over the cap was kept"
        writer.close()
        # the held ones are closed by the header timeout, and then /healthz gets in again
        assert all(await asyncio.gather(*(closed_by_server(r, 10) for r, _ in held)))
        assert await healthz_seconds(port) < 10
        for _, w in held:
            w.close()


async def test_tls_with_locally_generated_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    settings = unit_settings(
        gateway_port=port,
        gateway_tls_cert_file=pki.broker_keystore,
        gateway_tls_key_file=pki.broker_keystore,
    )
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, Health()))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert await healthz_seconds(port, context) < 10
                break
            except (aiohttp.ClientConnectorError, OSError):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{port}/v1/events", data=b"{}", headers=headers("nope"), ssl=context
            ) as response,
        ):
            assert response.status == 401
        # plain HTTP to the TLS port gets no HTTP answer
        with pytest.raises((aiohttp.ClientError, OSError)):
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as response,
            ):
                await response.read()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_sighup_reloads_the_tokens_file(tmp_path: Path) -> None:
    """Same inode, size and modification time after the edit: only SIGHUP can have reloaded it."""
    path = write_tokens(tmp_path / "tokens.json", (CLIENT_A, TOKEN_A))
    before = path.stat()
    port = free_port()
    settings = unit_settings(gateway_port=port, gateway_tokens_file=path)
    # Without the gateway's own handler SIGHUP would end the test process: ignore it meanwhile.
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        await _sighup_reloads(settings, path, before, port)
    finally:
        signal.signal(signal.SIGHUP, previous)


async def _sighup_reloads(settings: Settings, path: Path, before: os.stat_result, port: int) -> None:
    async with served(settings), aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:

        async def status(token: str) -> int:
            async with session.post("/v1/events", data=orjson.dumps(event()), headers=headers(token)) as response:
                return response.status

        assert await status(TOKEN_A) == 503  # authenticated; Kafka is not there
        assert await status(TOKEN_B) == 401
        with path.open("r+b") as file:  # in place: same inode
            file.write(tokens_json(("feed-b", TOKEN_B)))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        await asyncio.sleep(1.2)
        assert await status(TOKEN_B) == 401  # no visible change: not reloaded by itself
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        assert await status(TOKEN_B) == 503
        assert await status(TOKEN_A) == 401


# --- 3. fairness ---------------------------------------------------------------------------------


async def test_one_token_holding_its_slots_cannot_starve_another() -> None:
    sink = GatedSink(held_client=CLIENT_A)
    settings = unit_settings(gateway_max_inflight_requests=4, gateway_max_inflight_per_client=2)
    app = create_app(settings, sink=sink, tokens=table(), health=Health(ready=True))
    async with TestClient(TestServer(app)) as client:
        body = orjson.dumps(event())
        hogs = [asyncio.create_task(client.post("/v1/events", data=body, headers=headers(TOKEN_A))) for _ in range(6)]
        while sink.held < 2:  # noqa: ASYNC110 - a count, not one event
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        refused = [await t for t in hogs if t.done()]
        assert len(refused) == 4
        assert {r.status for r in refused} == {429}
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
        other = await client.post("/v1/events", data=body, headers=headers(TOKEN_B))
        assert other.status == 202
        sink.gate.set()
        assert sorted([(await t).status for t in hogs]) == [202, 202, 429, 429, 429, 429]


async def test_a_token_over_its_rate_gets_429_with_retry_after_and_others_do_not() -> None:
    settings = unit_settings(gateway_rate_per_client=0.5, gateway_rate_burst=3)
    app = create_app(settings, sink=GatedSink(), tokens=table(), health=Health(ready=True))
    async with TestClient(TestServer(app)) as client:
        body = orjson.dumps(event())
        statuses = []
        for _ in range(4):
            response = await client.post("/v1/events", data=body, headers=headers(TOKEN_A))
            statuses.append(response.status)
        assert statuses == [202, 202, 202, 429]
        assert int(response.headers["Retry-After"]) >= 1
        assert (await response.json())["error"] == "too_many_requests"
        response = await client.post("/v1/events", data=body, headers=headers(TOKEN_B))
        assert response.status == 202


# --- 4. decoding never blocks the loop ------------------------------------------------------------


async def test_healthz_answers_while_eight_mib_of_blank_lines_are_decoded() -> None:
    """Correctness, not speed: the bound is generous; on the loop this body took seconds."""
    settings = unit_settings(gateway_max_body_bytes=9 * 1024 * 1024)
    app = create_app(settings, sink=GatedSink(), tokens=table(), health=Health(ready=True))
    async with TestClient(TestServer(app)) as client:
        body = b"\n" * (8 * 1024 * 1024)
        big = asyncio.create_task(
            client.post("/v1/events", data=body, headers=headers(TOKEN_A, "application/x-ndjson"))
        )
        worst = 0.0
        probes = 0
        while not big.done():
            started = time.monotonic()
            response = await client.get("/healthz")
            assert response.status == 200
            worst = max(worst, time.monotonic() - started)
            probes += 1
            await asyncio.sleep(0.05)
        assert (await big).status == 400  # no event in it
        assert probes >= 3, "the body was decoded too fast to show anything"
        assert worst < 1.0, f"/healthz waited {worst:.2f} s while the body was decoded"


# --- 6. what is logged -------------------------------------------------------------------------------


async def test_accepted_requests_are_logged_with_id_senders_and_count_and_no_patient_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(unit_settings(), sink=GatedSink(), tokens=table(), health=Health(ready=True))
    first, second = event(1), make_event(random.Random(2), "FLU", "ygm17")
    nhs_numbers = {e["record"]["NHS_NUMBER"] for e in (first, second)} - {""}
    assert nhs_numbers
    async with TestClient(TestServer(app)) as client:
        body = orjson.dumps(first) + b"\n" + orjson.dumps(second) + b"\n"
        response = await client.post("/v1/events", data=body, headers=headers(TOKEN_A, "application/x-ndjson"))
        assert response.status == 202
    accepted = [r for r in caplog.records if r.getMessage() == "request accepted"]
    assert len(accepted) == 1
    record = accepted[0]
    assert record.__dict__["request_id"] == response.headers["X-Request-Id"]
    assert record.__dict__["senders"] == "X8E5B,YGM17"
    assert record.__dict__["events"] == 2
    assert record.__dict__["client"] == CLIENT_A
    everything = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for number in nhs_numbers:
        assert number not in everything


async def test_kafka_refusal_is_not_logged_as_accepted(caplog: pytest.LogCaptureFixture) -> None:
    class Down(GatedSink):
        async def publish(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
            raise SinkUnavailable("down")

    caplog.set_level(logging.INFO)
    app = create_app(unit_settings(), sink=Down(), tokens=table(), health=Health(ready=True))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/v1/events", data=orjson.dumps(event()), headers=headers(TOKEN_A))
        assert response.status == 503
    assert "request accepted" not in caplog.text
