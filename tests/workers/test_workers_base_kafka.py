"""Every Kafka client is built by workers/base/kafka.py, so connection settings apply everywhere."""

from __future__ import annotations

import re
from pathlib import Path

from workers.base.kafka import (
    Bootstrap,
    admin_client,
    committed_consumer,
    connection,
    group_committer,
    idempotent_producer,
    offsets_probe,
    reader,
    transactional_producer,
)
from workers.base.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FACTORY = ROOT / "workers" / "base" / "kafka.py"
CONSTRUCTION = re.compile(r"\bAIOKafka(?:Consumer|Producer|AdminClient)\(|\._client\.force_metadata_update\(")


def test_no_client_is_built_outside_the_factory() -> None:
    """Tests too: the cluster issue runs them over TLS and SASL, which only the factory applies."""
    offenders = []
    for package in ("vaxflow", "workers", "topics", "schemas", "benchmarks", "tests"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path in (FACTORY, Path(__file__).resolve()):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if CONSTRUCTION.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_scan_would_see_a_client_built_elsewhere() -> None:
    assert CONSTRUCTION.search("    consumer = AIOKafkaConsumer(bootstrap_servers=x)")
    assert CONSTRUCTION.search("await c._client.force_metadata_update()")
    assert not CONSTRUCTION.search("consumer = reader(settings)")


async def test_each_kind_connects_with_the_settings_and_keeps_its_guarantees() -> None:
    settings = Settings(kafka_bootstrap="10.9.8.7:9999", fetch_min_bytes=4096, fetch_max_wait_ms=77)
    assert connection(settings) == {"bootstrap_servers": "10.9.8.7:9999"}
    producer = transactional_producer(settings, "tx-1")
    assert producer.client._bootstrap_servers == "10.9.8.7:9999"
    assert producer._txn_manager is not None
    assert producer._txn_manager.transactional_id == "tx-1"
    assert idempotent_producer(settings)._txn_manager is not None  # idempotence always on
    member = committed_consumer(settings, "t", group_id="g")
    assert member._client._bootstrap_servers == "10.9.8.7:9999"
    assert member._group_id == "g"
    assert member._enable_auto_commit is False
    assert member._isolation_level == "read_committed"
    assert member._fetch_min_bytes == 4096
    assert member._fetch_max_wait_ms == 77
    plain = reader(settings, fetch_bytes=1234)
    assert plain._group_id is None
    assert plain._isolation_level == "read_committed"
    assert plain._max_partition_fetch_bytes == 1234
    assert offsets_probe(settings)._isolation_level == "read_uncommitted"
    committer = group_committer(settings, "ops-g")
    assert committer._group_id == "ops-g"
    assert committer._enable_auto_commit is False
    admin = admin_client(Bootstrap("10.9.8.7:9999"), request_timeout_ms=1000)
    assert admin._client._bootstrap_servers == "10.9.8.7:9999"
