"""Session fixtures for the real Kafka broker (no mock, no in-memory broker).

The broker is started once per test session from the project's own Maven-resolved jars, on free
ports, in a temporary home; or an already-running one is reused when
VAXFLOW_TEST_KAFKA_BOOTSTRAP names it. Tests isolate themselves by a unique topic namespace and
unique group ids rather than by separate brokers.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from support.ports import free_port

from topics.ensure import wait_until_ready
from vaxflow.dev import kafka_broker
from workers.base.kafka import admin
from workers.base.settings import Settings


async def create_topic(settings: Settings, prefix: str, partitions: int = 3, **configs: str) -> str:
    """A fresh topic outside the catalogue, usable (every partition led) when this returns."""
    name = settings.topic(f"{prefix}-{uuid.uuid4().hex[:8]}")
    async with admin(settings) as client:
        await client.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
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
