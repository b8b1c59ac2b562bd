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
    assert connection(settings) == {"bootstrap_servers": "10.9.8.7:9999", "security_protocol": "PLAINTEXT"}
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


def _pki(tmp_path: Path) -> Path:
    from vaxflow.dev.pki import make_pki

    return make_pki(tmp_path / "pki").ca_file


async def test_sasl_ssl_reaches_every_kind_of_client(tmp_path: Path) -> None:
    """One set of settings secures producers, consumers and admin alike, hostname checks on."""
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = Settings(
        kafka_bootstrap="broker:9093",
        kafka_security_protocol="sasl_ssl",
        kafka_sasl_username="vaxflow-validator",
        kafka_sasl_password_file=secret,
        kafka_ssl_ca_file=_pki(tmp_path),
    )
    options = connection(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "vaxflow-validator"
    assert options["sasl_plain_password"] == "s3cret"  # the file's trailing newline is not part of it
    assert options["ssl_context"].check_hostname is True
    for client in (idempotent_producer(settings).client, committed_consumer(settings, "t", group_id="g")._client,
                   reader(settings)._client, offsets_probe(settings)._client, admin_client(settings)._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_plain_username == "vaxflow-validator"
        assert client._ssl_context is not None
        assert client._ssl_context.check_hostname


def test_mutual_tls_loads_the_client_certificate(tmp_path: Path) -> None:
    from vaxflow.dev.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    key_and_cert = pki.broker_keystore.read_text()
    key = tmp_path / "client.key"
    cert = tmp_path / "client.pem"
    key.write_text(key_and_cert[: key_and_cert.index("-----BEGIN CERTIFICATE")])
    cert.write_text(key_and_cert[key_and_cert.index("-----BEGIN CERTIFICATE") :])
    settings = Settings(
        kafka_security_protocol="SSL", kafka_ssl_ca_file=pki.ca_file, kafka_ssl_cert_file=cert, kafka_ssl_key_file=key
    )
    assert connection(settings)["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    assert "sasl_mechanism" not in connection(settings)
