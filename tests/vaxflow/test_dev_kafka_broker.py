"""The local broker's storage format and command line (pure: no broker is started here)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaxflow.dev import kafka_broker, kafka_cluster
from vaxflow.dev.stack import broker_layout, cluster_layout
from workers.base.settings import Settings


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" first: the storage tool would read "-t -..." as a missing value
    drawn: Iterator[uuid.UUID] = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(drawn))
    cluster_id = kafka_broker.new_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(b"\x10" * 16).decode().rstrip("=")


def test_cluster_ids_are_kafkas_form() -> None:
    for _ in range(2000):
        cluster_id = kafka_broker.new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def _layout(tmp_path: Path) -> kafka_broker.BrokerLayout:
    return kafka_broker.BrokerLayout(
        version="4.3.1", cache_dir=tmp_path, home=tmp_path / "kafka", port=1, controller_port=2
    )


def test_the_local_broker_compiles_with_c1_only_by_default(tmp_path: Path) -> None:
    cmd = kafka_broker.broker_command(_layout(tmp_path), "java")
    assert cmd[:3] == ["java", "-Xms768m", "-Xmx768m"]
    assert "-XX:TieredStopAtLevel=1" in cmd
    assert cmd.index("-XX:TieredStopAtLevel=1") < cmd.index("kafka.Kafka")  # a JVM option, not an argument


def test_jvm_options_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAXFLOW_KAFKA_JVM_OPTIONS", "-XX:+UseParallelGC -XX:CICompilerCount=2")
    monkeypatch.setenv("VAXFLOW_DEV_HOME", str(tmp_path))
    cmd = kafka_broker.broker_command(broker_layout(Settings()), "java")
    assert "-XX:+UseParallelGC" in cmd
    assert "-XX:CICompilerCount=2" in cmd
    assert "-XX:TieredStopAtLevel=1" not in cmd  # replaced, not added to
    assert "-XX:+UseG1GC" not in cmd


@pytest.mark.parametrize(("brokers", "security"), [(1, "plaintext"), (3, "sasl_ssl")])
def test_a_fresh_dev_home_gets_a_cluster_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, brokers: int, security: str
) -> None:
    # a fresh clone has no var/dev: `vaxflow dev up` once failed there writing kafka/cluster-id
    monkeypatch.setenv("VAXFLOW_DEV_HOME", str(tmp_path / "var" / "dev"))
    layout = cluster_layout(Settings(), brokers=brokers, security=security)
    first = kafka_cluster.cluster_id(layout)
    assert kafka_cluster.cluster_id(layout) == first  # kept, so a node formatted later joins it
    assert (layout.home / "cluster-id").read_text().strip() == first
