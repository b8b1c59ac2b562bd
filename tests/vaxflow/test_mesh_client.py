"""MeshClient against a scripted in-process HTTP server: the cases the sandbox cannot produce.

The sandbox never answers 429 or 503, never fails one chunk and then accepts it, and accepts
requests the real MESH refuses; these tests script those answers to pin the error classes the
uploader's retry and dead-letter logic depends on. Round trips through the real sandbox are in
test_mesh_roundtrip.py.
"""

from __future__ import annotations

import gzip
import socket
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from workers.base.mesh.auth import MeshCredentials
from workers.base.mesh.client import (
    MAX_REQUEST_BYTES,
    MIN_CHUNK_BYTES,
    MeshClient,
    MeshConfig,
    MeshLocalIdAmbiguousError,
    MeshPermanentError,
    MeshTransientError,
    MeshValidationError,
)

CREDS = MeshCredentials("X26VXF001", "pw", "key")
MIB = 1024 * 1024


@dataclass
class Script:
    """What the fake MESH answers next, and what it was sent."""

    outbox: list[tuple[int, str]] = field(default_factory=list)
    chunk_failures: int = 0
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    inbox_parts: list[tuple[bytes, bool]] = field(default_factory=list)
    tracking_status: int = 200


def _app(script: Script) -> web.Application:
    async def record(request: web.Request) -> bytes:
        body = await request.read()
        script.requests.append((request.method, request.path, dict(request.headers), body))
        return body

    async def outbox(request: web.Request) -> web.Response:
        await record(request)
        status, body = script.outbox.pop(0) if script.outbox else (202, '{"message_id": "M1"}')
        return web.Response(status=status, text=body, content_type="application/json")

    async def chunk(request: web.Request) -> web.Response:
        await record(request)
        if script.chunk_failures:
            script.chunk_failures -= 1
            return web.Response(status=503, text="busy")
        return web.Response(status=202)

    async def message(request: web.Request) -> web.Response:
        await record(request)
        n = int(request.match_info.get("n", "1"))
        data, gz = script.inbox_parts[n - 1]
        headers = {
            "mex-chunk-range": f"{n}:{len(script.inbox_parts)}",
            "mex-filename": "f.csv",
            "mex-from": "X26OT303",
            "mex-messagetype": "DATA",
            **({"Content-Encoding": "gzip"} if gz else {}),
        }
        return web.Response(status=200 if n == len(script.inbox_parts) else 206, body=data, headers=headers)

    async def tracking(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=script.tracking_status, text="{}")

    # auto_decompress off: the tests look at the gzip bytes exactly as the client sent them.
    app = web.Application(client_max_size=200 * MIB, handler_args={"auto_decompress": False})
    app.router.add_post("/messageexchange/{mb}/outbox", outbox)
    app.router.add_post("/messageexchange/{mb}/outbox/{id}/{n}", chunk)
    app.router.add_get("/messageexchange/{mb}/inbox/{id}", message)
    app.router.add_get("/messageexchange/{mb}/inbox/{id}/{n}", message)
    app.router.add_get("/messageexchange/{mb}/outbox/tracking/{local}", tracking)
    app.router.add_get("/messageexchange/{mb}/outbox/tracking", tracking)
    return app


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[tuple[Script, MeshClient]]:
    script = Script()
    server = TestServer(_app(script))
    await server.start_server()
    config = MeshConfig(
        url=str(server.make_url("/")), credentials=CREDS,
        allowed_workflows=frozenset({"VACCINATIONS_1"}), chunk_size=MIN_CHUNK_BYTES,
    )
    async with MeshClient(config) as client:
        yield script, client
    await server.close()


async def _send(client: MeshClient, data: bytes = b"a|b\n", **kw: object) -> str:
    args: dict[str, object] = {"filename": "F.csv", "local_id": "L1", **kw}
    return await client.send("X26OT303", str(args.pop("workflow", "VACCINATIONS_1")), data, **args)  # type: ignore[arg-type]


