"""Every aiokafka client of every vaxflow process is built here.

One module decides how a client connects (`connection`: the brokers, TLS and SASL, here and
nowhere else) and what guarantees it gives (acks, idempotence, isolation, manual
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

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.admin import CreateAclsRequest
from pydantic import SecretStr

from topics.access import Grant


class KafkaConnection(Protocol):
    """What a client needs to know to reach the cluster and prove who it is (a part of the process
    settings: `VAXFLOW_KAFKA_*`, README "Running on a real cluster")."""

    @property
    def kafka_bootstrap(self) -> str: ...
    @property
    def kafka_security_protocol(self) -> str: ...
    @property
    def kafka_sasl_mechanism(self) -> str: ...
    @property
    def kafka_sasl_username(self) -> str | None: ...
    @property
    def kafka_sasl_password(self) -> SecretStr | None: ...
    @property
    def kafka_sasl_password_file(self) -> Path | None: ...
    @property
    def kafka_ssl_ca_file(self) -> Path | None: ...
    @property
    def kafka_ssl_cert_file(self) -> Path | None: ...
    @property
    def kafka_ssl_key_file(self) -> Path | None: ...


class FetchTuning(KafkaConnection, Protocol):
    @property
    def fetch_min_bytes(self) -> int: ...

    @property
    def fetch_max_wait_ms(self) -> int: ...


@dataclass(frozen=True)
class Bootstrap:
    """A connection given in code rather than by settings: the dev stack's brokers while they start,
    as its admin principal."""

    kafka_bootstrap: str
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None


def sasl_password(settings: KafkaConnection) -> str:
    """The SASL password, from its setting or its file (a mounted secret; one trailing newline dropped)."""
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_sasl_password_file is not None:
        return settings.kafka_sasl_password_file.read_text().removesuffix("\n")
    return ""


def tls_context(settings: KafkaConnection) -> ssl.SSLContext:
    """Verify the brokers against the configured CA (or the system's) with hostname checks on;
    present a client certificate when one is configured (mutual TLS)."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None,
        certfile=str(settings.kafka_ssl_cert_file) if settings.kafka_ssl_cert_file else None,
        keyfile=str(settings.kafka_ssl_key_file) if settings.kafka_ssl_key_file else None,
    )
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def connection(settings: KafkaConnection) -> dict[str, Any]:
    """The options every client gets to reach the cluster: brokers, TLS, SASL."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = tls_context(settings)
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


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


# Kafka's wire codes for ACL bindings (org.apache.kafka.common.acl / resource).
_RESOURCE_CODES = {"topic": 2, "group": 3, "transactional-id": 5}
_PATTERN_CODES = {"literal": 3, "prefixed": 4}
_OPERATION_CODES = {"Read": 3, "Write": 4, "Describe": 8}
_ALLOW = 3


class AclError(RuntimeError):
    """The cluster refused to create an ACL (the message names the binding and Kafka's reason)."""


async def create_acls(client: AIOKafkaAdminClient, grants: Iterable[Grant]) -> int:
    """Create an allow binding per grant and operation (any host); returns how many were sent.

    aiokafka has the CreateAcls request but no admin method for it, so it is sent here, the one
    module that may use aiokafka's private client (like `refresh_metadata`). Creating a binding
    that exists already is a no-op in Kafka, so applying the same list twice is safe.
    """
    bindings = [
        (grant, op, CreateAclsRequest(
            _RESOURCE_CODES[grant.resource], grant.name, _PATTERN_CODES[grant.pattern], grant.principal, "*",
            _OPERATION_CODES[op], _ALLOW,
        ))
        for grant in grants for op in grant.operations
    ]  # fmt: skip
    responses = await asyncio.gather(*(client._send_request(request) for _, _, request in bindings))
    refused = [
        f"{grant.principal} {op} {grant.resource} {grant.name}: {message or code}"
        for (grant, op, _), response in zip(bindings, responses, strict=True)
        for code, message in response.creation_responses
        if code
    ]
    if refused:
        raise AclError("; ".join(refused))
    return len(bindings)
