"""The secured three-broker cluster: who may connect, who may do what, and what a refusal says.

Every check here is the cluster's own answer (a real SASL_SSL handshake, a real ACL decision by
Kafka's StandardAuthorizer), never vaxflow's opinion of what it would be.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from fixtures_kafka import ClusterHandle
from pipeline_support import ProcessWorker, settings_env
from support.ports import free_port
from support.topics import ensure

from topics.access import ROLES
from topics.catalogue import CATALOGUE, RAW
from topics.ensure import ensure_topics
from vaxflow.dev import kafka_cluster
from workers.base.kafka import admin, committed_consumer, idempotent_producer, transactional_producer
from workers.base.kafka_access import KafkaAccessError, explain
from workers.base.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
async def secured(kafka_cluster_handle: ClusterHandle, namespace: str) -> Settings:
    """Admin settings for this test's namespace, its catalogue topics created and its ACLs granted."""
    settings = kafka_cluster_handle.settings(namespace)
    await ensure(settings)
    await kafka_cluster_handle.grant(settings)
    return settings


async def _write(settings: Settings, topic: str) -> BaseException | None:
    """Try one acks=all write as `settings`' principal; the cluster's refusal, or None."""
    producer = idempotent_producer(settings, request_timeout_ms=10000)
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"probe", key=b"probe")  # compacted topics need a key
        return None
    except KafkaError as exc:
        return exc
    finally:
        await producer.stop()


async def test_each_worker_writes_only_the_topics_the_catalogue_gives_it(
    kafka_cluster_handle: ClusterHandle, secured: Settings
) -> None:
    """Least privilege, per principal and topic: a write succeeds exactly where the catalogue
    names the worker a writer; everywhere else Kafka refuses it (and says so)."""
    outcomes: dict[tuple[str, str], bool] = {}
    for role in ROLES:
        as_role = kafka_cluster_handle.worker_settings(secured, role)
        for spec in CATALOGUE:
            refused = await _write(as_role, secured.topic(spec.name))
            outcomes[(role, spec.name)] = refused is None
            if refused is not None:
                access = await explain(as_role, refused)
                assert access is not None, f"{role} -> {spec.name}: {refused!r} not explained"
                assert f"User:vaxflow-{role}" in str(access)
    expected = {(role, spec.name): role in spec.writers for role in ROLES for spec in CATALOGUE}
    assert outcomes == expected
    assert sum(outcomes.values()) == 14  # e.g. the gateway only to raw; the ops service nowhere


async def test_a_principal_without_grants_cannot_write_raw(
    kafka_cluster_handle: ClusterHandle, secured: Settings
) -> None:
    nobody = kafka_cluster_handle.layout.settings(secured, "vaxflow-nobody")
    refused = await _write(nobody, secured.topic(RAW.name))
    assert refused is not None
    access = await explain(nobody, refused)
    assert access is not None
    assert "Kafka refused principal User:vaxflow-nobody: missing an ACL" in str(access)


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from vaxflow.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"VAXFLOW_KAFKA_SASL_PASSWORD_FILE": "WRONG"}, "SASL authentication failed for"
         " VAXFLOW_KAFKA_SASL_USERNAME=admin (SCRAM-SHA-512): wrong password, or no such user"),
        ({"VAXFLOW_KAFKA_SSL_CA_FILE": "/etc/ssl/certs/ca-certificates.crt"}, "the broker's TLS certificate is"
         " not trusted (unable to get local issuer certificate; CA: /etc/ssl/certs/ca-certificates.crt)"),
        ({"VAXFLOW_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "VAXFLOW_KAFKA_SASL_USERNAME": "",
          "VAXFLOW_KAFKA_SASL_PASSWORD_FILE": "", "VAXFLOW_KAFKA_SSL_CA_FILE": ""},
         "VAXFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not match its listener"),
    ],
    ids=["wrong-password", "untrusted-certificate", "plaintext-client"],
)  # fmt: skip
def test_a_refused_command_says_why_in_one_line_and_fails_fast(
    kafka_cluster_handle: ClusterHandle, secured: Settings, tmp_path: Path, change: dict[str, str], expected: str
) -> None:
    env = settings_env(secured)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    env |= {k: str(wrong) if v == "WRONG" else v for k, v in change.items()}
    started = time.monotonic()
    done = _run_cli(env, "topics", "ensure")
    took = time.monotonic() - started
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("vaxflow: ")  # the last line says why
    assert expected in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr
    assert kafka_cluster_handle.layout.credentials()["admin"] not in done.stdout + done.stderr
    print(f"[cluster] {change} refused in {took:.1f}s")


