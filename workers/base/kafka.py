"""Every aiokafka client of every vaxflow process is built here.

One module decides how a client connects (`connection`: the brokers now; TLS and SASL belong
here and nowhere else) and what guarantees it gives (acks, idempotence, isolation, manual
commits), so that no worker, operator command or benchmark can quietly connect differently or
weaken the exactly-once invariants (docs/architecture.md, "Exactly once").

The kinds, by what their caller needs:
- `idempotent_producer` / `transactional_producer`: writers; acks=all and idempotence always;
- `committed_consumer`: a group member that commits only what it has finished, read_committed;
- `reader`: no group, read_committed, for reading topics (state, ledgers, operator scans);
- `offsets_probe`: no group, read_uncommitted, for end offsets as Kafka's own tools count them;
- `admin_client` (`admin`: started and closed around a block), and `group_committer` for an
  operator writing a stopped group's offsets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


class KafkaConnection(Protocol):
    """What a client needs to know to reach the cluster (a part of the process settings)."""

    @property
    def kafka_bootstrap(self) -> str: ...


class FetchTuning(KafkaConnection, Protocol):
    @property
    def fetch_min_bytes(self) -> int: ...

    @property
    def fetch_max_wait_ms(self) -> int: ...


@dataclass(frozen=True)
class Bootstrap:
    """A connection known only by its bootstrap servers (the dev stack's broker before any settings)."""

    kafka_bootstrap: str


def connection(settings: KafkaConnection) -> dict[str, Any]:
    """The options every client gets to reach the cluster."""
    return {"bootstrap_servers": settings.kafka_bootstrap}


def admin_client(settings: KafkaConnection, *, request_timeout_ms: int = 15000) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection(settings), request_timeout_ms=request_timeout_ms)


@contextlib.asynccontextmanager
async def admin(settings: KafkaConnection, *, request_timeout_ms: int = 15000) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit (aiokafka's has no context manager of its own)."""
    client = admin_client(settings, request_timeout_ms=request_timeout_ms)
    try:
        await client.start()
        yield client
    finally:
        await client.close()  # also after a failed start: it may have opened connections


def idempotent_producer(settings: KafkaConnection, **overrides: Any) -> AIOKafkaProducer:
    """acks=all + idempotence: a retried send can never write a record twice."""
    options: dict[str, Any] = connection(settings) | {"acks": "all", "enable_idempotence": True, "linger_ms": 5}
    options.update(overrides)
    return AIOKafkaProducer(**options)


def transactional_producer(settings: KafkaConnection, transactional_id: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer whose writes and consumer-offset commits succeed or fail together."""
    return idempotent_producer(settings, transactional_id=transactional_id, **overrides)


def committed_consumer(settings: FetchTuning, *topics: str, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
    """read_committed, manual commit: a worker commits only what it has finished.

    Fetches wait for `fetch_min_bytes` (at most `fetch_max_wait_ms`): a stage that commits one
    transaction per poll and partition pays that transaction's fixed cost per fetch, and with
    Kafka's default of one byte a busy pipeline turned into many small fetches and transactions
    (docs/benchmarks.md).
    """
    options: dict[str, Any] = connection(settings) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "fetch_min_bytes": settings.fetch_min_bytes,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def reader(
    settings: KafkaConnection, *topics: str, fetch_bytes: int = 8 * 1024 * 1024, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer outside any group that sees committed records only: of `topics` if named (all
    their partitions), else of the partitions the caller assigns.

    `fetch_bytes` bounds one partition's fetch; Kafka still returns a first batch larger than it
    (KIP-74), so a small value never stalls on a large record.
    """
    options: dict[str, Any] = connection(settings) | {
        "group_id": None,
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": fetch_bytes,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def offsets_probe(settings: KafkaConnection) -> AIOKafkaConsumer:
    """A consumer for offsets only, read_uncommitted: end offsets count every written record and
    transaction marker, as kafka-consumer-groups does."""
    return AIOKafkaConsumer(**connection(settings), enable_auto_commit=False)


def group_committer(settings: KafkaConnection, group_id: str) -> AIOKafkaConsumer:
    """A consumer that only commits offsets for `group_id` (an operator's replay; the group is stopped)."""
    return AIOKafkaConsumer(**connection(settings), group_id=group_id, enable_auto_commit=False)


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Ask the cluster for fresh metadata now.

    A consumer learns a topic's partitions only with its next metadata round, so a topic created
    moments ago looks absent; aiokafka has no public call for this, and this is the one place
    that uses its private client for it.
    """
    await consumer._client.force_metadata_update()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """`topic`'s partitions in order (none if it does not exist), refreshing metadata once if unknown."""
    found = consumer.partitions_for_topic(topic)
    if not found:
        await refresh_metadata(consumer)
        found = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(found or ())]
