"""The gateway against the real broker: 202 means the bytes are on the raw topic at the returned offsets.

Every test has its own topic namespace; the catalogue's topics are created in it with the
project's own `ensure_topics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from support.topics import ensure

from topics import headers as h
from topics.catalogue import RAW
from vaxflow.dev.samples import make_event
from workers.base.kafka import offsets_probe, reader
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.gateway.tokens import TokenTable, hash_token
from workers.gateway.worker import create_app

pytestmark = pytest.mark.integration

TOKEN = "integration-token"
NDJSON = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
JSON = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def tokens() -> TokenTable:
    entry = {"client": "it", "token_sha256": hash_token(TOKEN), "senders": ["*"]}
    return TokenTable.from_json(orjson.dumps({"tokens": [entry]}))


async def ready(client: TestClient[Any, Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "gateway never connected to Kafka"
        await asyncio.sleep(0.1)


@pytest.fixture
async def client(kafka_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    await ensure(kafka_settings)
    app = create_app(kafka_settings, tokens=tokens(), health=Health())
    async with TestClient(TestServer(app)) as test_client:
        await ready(test_client)
        yield test_client


async def read_at(
    settings: Settings, coordinates: list[tuple[int, int]], timeout: float = 20.0
) -> dict[tuple[int, int], ConsumerRecord[bytes, bytes]]:
    """The records of the raw topic at exactly these (partition, offset) pairs."""
    topic = settings.topic(RAW.name)
    wanted: dict[int, set[int]] = defaultdict(set)
    for partition, offset in coordinates:
        wanted[partition].add(offset)
    consumer = reader(settings)
    await consumer.start()
    found: dict[tuple[int, int], ConsumerRecord[bytes, bytes]] = {}
    try:
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, min(wanted[tp.partition]))
        deadline = time.monotonic() + timeout
        while len(found) < len(coordinates) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.offset in wanted[record.partition]:
                        found[record.partition, record.offset] = record
    finally:
        await consumer.stop()
    return found


async def raw_count(settings: Settings) -> int:
    consumer = offsets_probe(settings)
    await consumer.start()
    try:
        topic = settings.topic(RAW.name)
        tps = [TopicPartition(topic, p) for p in range(RAW.partitions)]
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def test_202_only_with_the_records_at_the_returned_offsets(
    client: TestClient[Any, Any], kafka_settings: Settings
) -> None:
    body = orjson.dumps(make_event(random.Random(7), "RSV", "X8E5B"))
    response = await client.post("/v1/events", data=body, headers=JSON)
    assert response.status == 202
    answer = await response.json()
    assert answer["accepted"] == 1
    [coordinate] = [(e["partition"], e["offset"]) for e in answer["events"]]
    record = (await read_at(kafka_settings, [coordinate]))[coordinate]
    assert record.value == body
    assert record.key == b"RSV|X8E5B"
    assert dict(record.headers)[h.GATEWAY_LINE] == b"1"


async def test_ndjson_of_1000_events(client: TestClient[Any, Any], kafka_settings: Settings) -> None:
    rng = random.Random(1000)
    lines = [orjson.dumps(make_event(rng)) for _ in range(1000)]
    started = time.monotonic()
    response = await client.post("/v1/events", data=b"\n".join(lines) + b"\n", headers=NDJSON)
    elapsed = time.monotonic() - started
    assert response.status == 202, await response.text()
    answer = await response.json()
    assert answer["accepted"] == 1000
    coordinates = [(e["partition"], e["offset"]) for e in answer["events"]]
    assert len(set(coordinates)) == 1000
    records = await read_at(kafka_settings, coordinates)
    assert [records[c].value for c in coordinates] == lines
    partition_of_key: dict[bytes, set[int]] = defaultdict(set)
    for c in coordinates:
        partition_of_key[records[c].key or b""].add(c[0])
    assert all(len(partitions) == 1 for partitions in partition_of_key.values())  # one key, one partition
    assert await raw_count(kafka_settings) == 1000
    print(f"\n[gateway] 1000 events in one NDJSON request: 202 after {elapsed * 1000:.0f} ms")


async def test_broker_unreachable_is_503(kafka_settings: Settings) -> None:
    from support.ports import free_port

    settings = kafka_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    app = create_app(settings, tokens=tokens(), health=Health())
    async with TestClient(TestServer(app)) as test_client:
        started = time.monotonic()
        body = orjson.dumps(make_event(random.Random(1), "MMR", "X8E5B"))
        response = await test_client.post("/v1/events", data=body, headers=JSON)
        assert response.status == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert time.monotonic() - started < 10
        assert (await test_client.get("/readyz")).status == 503
        assert (await test_client.get("/healthz")).status == 200


async def test_send_timeout_is_503(kafka_settings: Settings) -> None:
    """Connected, but Kafka cannot take the records (here: the topic does not exist) -> 503 in time."""
    settings = kafka_settings.model_copy(update={"gateway_send_timeout_seconds": 1.5})  # topics not ensured
    app = create_app(settings, tokens=tokens(), health=Health())
    async with TestClient(TestServer(app)) as test_client:
        await ready(test_client)
        started = time.monotonic()
        body = orjson.dumps(make_event(random.Random(2), "MMR", "X8E5B"))
        response = await test_client.post("/v1/events", data=body, headers=JSON)
        assert response.status == 503
        assert time.monotonic() - started < 5


POISON_VALUES = [
    'a|b"c¬d',
    "two\nlines\r\nand a tab\t",
    "\u0000\u0001\u001f\u007f\u0085",
    "\u2028\u2029",
    "DICÉMBRE ☃ 𝄞",
    "\\",
]


async def test_poison_input_is_400_or_forwarded_unchanged_never_a_crash(
    client: TestClient[Any, Any], kafka_settings: Settings
) -> None:
    base = make_event(random.Random(3), "MMR", "X8E5B")
    refused = [
        (b"{not json", JSON),
        (b'{"vaccine_type": "MMR\x01"}', JSON),  # raw control character inside a JSON string
        (b'{"a": "\xff\xfe"}\n', NDJSON),  # not UTF-8
        (orjson.dumps(base).replace(b'"MMR"', b'"M\nMR"'), NDJSON),  # a raw newline splits the event
        (b"\x00" * 1000, JSON),
    ]
    for body, headers in refused:
        response = await client.post("/v1/events", data=body, headers=headers)
        assert response.status == 400, body[:40]
    response = await client.post("/v1/events", data=b"{" * (10 * 1024 * 1024), headers=JSON)  # 10 MB
    assert response.status == 413
    lines = []
    for value in POISON_VALUES:
        event = orjson.loads(orjson.dumps(base))
        event["record"]["PERSON_SURNAME"] = value
        event["source_system"] = value
        lines.append(orjson.dumps(event))
    response = await client.post("/v1/events", data=b"\n".join(lines), headers=NDJSON)
    assert response.status == 202
    coordinates = [(e["partition"], e["offset"]) for e in (await response.json())["events"]]
    records = await read_at(kafka_settings, coordinates)
    assert [records[c].value for c in coordinates] == lines  # byte for byte
    # and the gateway is still serving
    response = await client.post("/v1/events", data=orjson.dumps(base), headers=JSON)
    assert response.status == 202
    assert await raw_count(kafka_settings) == len(lines) + 1


async def test_process_serves_with_the_dev_token_and_exits_cleanly_on_sigterm(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """`python -m workers.gateway`: the worker shape end to end, as an operator runs it."""
    from support.ports import free_port

    await ensure(kafka_settings)
    port = free_port()
    env = {
        **os.environ,
        "VAXFLOW_KAFKA_BOOTSTRAP": kafka_settings.kafka_bootstrap,
        "VAXFLOW_TOPIC_NAMESPACE": kafka_settings.topic_namespace,
        "VAXFLOW_GATEWAY_PORT": str(port),
    }
    env.pop("VAXFLOW_GATEWAY_TOKENS_FILE", None)
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.gateway", env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get("/readyz") as response:
                        if response.status == 200:
                            break
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.2)
            body = orjson.dumps(make_event(random.Random(5), "FLU", "YGA"))
            headers = {"Authorization": "Bearer vaxflow-dev-token", "Content-Type": "application/json"}
            async with session.post("/v1/events", data=body, headers=headers) as response:
                assert response.status == 202
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = log_path.read_text()
    assert "vaxflow-dev-token" not in output
    assert "development only" in output