async def test_a_worker_with_a_wrong_password_stops_retrying_and_readyz_says_why(
    kafka_cluster_handle: ClusterHandle, secured: Settings, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password")
    port = free_port()
    env = settings_env(kafka_cluster_handle.worker_settings(secured, "validator"))
    env |= {"VAXFLOW_KAFKA_SASL_PASSWORD_FILE": str(wrong), "VAXFLOW_HEALTH_PORT": str(port)}
    log = tmp_path / "validator.log"
    worker = ProcessWorker("validator", env, log).start()
    try:
        body: dict[str, object] = {}
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while "reason" not in body:
                assert time.monotonic() < deadline, "no reason on /readyz within 60 s"
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        status, body = response.status, await response.json()
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
        assert status == 503
        assert body["ready"] is False
        assert "SASL authentication failed for VAXFLOW_KAFKA_SASL_USERNAME=vaxflow-validator" in str(body["reason"])
        await asyncio.sleep(3)  # and it does not retry: one refusal in the log, the process still up
        text = log.read_text()
        assert text.count("not retrying") == 1
        assert "worker failed; restarting" not in text
        assert "not-the-password" not in text
        assert worker.proc is not None
        assert worker.proc.poll() is None
    finally:
        code = worker.terminate()
    assert code == 0  # SIGTERM ends the refused worker cleanly


async def test_topics_are_replicated_from_settings_and_drift_is_reported(
    kafka_cluster_handle: ClusterHandle, namespace: str
) -> None:
    settings = kafka_cluster_handle.settings(namespace)
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)
    await ensure(settings)
    raw = settings.topic(RAW.name)
    # Kafka creates its own topics on first use: a transaction and a group commit make sure both exist
    producer = transactional_producer(settings, f"{namespace}-tx")
    await producer.start()
    await producer.stop()
    consumer = committed_consumer(settings, raw, group_id=f"{namespace}-g")
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)
        await consumer.commit({TopicPartition(raw, 0): 0})
    finally:
        await consumer.stop()
    async with admin(settings) as client:
        described = await client.describe_topics([raw, "__transaction_state", "__consumer_offsets"])
        replicas = {t["topic"]: {len(p["replicas"]) for p in t["partitions"]} for t in described}
        assert replicas == {raw: {3}, "__transaction_state": {3}, "__consumer_offsets": {3}}
        configs = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, raw)])
        assert {e[0]: e[1] for e in configs[0].resources[0][4]}["min.insync.replicas"] == "2"
        # a cluster set up for 2 replicas and min.insync 1 sees both as drift, and fixes only the config
        reports = await ensure_topics(client, namespace=namespace, replication_factor=2, min_insync_replicas=1)
        drift = {r.name: r.drift for r in reports}
        assert drift[raw] == ["replication.factor: want 2, have 3", "min.insync.replicas: want 1, have 2"]
        fixed = await ensure_topics(
            client, namespace=namespace, replication_factor=2, min_insync_replicas=1, fix_configs=True
        )
        assert {r.name: r.drift for r in fixed}[raw] == ["replication.factor: want 2, have 3"]
        again = await ensure_topics(client, namespace=namespace, replication_factor=3, min_insync_replicas=2)
        assert {r.name: r.drift for r in again}[raw] == ["min.insync.replicas: want 2, have 1"]


def test_acl_commands_are_accepted_by_kafkas_own_tool(
    kafka_cluster_handle: ClusterHandle, secured: Settings, tmp_path: Path
) -> None:
    """`vaxflow topics acls` prints kafka-acls commands; Kafka's AclCommand runs the validator's,
    and its --list then shows each of them (so an operator can paste what we print)."""
    layout = kafka_cluster_handle.layout
    assert layout.pki is not None
    admin_props = tmp_path / "admin.properties"
    password = layout.credentials()["admin"]
    admin_props.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required"
        f' username="admin" password="{password}";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={layout.pki.ca_file}\n"
    )
    env = settings_env(secured)
    printed = _run_cli(env, "topics", "acls", "--principal-prefix", "it-", "--command-config", str(admin_props))
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    mine = [line for line in lines if "User:it-validator" in line]
    assert len(mine) == 6  # raw (read), valid, rejected (write), its state topic, its group, its transactions
    libs = layout.nodes[0].libs
    java = ["java", "-cp", f"{libs}/*", "org.apache.kafka.tools.AclCommand"]
    for line in mine:
        words = line.split()
        assert words[0] == "kafka-acls.sh"
        done = subprocess.run([*java, *words[1:]], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run(
        [*java, "--bootstrap-server", layout.bootstrap, "--command-config", str(admin_props), "--list",
         "--principal", "User:it-validator"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    for resource in (secured.topic(RAW.name), secured.group(secured.validator_group)):
        assert f"name={resource}" in listed.stdout
    assert "patternType=PREFIXED" in listed.stdout


def test_dev_status_names_brokers_ca_and_principals(kafka_cluster_handle: ClusterHandle) -> None:
    layout = kafka_cluster_handle.layout
    env = layout.environment(kafka_cluster.worker_user("gateway"))
    assert env["VAXFLOW_KAFKA_SASL_USERNAME"] == "vaxflow-gateway"
    assert Path(env["VAXFLOW_KAFKA_SASL_PASSWORD_FILE"]).read_text() == layout.credentials()["vaxflow-gateway"]
    assert Path(env["VAXFLOW_KAFKA_SASL_PASSWORD_FILE"]).stat().st_mode & 0o077 == 0
    assert env["VAXFLOW_KAFKA_BOOTSTRAP"].count(",") == 2


def test_explain_leaves_a_down_broker_to_the_retries() -> None:
    """A refused TCP connection is an outage, not an access problem: the worker keeps retrying."""
    from aiokafka.errors import KafkaConnectionError

    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    assert asyncio.run(explain(settings, KafkaConnectionError("Unable to bootstrap"))) is None
    assert isinstance(asyncio.run(explain(settings, KafkaAccessError("x"))), KafkaAccessError)
