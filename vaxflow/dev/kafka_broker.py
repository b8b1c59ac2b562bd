"""A real Apache Kafka node (KRaft, broker+controller) built from Maven Central jars: alone, or one
of a cluster (vaxflow/dev/kafka_cluster.py), plaintext or secured.

There is no Docker engine on the machines this project runs on, so the broker is Kafka's own
`kafka.Kafka` main class started with `java`. The jars are resolved once by Maven into a cache
outside the repository; the KRaft storage is formatted once and kept, so a broker restart keeps
its topics and offsets (later tests restart it on purpose).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vaxflow.dev import processes
from vaxflow.dev.pki import Pki
from workers.base.kafka import Bootstrap, KafkaConnection, admin
from workers.base.paths import KAFKA_POM


class ProvisionError(RuntimeError):
    """The broker cannot be provisioned or started on this machine."""


# C1 only (no C2): a local broker shares 2 cores with the workers, and C2 kept compiling through
# every benchmark run (1-4 CPU seconds per 300,000 events, still 1-2 s after a 1,000,000-event
# warm-up). Measured in interleaved pairs, C1 alone used about a third less broker CPU per event
# (docs/decisions/0012-local-broker-jit.md). A long-lived broker on more cores wants C2: set
# VAXFLOW_KAFKA_JVM_OPTIONS.
LOCAL_JVM_OPTIONS: tuple[str, ...] = ("-XX:+UseG1GC", "-XX:TieredStopAtLevel=1")


def jvm_options(configured: str | None) -> tuple[str, ...]:
    """The broker's JVM options from the setting (space-separated), or the local default."""
    return tuple(configured.split()) if configured is not None else LOCAL_JVM_OPTIONS


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """How a secured node talks: clients over SASL_SSL (SCRAM users formatted into its storage),
    brokers and controllers among themselves over mutual TLS, ACLs enforced."""

    pki: Pki
    internal_port: int
    scram_users: Mapping[str, str]  # user -> password, created when the storage is formatted
    super_users: tuple[str, ...] = ("User:admin",)


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """Where one broker's jars, configuration, data and log live, and its place in its cluster."""

    version: str
    cache_dir: Path
    home: Path
    port: int
    controller_port: int
    heap: str = "768m"
    jvm_options: tuple[str, ...] = LOCAL_JVM_OPTIONS  # besides the heap, which `heap` sets
    node_id: int = 1
    voters: str = ""  # the controller quorum, "id@host:port,..."; empty: this node alone
    security: BrokerSecurity | None = None
    replicas: int = 1  # replication of Kafka's own topics (offsets, transaction state)
    host: str = "127.0.0.1"  # what clients and peers reach it by; any other name listens on all interfaces

    @property
    def libs(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}" / "libs"

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ProvisionError(f"`{tool}` was not found on PATH; {hint}")
    return path


def provision_jars(layout: BrokerLayout) -> Path:
    """Copy kafka_2.13 and its runtime dependencies into the cache once; later calls reuse them."""
    marker = layout.libs / ".complete"
    wanted = f"{layout.version} {hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:16]}"
    if marker.exists() and marker.read_text() == wanted:
        return layout.libs  # resolved before, from this very pom
    mvn = _require("mvn", "install Apache Maven 3.8+ (Debian: `apt-get install maven`).")
    _require("java", "install a Java 17+ runtime (Debian: `apt-get install openjdk-17-jre-headless`).")
    layout.libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
        f"-Dkafka.version={layout.version}", f"-DoutputDirectory={layout.libs}",
        "-DincludeScope=runtime",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ProvisionError(f"Maven could not resolve Kafka {layout.version}:\n{done.stdout}{done.stderr}")
    marker.write_text(wanted)
    return layout.libs


def _classpath(layout: BrokerLayout) -> str:
    return str(layout.libs / "*")


def _listener_props(layout: BrokerLayout) -> dict[str, str]:
    """Plaintext for a lone dev node; else clients on SASL_SSL and nodes among themselves on mutual TLS."""
    host = layout.host
    bind = host if host == "127.0.0.1" else "0.0.0.0"  # noqa: S104 - docker-compose: reached by service name
    controller = f"CONTROLLER://{bind}:{layout.controller_port}"
    if layout.security is None:
        return {
            "listeners": f"PLAINTEXT://{bind}:{layout.port},{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{layout.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        }
    sec = layout.security
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "listeners": f"CLIENT://{bind}:{layout.port},INTERNAL://{bind}:{sec.internal_port},{controller}",
        "advertised.listeners": f"CLIENT://{host}:{layout.port},INTERNAL://{host}:{sec.internal_port}",
        "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
        "listener.name.client.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.client.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(sec.pki.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(sec.pki.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": ";".join((*sec.super_users, sec.pki.broker_principal)),
        "allow.everyone.if.no.acl.found": "false",
    }


