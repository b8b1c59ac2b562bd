"""The local broker's storage format arguments (pure: no broker is started here)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest

from vaxflow.dev import kafka_broker


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