async def test_small_send_is_one_gzip_request_with_mex_headers(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    assert await _send(client, b"row\n", subject="s") == "M1"
    [(method, path, headers, body)] = script.requests
    assert (method, path) == ("POST", "/messageexchange/X26VXF001/outbox")
    assert headers["Content-Encoding"] == "gzip"
    assert headers["mex-chunk-range"] == "1:1"
    assert headers["mex-to"] == "X26OT303"
    assert headers["mex-workflowid"] == "VACCINATIONS_1"
    assert (headers["mex-filename"], headers["mex-localid"], headers["mex-subject"]) == ("F.csv", "L1", "s")
    assert headers["Accept"] == "application/vnd.mesh.v2+json"
    assert headers["Authorization"].startswith("NHSMESH X26VXF001:")
    assert gzip.decompress(body) == b"row\n"


async def test_large_send_is_chunked_and_each_chunk_gunzips_alone(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    data = bytes(range(256)) * (11 * MIB // 256) + b"tail"
    await _send(client, data)
    assert [r[1] for r in script.requests] == [
        "/messageexchange/X26VXF001/outbox",
        "/messageexchange/X26VXF001/outbox/M1/2",
        "/messageexchange/X26VXF001/outbox/M1/3",
    ]
    assert [r[2]["mex-chunk-range"] for r in script.requests] == ["1:3", "2:3", "3:3"]
    assert all(r[2]["Content-Encoding"] == "gzip" for r in script.requests)
    pieces = [gzip.decompress(r[3]) for r in script.requests]
    assert [len(p) for p in pieces] == [MIN_CHUNK_BYTES, MIN_CHUNK_BYTES, len(data) - 2 * MIN_CHUNK_BYTES]
    assert b"".join(pieces) == data
    assert "mex-to" not in script.requests[1][2]


async def test_uncompressed_send_sends_raw_bytes(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    await _send(client, b"raw", compress=False)
    assert script.requests[0][3] == b"raw"
    assert "Content-Encoding" not in script.requests[0][2]


async def test_a_failed_later_chunk_is_retried_but_the_first_post_never(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    script.chunk_failures = 2
    await _send(client, b"x" * (MIN_CHUNK_BYTES + 1))
    assert [r[1].rsplit("/", 1)[-1] for r in script.requests] == ["outbox", "2", "2", "2"]

    script.requests.clear()
    script.outbox = [(503, "busy")]
    with pytest.raises(MeshTransientError) as err:
        await _send(client)
    assert err.value.status == 503
    assert len(script.requests) == 1


async def test_chunk_failure_after_all_retries_carries_the_message_id(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    script.chunk_failures = 99
    with pytest.raises(MeshTransientError) as err:
        await _send(client, b"x" * (MIN_CHUNK_BYTES + 1))
    assert err.value.message_id == "M1"


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_try_later_answers_are_transient(fake: tuple[Script, MeshClient], status: int) -> None:
    script, client = fake
    script.outbox = [(status, "later")]
    with pytest.raises(MeshTransientError):
        await _send(client)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 417, 422])
async def test_refusals_are_permanent_with_status_and_body(fake: tuple[Script, MeshClient], status: int) -> None:
    script, client = fake
    body = '{"detail": [{"event": "SEND", "code": "12", "msg": "Unregistered to address"}]}'
    script.outbox = [(status, body)]
    with pytest.raises(MeshPermanentError) as err:
        await _send(client)
    assert (err.value.status, err.value.body, err.value.code) == (status, body, "12")
    assert "Unregistered to address" in str(err.value)


async def test_v1_error_bodies_are_understood(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    script.outbox = [(417, '{"errorCode": "17", "errorDescription": "Workflow ID not registered"}')]
    with pytest.raises(MeshPermanentError) as err:
        await _send(client)
    assert (err.value.code, err.value.description) == ("17", "Workflow ID not registered")


async def test_unreadable_success_answer_is_not_a_refusal(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    script.outbox = [(202, "<html>proxy</html>")]
    with pytest.raises(MeshTransientError):
        await _send(client)


async def test_no_server_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with MeshClient(MeshConfig(url=f"http://127.0.0.1:{port}", credentials=CREDS)) as client:
        with pytest.raises(MeshTransientError):
            await client.handshake()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filename": "a\r\nInjected: 1.csv"}, "mex-filename contains"),
        ({"filename": "caf\u00e9.csv"}, "printable ASCII"),
        ({"local_id": "x" * 301}, "mex-localid is 301"),
        ({"local_id": "  "}, "mex-localid must not be empty"),
        ({"subject": "tab\there"}, "mex-subject contains"),
        ({"workflow": "NOT_REGISTERED"}, "not registered"),
        ({"data": b""}, "empty message"),
        ({"chunk_size": MIN_CHUNK_BYTES - 1}, "chunk size"),
        ({"chunk_size": MAX_REQUEST_BYTES}, "chunk size"),
    ],
)
async def test_what_real_mesh_refuses_is_refused_before_sending(
    fake: tuple[Script, MeshClient], kwargs: dict[str, object], message: str
) -> None:
    script, client = fake
    data = kwargs.pop("data", b"row\n")
    with pytest.raises(MeshValidationError, match=message) as err:
        await _send(client, data, **kwargs)  # type: ignore[arg-type]
    assert err.value.status is None
    assert script.requests == []


async def test_oversized_request_is_refused_before_sending(fake: tuple[Script, MeshClient]) -> None:
    script, client = fake
    big = b"\0" * (MAX_REQUEST_BYTES + 1)
    with pytest.raises(MeshValidationError, match="exceeds"):
        await client._request("POST", "/messageexchange/X26VXF001/outbox", data=big)
    assert script.requests == []


@pytest.mark.parametrize("per_chunk", [True, False], ids=["gzip-per-chunk", "one-gzip-stream-split"])
async def test_download_joins_chunks_and_undoes_gzip(fake: tuple[Script, MeshClient], per_chunk: bool) -> None:
    script, client = fake
    data = b"NHS_NUMBER|...\n" * 50_000
    if per_chunk:
        script.inbox_parts = [(gzip.compress(data[:300_000]), True), (gzip.compress(data[300_000:]), True)]
    else:
        whole = gzip.compress(data)
        script.inbox_parts = [(whole[:1000], True), (whole[1000:], True)]
    meta, got = await client.download("M9")
    assert got == data
    assert (meta.total_chunks, meta.filename, meta.sender) == (2, "f.csv", "X26OT303")
    assert [r[1] for r in script.requests] == [
        "/messageexchange/X26VXF001/inbox/M9", "/messageexchange/X26VXF001/inbox/M9/2"
    ]


def _gzip_bomb(size: int) -> bytes:
    """`size` zero bytes as gzip (about 1/1000 of it), built without holding `size` bytes."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    out = [deflate.compress(block) for _ in range(size // len(block))]
    return b"".join([*out, deflate.flush()])


async def test_a_small_message_that_inflates_past_the_mesh_limit_is_refused(fake: tuple[Script, MeshClient]) -> None:
    """Issue 17: 300 KB of gzip became 300 MiB in memory. Now decompression stops at the limit
    (MESH's 100 MB per request) and the message is refused as permanent (the intake rejects it)."""
    script, client = fake
    bomb = _gzip_bomb(300 * 1024 * 1024)
    assert len(bomb) < 400_000
    script.inbox_parts = [(bomb[:100_000], True), (bomb[100_000:], True)]
    tracemalloc.start()
    try:
        with pytest.raises(MeshPermanentError, match="larger than"):
            await client.download("M9")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_REQUEST_BYTES + 16 * 1024 * 1024  # bounded by the limit, not by the 300 MiB


async def test_a_message_within_a_given_limit_is_read_and_one_past_it_refused(
    fake: tuple[Script, MeshClient],
) -> None:
    script, client = fake
    script.inbox_parts = [(gzip.compress(b"x" * 1000), True), (gzip.compress(b"y" * 1000), True)]
    assert (await client.download("M9", max_bytes=2000))[1] == b"x" * 1000 + b"y" * 1000
    with pytest.raises(MeshPermanentError, match="larger than 1999 bytes"):
        await client.download("M9", max_bytes=1999)


async def test_tracking_unknown_is_none_and_ambiguous_local_id_is_an_error(
    fake: tuple[Script, MeshClient],
) -> None:
    script, client = fake
    script.tracking_status = 404
    assert await client.track_by_local_id("L1") is None
    assert await client.tracking("M1") is None
    script.tracking_status = 300
    with pytest.raises(MeshLocalIdAmbiguousError):
        await client.track_by_local_id("L1")
    with pytest.raises(MeshValidationError):
        await client.track_by_local_id("a/b")


def test_config_refuses_half_a_client_certificate_and_tls_files_on_http() -> None:
    with pytest.raises(ValueError, match="both"):
        MeshConfig(url="https://h", credentials=CREDS, cert_file=Path("c"))
    with pytest.raises(ValueError, match="plain-http"):
        MeshConfig(url="http://h", credentials=CREDS, ca_file=Path("ca"))
    with pytest.raises(ValueError, match="url"):
        MeshConfig(url="ftp://h", credentials=CREDS)
