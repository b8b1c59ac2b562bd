"""Session fixtures for the real Kafka broker (no mock, no in-memory broker).

The broker is started once per test session from the project's own Maven-resolved jars, on free
ports, in a temporary home; or an already-running one is reused when
VAXFLOW_TEST_KAFKA_BOOTSTRAP names it. Tests isolate themselves by a unique topic namespace and
unique group ids rather than by separate brokers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from support.ports import free_port

from topics.ensure import wait_until_ready
from vaxflow.dev import kafka_broker, kafka_cluster
from workers.base.kafka import admin
from workers.base.settings import Settings


async def create_topic(settings: Settings, prefix: str, partitions: int = 3, **configs: str) -> str:
    """A fresh topic outside the catalogue, usable (every partition led) when this returns."""
    name = settings.topic(f"{prefix}-{uuid.uuid4().hex[:8]}")
    async with admin(settings) as client:
        replicas = settings.kafka_replication_factor
        await client.create_topics([NewTopic(name, partitions, replicas, topic_configs=configs)])
        await wait_until_ready(client, {name: partitions})
    return name


@dataclass
class KafkaHandle:
    """The test broker, with a restart() for tests that need a broker outage."""

    bootstrap: str
    layout: kafka_broker.BrokerLayout | None
    startup_seconds: float

    def stop(self) -> None:
        if self.layout is None:
            pytest.skip("the reused broker cannot be stopped by tests")
        kafka_broker.stop_broker(self.layout)

    def start(self) -> float:
        assert self.layout is not None
        pid = kafka_broker.start_broker(self.layout)
        return asyncio.run(kafka_broker.wait_ready(self.layout.bootstrap, pid=pid))

    def restart(self) -> float:
        self.stop()
        return self.start()

    def kill(self) -> None:
        """SIGKILL, as a crashed host: no flush, no controlled shutdown (start() brings it back)."""
        if self.layout is None:
            pytest.skip("the reused broker cannot be killed by tests")
        pid = kafka_broker.read_pid(self.layout)
        assert pid is not None, "the test broker is not running"
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)  # started by this process: reap it, or its pid stays "alive"
        except ChildProcessError:
            deadline = time.monotonic() + 30
            while kafka_broker.read_pid(self.layout) is not None and time.monotonic() < deadline:
                time.sleep(0.1)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaHandle]:
    reuse = os.environ.get("VAXFLOW_TEST_KAFKA_BOOTSTRAP")
    if reuse:
        yield KafkaHandle(bootstrap=reuse, layout=None, startup_seconds=0.0)
        return
    settings = Settings()
    layout = kafka_broker.BrokerLayout(
        version=settings.kafka_version,
        cache_dir=settings.cache_dir,
        home=Path(tmp_path_factory.mktemp("kafka")),
        port=free_port(),
        controller_port=free_port(),
        heap="512m",
        jvm_options=kafka_broker.jvm_options(settings.kafka_jvm_options),
    )
    started = time.monotonic()
    pid = kafka_broker.start_broker(layout)
    asyncio.run(kafka_broker.wait_ready(layout.bootstrap, timeout=120, pid=pid))
    handle = KafkaHandle(bootstrap=layout.bootstrap, layout=layout, startup_seconds=time.monotonic() - started)
    print(f"\n[kafka] broker {settings.kafka_version} ready at {layout.bootstrap} in {handle.startup_seconds:.1f}s")
    try:
        yield handle
    finally:
        kafka_broker.stop_broker(layout)


@pytest.fixture
def namespace() -> str:
    """A unique topic namespace per test, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kafka_settings(kafka: KafkaHandle, namespace: str) -> Settings:
    return Settings(kafka_bootstrap=kafka.bootstrap, topic_namespace=namespace)


@dataclass
class ClusterHandle:
    """The three-node SASL_SSL test cluster (ACLs on, one principal per worker), with per-node
    kill and start for the leader-failure and durability tests."""

    layout: kafka_cluster.ClusterLayout
    pids: dict[int, int] = field(default_factory=dict)
    startup_seconds: float = 0.0

    def node(self, node_id: int) -> kafka_broker.BrokerLayout:
        return self.layout.nodes[node_id - 1]

    def kill(self, node_id: int) -> None:
        """SIGKILL: no flush, no controlled shutdown, as a crashed host."""
        pid = kafka_broker.read_pid(self.node(node_id))
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while kafka_broker.read_pid(self.node(node_id)) is not None:
                time.sleep(0.05)

    def stop(self, node_id: int) -> None:
        """SIGTERM: a controlled shutdown (leadership moves first), as a rolling restart does."""
        kafka_broker.stop_broker(self.node(node_id))

    def start(self, node_id: int) -> None:
        self.pids[node_id] = kafka_broker.start_broker(self.node(node_id), kafka_cluster.cluster_id(self.layout))

    async def wait_all(self, timeout: float = 120.0) -> float:
        return await kafka_cluster.wait_cluster_ready(self.layout, list(self.pids.values()), timeout)

    def settings(self, namespace: str, user: str = kafka_cluster.ADMIN_USER, **overrides: object) -> Settings:
        """Settings for a test namespace on the cluster, connecting as `user` (the admin by default)."""
        return self.layout.settings(Settings(topic_namespace=namespace, **overrides), user)  # type: ignore[arg-type]

    def worker_settings(self, settings: Settings, role: str) -> Settings:
        """`settings` as the worker `role`'s own principal (only its grants)."""
        return self.layout.settings(settings, kafka_cluster.worker_user(role))

    async def grant(self, settings: Settings) -> int:
        """The pipeline's ACLs for `settings`' namespace and groups."""
        return await kafka_cluster.grant_pipeline(self.layout, settings)


@pytest.fixture(scope="session")
def kafka_cluster_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """Started only by the tests that ask for it: three KRaft nodes, a controller quorum of three."""
    settings = Settings()
    home = Path(tmp_path_factory.mktemp("kafka-cluster"))
    base = kafka_broker.BrokerLayout(
        version=settings.kafka_version, cache_dir=settings.cache_dir, home=home, port=0, controller_port=0,
        heap="384m", jvm_options=kafka_broker.jvm_options(settings.kafka_jvm_options),
    )  # fmt: skip
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    handle = ClusterHandle(kafka_cluster.cluster_layout(base, home, ports, secured=True))
    started = time.monotonic()
    for node in handle.layout.nodes:
        handle.start(node.node_id)
    try:
        asyncio.run(handle.wait_all(180))
        handle.startup_seconds = time.monotonic() - started
        print(f"\n[kafka-cluster] 3 SASL_SSL brokers at {handle.layout.bootstrap} in {handle.startup_seconds:.1f}s")
        yield handle
    finally:
        kafka_cluster.stop_cluster(handle.layout)
