"""What the design needs from aiokafka, proven against the real broker (docs/decisions/0001).

Each test is one capability the workers rely on; if a broker upgrade breaks one, this file says
which before a worker does. Every test runs twice: on the single plaintext dev broker, and on
the three-broker SASL_SSL cluster (replication 3, min.insync 2, ACLs on) as its admin principal,
the way a national service runs Kafka.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fixtures_kafka import ClusterHandle, KafkaHandle, create_topic

from workers.base.kafka import (
    admin_client,
    committed_consumer,
    idempotent_producer,
    offsets_probe,
    reader,
    transactional_producer,
)
from workers.base.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["plaintext", "sasl_ssl_cluster"])
def kafka_settings(request: pytest.FixtureRequest, namespace: str) -> Settings:
    """The module's settings: the plain broker's or the secured cluster's (overrides conftest's)."""
    if request.param == "plaintext":
        kafka: KafkaHandle = request.getfixturevalue("kafka")
        return Settings(kafka_bootstrap=kafka.bootstrap, topic_namespace=namespace)
    cluster: ClusterHandle = request.getfixturevalue("kafka_cluster_handle")
    return cluster.settings(namespace)


@pytest.fixture
def restart_kafka(request: pytest.FixtureRequest, kafka_settings: Settings) -> Callable[[], float]:
    """Restart the broker the test runs on: the plain one, or every cluster node in turn (rolling)."""
    if kafka_settings.kafka_security_protocol == "PLAINTEXT":
        kafka: KafkaHandle = request.getfixturevalue("kafka")
        return kafka.restart
    cluster: ClusterHandle = request.getfixturevalue("kafka_cluster_handle")

    def rolling() -> float:
        began = time.monotonic()
        for node in cluster.layout.nodes:
            cluster.stop(node.node_id)
            cluster.start(node.node_id)
            asyncio.run(cluster.wait_all())
        return time.monotonic() - began

    return rolling


async def _topic(settings: Settings, partitions: int = 3, **configs: str) -> str:
    return await create_topic(settings, "cap", partitions, **configs)


async def _read_all(settings: Settings, topic: str, expect: int, timeout: float = 15.0) -> list[bytes]:
    consumer = reader(settings, topic)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(values) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            values.extend(m.value or b"" for msgs in batch.values() for m in msgs)
        # one more poll, to catch records that should not be there
        batch = await consumer.getmany(timeout_ms=500)
        values.extend(m.value or b"" for msgs in batch.values() for m in msgs)
    finally:
        await consumer.stop()
    return values


async def test_admin_create_describe_topics_and_configs(kafka_settings: Settings) -> None:
    topic = await _topic(kafka_settings, partitions=4, **{"retention.ms": "3600000"})
    admin = admin_client(kafka_settings)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 4
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        entries = {e[0]: e[1] for e in configs[0].resources[0][4]}
        assert entries["retention.ms"] == "3600000"
    finally:
        await admin.close()


async def test_idempotent_producer_and_list_offsets(kafka_settings: Settings) -> None:
    topic = await _topic(kafka_settings, partitions=1)
    producer = idempotent_producer(kafka_settings)
    await producer.start()
    try:
        metas = [await producer.send_and_wait(topic, b"v%d" % i, key=b"k") for i in range(5)]
    finally:
        await producer.stop()
    assert [m.offset for m in metas] == [0, 1, 2, 3, 4]
    consumer = offsets_probe(kafka_settings)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        assert (await consumer.beginning_offsets([tp]))[tp] == 0
        assert (await consumer.end_offsets([tp]))[tp] == 5
        by_time = await consumer.offsets_for_times({tp: metas[2].timestamp})
        found = by_time[tp]
        assert found is not None
        assert found.offset <= 2
    finally:
        await consumer.stop()


async def test_transaction_commit_abort_and_read_committed(kafka_settings: Settings) -> None:
    """Consume-transform-produce: output and input offsets commit atomically; aborts vanish."""
    source = await _topic(kafka_settings)
    sink = await _topic(kafka_settings)
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = idempotent_producer(kafka_settings)
    await producer.start()
    for i in range(9):
        await producer.send_and_wait(source, b"in%d" % i, key=b"k%d" % (i % 3))
    await producer.stop()

    consumer = committed_consumer(kafka_settings, source, group_id=group)
    tx = transactional_producer(kafka_settings, f"tx-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    await tx.start()
    try:
        got: dict[TopicPartition, list[bytes]] = {}
        offsets: dict[TopicPartition, int] = {}
        deadline = asyncio.get_running_loop().time() + 15
        while sum(len(v) for v in got.values()) < 9 and asyncio.get_running_loop().time() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                got.setdefault(tp, []).extend(m.value or b"" for m in msgs)
                offsets[tp] = msgs[-1].offset + 1
        async with tx.transaction():
            for values in got.values():
                for value in values:
                    await tx.send(sink, value.replace(b"in", b"out"))
            await tx.send_offsets_to_transaction(offsets, group)

        await tx.begin_transaction()
        await tx.send(sink, b"aborted")
        await tx.abort_transaction()

        for tp, offset in offsets.items():
            assert await consumer.committed(tp) == offset
    finally:
        await tx.stop()
        await consumer.stop()
    values = await _read_all(kafka_settings, sink, expect=9)
    assert sorted(values) == sorted(b"out%d" % i for i in range(9))
    assert b"aborted" not in values


async def test_group_manual_commit_rebalance_listener_and_describe(kafka_settings: Settings) -> None:
    topic = await _topic(kafka_settings, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    events: list[tuple[str, str, frozenset[int]]] = []

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def __init__(self, name: str) -> None:
            self.name = name

        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            events.append((self.name, "revoked", frozenset(tp.partition for tp in revoked)))

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            events.append((self.name, "assigned", frozenset(tp.partition for tp in assigned)))

    first = committed_consumer(kafka_settings, group_id=group)
    first.subscribe([topic], listener=Listener("a"))
    await first.start()
    await first.getmany(timeout_ms=2000)
    assert ("a", "assigned", frozenset({0, 1, 2, 3})) in events

    second = committed_consumer(kafka_settings, group_id=group)
    second.subscribe([topic], listener=Listener("b"))
    await second.start()
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.gather(first.getmany(timeout_ms=300), second.getmany(timeout_ms=300))
        if first.assignment() and second.assignment() and len(first.assignment() | second.assignment()) == 4:
            break
    assert first.assignment().isdisjoint(second.assignment())
    assert any(e[0] == "a" and e[1] == "revoked" for e in events)

    tp = next(iter(first.assignment()))
    await first.commit({tp: 0})
    admin = admin_client(kafka_settings)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
        group_info = described[0].groups[0]
        assert group_info[2] == "Stable"
        assert len(group_info[5]) == 2
        offsets = await admin.list_consumer_group_offsets(group)
        assert offsets[tp].offset == 0
    finally:
        await admin.close()
        await second.stop()
        await first.stop()


async def test_data_survives_broker_restart(kafka_settings: Settings, restart_kafka: Callable[[], float]) -> None:
    topic = await _topic(kafka_settings, partitions=1)
    producer = idempotent_producer(kafka_settings)
    await producer.start()
    await producer.send_and_wait(topic, b"kept")
    await producer.stop()
    seconds = await asyncio.to_thread(restart_kafka)
    print(f"[kafka] broker restart ready in {seconds:.1f}s")
    assert await _read_all(kafka_settings, topic, expect=1) == [b"kept"]