def write_config(layout: BrokerLayout) -> None:
    layout.home.mkdir(parents=True, exist_ok=True)
    replicas = str(layout.replicas)
    min_isr = str(min(2, layout.replicas))
    props = {
        "process.roles": "broker,controller",
        "node.id": str(layout.node_id),
        "controller.quorum.voters": layout.voters or f"{layout.node_id}@{layout.host}:{layout.controller_port}",
        "controller.listener.names": "CONTROLLER",
        **_listener_props(layout),
        "log.dirs": str(layout.data),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        # Large files travel on vaccination.batches.ready; topic configs narrow this per topic.
        "message.max.bytes": str(64 * 1024 * 1024),
        "replica.fetch.max.bytes": str(64 * 1024 * 1024),
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    layout.config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (layout.home / "log4j2.properties").write_text(
        "rootLogger.level=INFO\nrootLogger.appenderRef.f.ref=F\n"
        "appender.f.type=File\nappender.f.name=F\n"
        f"appender.f.fileName={layout.home / 'server.log'}\n"
        "appender.f.layout.type=PatternLayout\nappender.f.layout.pattern=[%d] %p %m (%c)%n\n"
        "logger.kafka.name=kafka\nlogger.kafka.level=INFO\n"
        "logger.state.name=state.change.logger\nlogger.state.level=WARN\n"
    )


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding, as Kafka's own.

    Never starting with "-", as Kafka's `Uuid.randomUuid` also ensures: the storage tool's
    argument parser reads `-t -abc...` as a missing value, and one format in 64 failed that way.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def format_storage(layout: BrokerLayout, cluster_id: str | None = None) -> None:
    """Format KRaft storage the first time only, so data survives restarts.

    Every node of a cluster is formatted with the same cluster id; a secured node also gets its
    SCRAM users here, because clients and ACLs need them before any admin could create them.
    """
    if (layout.data / "meta.properties").exists():
        return
    java = _require("java", "install a Java 17+ runtime.")
    cmd = [java, "-cp", _classpath(layout), "kafka.tools.StorageTool", *format_arguments(layout, cluster_id)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ProvisionError(f"kafka StorageTool format failed:\n{done.stdout}{done.stderr}")


def format_arguments(layout: BrokerLayout, cluster_id: str | None = None) -> list[str]:
    """`kafka-storage format` arguments for this node (also written out for docker-compose's nodes)."""
    scram = [] if layout.security is None else [
        arg for user, password in layout.security.scram_users.items()
        for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
        for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
    ]
    return ["format", "-t", cluster_id or new_cluster_id(), "-c", str(layout.config), *scram]


def read_pid(layout: BrokerLayout) -> int | None:
    """The broker's process id if the pid file names a live process."""
    return processes.read_pid(layout.pid_file)


def broker_command(layout: BrokerLayout, java: str) -> list[str]:
    return [
        java, f"-Xms{layout.heap}", f"-Xmx{layout.heap}", *layout.jvm_options,
        f"-Dlog4j2.configurationFile={layout.home / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={layout.home}",
        "-cp", _classpath(layout), "kafka.Kafka", str(layout.config),
    ]  # fmt: skip


def start_broker(layout: BrokerLayout, cluster_id: str | None = None) -> int:
    """Start the broker detached from this process (it outlives `vaxflow dev up`); returns its pid."""
    running = read_pid(layout)
    if running is not None:
        return running
    provision_jars(layout)
    write_config(layout)
    format_storage(layout, cluster_id)
    cmd = broker_command(layout, _require("java", "install a Java 17+ runtime."))
    with open(layout.log, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    layout.pid_file.write_text(str(proc.pid))
    return proc.pid


async def wait_ready(
    target: str | KafkaConnection,
    timeout: float = 90.0,
    pid: int | None = None,
    *,
    pids: Sequence[int] = (),
    brokers: int = 1,
) -> float:
    """Wait until a client metadata call succeeds and names `brokers` brokers; return the seconds it took.

    Readiness is a real request answered by the broker (a sleep would pass on a broker that is
    still loading its logs, or has died); a cluster is ready when every node has registered.
    """
    started = time.monotonic()
    deadline = started + timeout
    conn = Bootstrap(target) if isinstance(target, str) else target
    watched = (*pids, *((pid,) if pid is not None else ()))
    client_log = logging.getLogger("aiokafka")
    previous_level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # "connection refused" is the expected answer while starting
    try:
        return await _poll_ready(conn, started, deadline, watched, brokers)
    finally:
        client_log.setLevel(previous_level)


async def _poll_ready(
    conn: KafkaConnection, started: float, deadline: float, pids: Sequence[int], brokers: int
) -> float:
    last: Exception | str | None = None
    while time.monotonic() < deadline:
        if any(not processes.alive(p) for p in pids):
            raise ProvisionError("a Kafka broker exited during start-up; see its broker.log")
        try:
            async with admin(conn, request_timeout_ms=3000) as client:
                described = await client.describe_cluster()
            if len(described["brokers"]) >= brokers:
                return time.monotonic() - started
            last = f"{len(described['brokers'])} of {brokers} brokers registered"
        except Exception as exc:
            last = exc
        await asyncio.sleep(0.25)
    raise ProvisionError(f"Kafka at {conn.kafka_bootstrap} not ready after {deadline - started:.0f}s: {last!r}")


def stop_broker(layout: BrokerLayout, timeout: float = 30.0) -> bool:
    """SIGTERM (the broker flushes and closes its logs), then SIGKILL after `timeout`."""
    return processes.stop_pid_file(layout.pid_file, timeout)
