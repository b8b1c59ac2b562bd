"""The gateway's Idempotency-Key: a retry with the same key and body gets the first 202 back and
publishes nothing; misuse of a key is refused with its own status. A fake sink stands in for Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_workers_gateway_http import TOKEN_A, TOKEN_ALL, FakeSink, auth, event, ndjson, settings, tokens

from workers.base.runtime import Health
from workers.gateway.idempotency import IdempotencyCache, KeyInUse, KeyReused, body_digest
from workers.gateway.worker import create_app

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
async def client(sink: FakeSink) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings(), sink=sink, tokens=tokens(), health=Health(ready=True))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def post(client: TestClient[Any, Any], body: bytes, key: str | None, token: str = TOKEN_A) -> Any:
    headers = {**auth(token), **NDJSON, **({"Idempotency-Key": key} if key is not None else {})}
    response = await client.post("/v1/events", data=body, headers=headers)
    return response.status, await response.json(), response.headers


async def test_a_retry_with_the_same_key_and_body_gets_the_first_answer_and_publishes_nothing(
    client: TestClient[Any, Any], sink: FakeSink
) -> None:
    body = ndjson(event(1), event(2))
    status, first, _ = await post(client, body, "7c1d0e4e-retry-1")
    again_status, again, headers = await post(client, body, "7c1d0e4e-retry-1")
    assert (status, again_status) == (202, 202)
    assert again == first
    assert headers["Idempotent-Replayed"] == "true"
    assert len(sink.values) == 2


async def test_without_a_key_a_retry_is_published_again(client: TestClient[Any, Any], sink: FakeSink) -> None:
    body = ndjson(event(1))
    await post(client, body, None)
    await post(client, body, None)
    assert len(sink.values) == 2  # the batcher's identity memory is what catches these


async def test_the_same_key_with_another_body_is_422_and_nothing_written(
    client: TestClient[Any, Any], sink: FakeSink
) -> None:
    await post(client, ndjson(event(1)), "k-1")
    status, problem, _ = await post(client, ndjson(event(2)), "k-1")
    assert status == 422
    assert problem["error"] == "idempotency_key_reused"
    assert len(sink.values) == 1


async def test_keys_are_per_client(client: TestClient[Any, Any], sink: FakeSink) -> None:
    body = ndjson(event(1))
    await post(client, body, "shared-key")
    status, _, headers = await post(client, body, "shared-key", token=TOKEN_ALL)
    assert status == 202
    assert "Idempotent-Replayed" not in headers
    assert len(sink.values) == 2


async def test_a_503_is_not_remembered_so_the_retry_is_tried_for_real(
    client: TestClient[Any, Any], sink: FakeSink
) -> None:
    body = ndjson(event(1))
    sink.fail = True
    status, _, _ = await post(client, body, "k-503")
    sink.fail = False
    again, _, headers = await post(client, body, "k-503")
    assert (status, again) == (503, 202)
    assert "Idempotent-Replayed" not in headers
    assert len(sink.values) == 1


async def test_a_key_in_progress_is_409(client: TestClient[Any, Any], sink: FakeSink) -> None:
    sink.gate = asyncio.Event()
    body = ndjson(event(1))
    first = asyncio.create_task(post(client, body, "slow"))
    await sink.entered.wait()
    status, problem, _ = await post(client, body, "slow")
    sink.gate.set()
    assert (await first)[0] == 202
    assert status == 409
    assert problem["error"] == "idempotency_key_in_use"


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve"])
async def test_a_malformed_key_is_400(client: TestClient[Any, Any], sink: FakeSink, key: str) -> None:
    headers = {**auth(), **NDJSON, "Idempotency-Key": key}
    try:
        response = await client.post("/v1/events", data=ndjson(event(1)), headers=headers)
    except ValueError:  # aiohttp itself refuses to send some header values
        return
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_idempotency_key"
    assert sink.values == []


def test_the_cache_forgets_the_oldest_answers_beyond_its_byte_budget() -> None:
    cache = IdempotencyCache(ttl_seconds=3600, max_bytes=3 * (100 + 64))
    for n in range(5):
        assert cache.begin("c", f"k{n}", body_digest(b"%d" % n)) is None
        cache.finish("c", f"k{n}", b"x" * 100)
    assert len(cache) == 3
    assert cache.begin("c", "k0", body_digest(b"0")) is None  # forgotten: goes ahead
    assert cache.begin("c", "k4", body_digest(b"4")) == b"x" * 100
    with pytest.raises(KeyReused):
        cache.begin("c", "k4", body_digest(b"other"))
    with pytest.raises(KeyInUse):
        cache.begin("c", "k0", body_digest(b"0"))


def test_answers_expire_after_the_ttl() -> None:
    cache = IdempotencyCache(ttl_seconds=0.05, max_bytes=10**6)
    cache.begin("c", "k", b"d")
    cache.finish("c", "k", b"body")
    assert cache.begin("c", "k", b"d") == b"body"
    time.sleep(0.1)
    assert cache.begin("c", "k", b"d") is None
    assert len(cache) == 0
