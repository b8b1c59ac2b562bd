"""Durability on the three-broker cluster: what the gateway's 202 is worth when brokers die.

The raw topic has three replicas and `min.insync.replicas=2`, and the gateway writes acks=all.
With one broker down, two replicas are in sync, so writes go on (202). With two down, none can
reach two replicas, so the gateway answers 503 and the sender keeps its events. Raising the
topic's min.insync.replicas to 3 with one broker down turns 202 into 503 at once, and lowering it
back restores 202: the rule, not luck, decides. Afterwards, with every broker back, every event
answered 202 is read back from the raw topic at the coordinates the gateway returned, byte for
byte.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from cluster_support import (
    Posted,
    asking_again,
    gateway_env,
    post_chunk,
    start_workers,
    wait_fully_replicated,
    wait_ready,
)
from fixtures_kafka import ClusterHandle
from support.ports import free_port
from support.topics import ensure

from topics.catalogue import RAW
from vaxflow.dev.samples import make_event
from workers.base.kafka import admin
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end

pytestmark = pytest.mark.integration

CHUNK = 50


async def _leaders(settings: Settings) -> set[int]:
    """The raw topic's partition leaders (a call that meets the dead broker is asked again)."""

    async def ask() -> set[int]:
        async with admin(settings) as client:
            described = await client.describe_topics([settings.topic(RAW.name)])
        return {p["leader"] for p in described[0]["partitions"]}

    return await asking_again(ask)


async def _set_min_insync(settings: Settings, value: int) -> None:
    # AlterConfigs replaces every override of the topic: send the whole managed set
    configs = RAW.configs(value)
    async with admin(settings) as client:
        await client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic(RAW.name), configs)])


async def test_one_broker_down_still_202_two_down_503_and_nothing_202_lost(
    kafka_cluster_handle: ClusterHandle, namespace: str, tmp_path: Path
) -> None:
    cluster = kafka_cluster_handle
    settings = cluster.settings(namespace)
    await ensure(settings)
    await cluster.grant(settings)
    port = free_port()
    workers = start_workers(cluster, settings, ("gateway",), tmp_path, **gateway_env(port, send_timeout=5.0))
    rng = random.Random(15)
    payloads: list[bytes] = []
    posted = Posted()
    url = f"http://127.0.0.1:{port}/v1/events"
    token = settings.gateway_dev_token.get_secret_value()
    async def phase(http: aiohttp.ClientSession, chunks: int) -> list[int]:
        statuses = []
        for _ in range(chunks):
            start = len(payloads)
            payloads.extend(orjson.dumps(make_event(rng)) for _ in range(CHUNK))
            statuses.append(await post_chunk(http, url, token, payloads, list(range(start, len(payloads))), posted))
        return statuses

    down: list[int] = []
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            assert set(await phase(http, 10)) == {202}
            # one broker down (SIGKILL), once the cluster has moved its leaderships
            first = max(await _leaders(settings))
            await asyncio.to_thread(cluster.kill, first)
            down.append(first)
            for _ in range(120):
                if first not in await _leaders(settings):
                    break
                await asyncio.sleep(0.5)
            one_down = await phase(http, 20)
            assert set(one_down) == {202}, f"one broker down: {posted.other}"
            # the rule decides: min.insync 3 of the 2 replicas left -> 503; back to 2 -> 202
            await _set_min_insync(settings, 3)
            await asyncio.sleep(2)
            stricter = await phase(http, 3)
            await _set_min_insync(settings, 2)
            await asyncio.sleep(2)
            restored = await phase(http, 5)
            assert set(stricter) == {503}, stricter
            assert set(restored) == {202}, restored
            # a second broker down: nothing can reach two replicas
            second = next(n.node_id for n in cluster.layout.nodes if n.node_id != first)
            await asyncio.to_thread(cluster.kill, second)
            down.append(second)
            two_down = await phase(http, 4)
            assert set(two_down) == {503}, two_down
            print(f"\n[durability] all up: 202 x10; one down: 202 x{len(one_down)}; min.insync 3: {stricter}; "
                  f"back to 2: {restored}; two down: {two_down}; answers {dict(posted.statuses)}")
    finally:
        workers["gateway"].terminate()
        for node in down:
            await asyncio.to_thread(cluster.start, node)
        await cluster.wait_all()
        await wait_fully_replicated(settings, [settings.topic(RAW.name)])
    # every 202, at the coordinates the gateway returned, with the bytes that were posted
    records = await read_to_end(settings, settings.topic(RAW.name))
    on_topic = {(r.partition, r.offset): r.value for r in records}
    assert posted.origins, "nothing was accepted"
    missing = [i for i, at in posted.origins.items() if on_topic.get(at) != payloads[i]]
    assert missing == [], f"{len(missing)} events answered 202 are not on the raw topic as posted"
    refused = len(payloads) - len(posted.origins)
    print(f"[durability] {len(posted.origins)} answered 202, all read back; {refused} answered 503 (kept by sender)")
    assert refused == CHUNK * (3 + 4)
