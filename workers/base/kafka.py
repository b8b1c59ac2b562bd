"""Factories for aiokafka clients with the settings every vaxflow process shares.

One place decides acks, idempotence and isolation so that no worker can quietly weaken the
exactly-once invariants (design brief section 4).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from workers.base.settings import Settings


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)


def idempotent_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """acks=all + idempotence: a retried send can never write a record twice."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def transactional_producer(settings: Settings, transactional_id: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer whose writes and consumer-offset commits succeed or fail together."""
    return idempotent_producer(settings, transactional_id=transactional_id, **overrides)


def committed_consumer(settings: Settings, *topics: str, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
    """read_committed, manual commit: a worker commits only what it has finished.

    Fetches wait for `fetch_min_bytes` (at most `fetch_max_wait_ms`): a stage that commits one
    transaction per poll and partition pays that transaction's fixed cost per fetch, and with
    Kafka's default of one byte a busy pipeline turned into many small fetches and transactions
    (docs/benchmarks.md: about a quarter of the validator's CPU and half of the broker's request handling).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "fetch_min_bytes": settings.fetch_min_bytes,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
