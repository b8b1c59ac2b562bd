"""The commit order of workers/base/checkpoint.py, against a producer that records its calls.

The real broker proves the invariants end to end (tests/workers/test_workers_pipeline.py and the
other exactly-once tests, which all commit through Checkpoint); this pins the order itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from workers.base.checkpoint import Checkpoint


class _Txn:
    def __init__(self) -> None:
        self.fatal = False

    def is_fatal_error(self) -> bool:
        return self.fatal


class RecordingProducer:
    """Just enough of AIOKafkaProducer: every call lands in `calls`, in order."""

    def __init__(self, fail_topic: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_topic = fail_topic
        self._txn_manager = _Txn()

    async def begin_transaction(self) -> None:
        self.calls.append(("begin",))

    async def send(self, topic: str, value: bytes | None, **kw: Any) -> asyncio.Future[object]:
        self.calls.append(("send", topic, value, kw.get("key"), kw.get("partition")))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if topic == self.fail_topic:
            future.set_exception(RuntimeError(f"delivery to {topic} failed"))
        else:
            future.set_result(None)
        return future

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        self.calls.append(("offsets", dict(offsets), group_id))

    async def commit_transaction(self) -> None:
        self.calls.append(("commit",))

    async def abort_transaction(self) -> None:
        self.calls.append(("abort",))


class RecordingSink:
    def __init__(self, producer: RecordingProducer) -> None:
        self.producer = producer

    async def flush(self) -> None:
        self.producer.calls.append(("flush",))


TP = TopicPartition("raw", 3)


async def test_outputs_then_sink_then_state_then_offsets_then_commit() -> None:
    producer = RecordingProducer()
    async with Checkpoint(producer, group_id="g") as step:  # type: ignore[arg-type]
        step.state("state", b"S", key=b"3", partition=3)  # asked for first, written after the outputs
        step.consumed({TP: 10})
        step.sink(RecordingSink(producer))
        await step.produce("valid", b"row", key=b"K")
    assert producer.calls == [
        ("begin",),
        ("send", "valid", b"row", b"K", None),
        ("flush",),
        ("send", "state", b"S", b"3", 3),
        ("offsets", {TP: 10}, "g"),
        ("commit",),
    ]


async def _full_step(producer: RecordingProducer, *, fail: bool = False) -> None:
    async with Checkpoint(producer, group_id="g") as step:  # type: ignore[arg-type]
        await step.produce("valid", b"row")
        step.state("state", b"S", key=b"3")
        step.consumed({TP: 10})
        if fail:
            raise ValueError("boom")


@pytest.mark.parametrize("topic", ["valid", "state"])
async def test_a_failed_delivery_aborts_instead_of_committing(topic: str) -> None:
    """An output record or the state record: either one failing aborts the whole step."""
    producer = RecordingProducer(fail_topic=topic)
    with pytest.raises(RuntimeError, match=f"delivery to {topic} failed"):
        await _full_step(producer)
    assert producer.calls[-1] == ("abort",)
    assert ("commit",) not in producer.calls


async def test_an_error_in_the_step_aborts_and_writes_no_state_or_offsets() -> None:
    producer = RecordingProducer()
    with pytest.raises(ValueError, match="boom"):
        await _full_step(producer, fail=True)
    assert producer.calls == [("begin",), ("send", "valid", b"row", None, None), ("abort",)]


async def test_a_fenced_producer_is_not_asked_to_abort() -> None:
    producer = RecordingProducer()
    producer._txn_manager.fatal = True
    with pytest.raises(ValueError, match="fenced"):
        async with Checkpoint(producer, group_id="g"):  # type: ignore[arg-type]
            raise ValueError("fenced")
    assert producer.calls == [("begin",)]


async def test_offsets_need_a_group() -> None:
    producer = RecordingProducer()
    with pytest.raises(ValueError, match="without a consumer group"):
        async with Checkpoint(producer) as step:  # type: ignore[arg-type]
            step.consumed({TP: 1})
    assert producer.calls == [("begin",), ("abort",)]


async def test_a_step_without_offsets_commits_outputs_and_state() -> None:
    producer = RecordingProducer()
    async with Checkpoint(producer) as step:  # type: ignore[arg-type]
        await step.produce("raw", b"e1")
        step.state("ledger", b"L", key=b"sha")
    assert [c[0] for c in producer.calls] == ["begin", "send", "send", "commit"]
    assert producer.calls[2][1] == "ledger"
