"""The assignment lifecycle of workers/base/partition_producers.py, with producers that record calls.

The SIGKILL and rebalance tests in tests/workers/ prove the fencing against the real broker; this
pins the order in which a worker's state follows the assignment.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import TopicPartition

from workers.base import partition_producers as pp
from workers.base.settings import Settings

TP0, TP1 = TopicPartition("raw", 0), TopicPartition("raw", 1)


class FakeProducer:
    def __init__(self, log: list[str], transactional_id: str) -> None:
        self.log = log
        self.transactional_id = transactional_id

    async def start(self) -> None:
        self.log.append(f"start {self.transactional_id}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.transactional_id}")


class RecordingState(pp.PartitionState):
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.loaded: set[TopicPartition] = set()

    def is_loaded(self, tp: TopicPartition) -> bool:
        return tp in self.loaded

    @contextlib.asynccontextmanager
    async def assigning(self, assigned: set[TopicPartition]) -> AsyncIterator[None]:
        self.log.append("hold")
        yield
        self.log.append("let go")

    async def load(self, assigned: set[TopicPartition]) -> None:
        self.log.append(f"load {sorted(tp.partition for tp in assigned)}")
        self.loaded |= assigned

    async def release(self, revoked: set[TopicPartition]) -> None:
        self.log.append(f"release {sorted(tp.partition for tp in revoked)}")

    def forget(self, revoked: set[TopicPartition]) -> None:
        self.log.append(f"forget {sorted(tp.partition for tp in revoked)}")
        self.loaded -= revoked


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def producer(settings: Settings, transactional_id: str, **options: Any) -> FakeProducer:
        return FakeProducer(calls, transactional_id)

    monkeypatch.setattr(pp, "transactional_producer", producer)
    return calls


async def test_producers_fence_before_the_state_is_loaded_and_stop_after_work_is_released(log: list[str]) -> None:
    state = RecordingState(log)
    producers = pp.PartitionProducers(Settings(), "g", state=state)
    await producers.on_partitions_assigned({TP1, TP0})
    assert log[0] == "hold"
    assert sorted(log[1:3]) == ["start g-raw-0", "start g-raw-1"]
    assert log[3:] == ["load [0, 1]", "let go"]
    assert producers.is_ready(TP0)
    assert producers.is_ready(TP1)
    log.clear()
    await producers.on_partitions_revoked({TP0})
    assert log == ["release [0]", "stop g-raw-0", "forget [0]"]
    assert not producers.is_ready(TP0)
    assert producers.is_ready(TP1)


async def test_a_partition_is_not_ready_until_both_producer_and_state_are(log: list[str]) -> None:
    state = RecordingState(log)
    producers = pp.PartitionProducers(Settings(), "g", state=state)
    assert not producers.is_ready(TP0)
    state.loaded.add(TP0)
    assert not producers.is_ready(TP0)  # state without a producer
    state.loaded.clear()
    await producers.on_partitions_assigned({TP0})
    state.loaded.clear()
    assert not producers.is_ready(TP0)  # a producer without state


async def test_a_worker_without_state_is_ready_once_its_producer_is(log: list[str]) -> None:
    producers = pp.PartitionProducers(Settings(), "g")
    await producers.on_partitions_assigned({TP0})
    assert producers.is_ready(TP0)
    await producers.close()
    assert log == ["start g-raw-0", "stop g-raw-0"]
