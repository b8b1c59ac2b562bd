"""The exactly-once order of one step, written once: outputs, then state, then consumed offsets, then commit.

Every step that turns input into Kafka output atomically goes through `Checkpoint`: the validator
(a raw batch → valid/rejected records + its replay guard + raw offsets), the batcher (files +
its guard state + valid offsets), the file source (a file's rows + its ledger entry) and the
operator's redrive and resend (re-submissions + the redrive ledger). The order, and why:

1. Before the checkpoint opens, whatever must be durable outside Kafka already is (the batcher's
   archive copy): a file that is published must never lack its copy; a copy whose file never
   gets published is harmless (it is rewritten under the same name).
2. Outputs are produced inside the transaction (a buffering sink is flushed first).
3. State records (a replay guard, a ledger entry) follow the outputs they describe, in the same
   transaction: no reader can see a guard that claims outputs it cannot see.
4. The consumed offsets go in the same transaction: the input counts as done exactly when its
   outputs and state become visible, and never before.
5. Every delivery (outputs and state) is confirmed before the commit and the first failure is
   raised inside the transaction, so it aborts instead of committing a step with a record
   missing. (The offsets are sent before the deliveries are awaited, so that their round trips
   to the coordinator overlap the produce requests: a failure still aborts them with the rest.)
6. Commit. The caller changes its in-memory view only after the `async with` block has exited
   without an error: after an abort the memory still matches what was committed, and the caller
   rewinds its consumer to read the records again (`partition_producers.rewind`); or, as the
   batcher does, it lets the error end the worker, whose partitions' next owner loads the
   committed state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition


class Sink(Protocol):
    """Something that buffers outputs and hands them all to the producer on `flush`
    (`workers.base.batch_send.BatchSender`)."""

    async def flush(self) -> None: ...


S = TypeVar("S", bound=Sink)


@dataclass(frozen=True)
class _StateRecord:
    topic: str
    value: bytes
    key: bytes
    partition: int | None


class Checkpoint:
    """One transaction on `producer`, committed in the order of the module docstring.

    ```
    async with Checkpoint(producer, group_id=group) as step:
        await step.produce(topic, value, key=key)            # outputs, any number
        step.state(state_topic, state_value, key=b"3", partition=3)
        step.consumed({tp: next_offset})
    # committed here; only now update in-memory state
    ```
    """

    def __init__(self, producer: AIOKafkaProducer, *, group_id: str | None = None) -> None:
        self._producer = producer
        self._group_id = group_id
        self._sinks: list[Sink] = []
        self._deliveries: list[asyncio.Future[object]] = []
        self._states: list[_StateRecord] = []
        self._offsets: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> Checkpoint:
        await self._producer.begin_transaction()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            try:
                await self._finish()
            except BaseException:
                await self._abort()
                raise
            await self._producer.commit_transaction()
            return
        await self._abort()

    async def _finish(self) -> None:
        for sink in self._sinks:  # 2. outputs buffered by a sink reach the producer
            await sink.flush()
        for s in self._states:  # 3. state after the outputs it describes
            self._deliveries.append(
                await self._producer.send(s.topic, s.value, key=s.key, partition=s.partition)
            )
        if self._offsets:  # 4. the input is done only together with its outputs and state
            if self._group_id is None:
                raise ValueError("consumed offsets without a consumer group")
            await self._producer.send_offsets_to_transaction(self._offsets, self._group_id)
        outcomes = await asyncio.gather(*self._deliveries, return_exceptions=True)
        for outcome in outcomes:  # 5. every outcome is collected, so none is left unretrieved
            if isinstance(outcome, BaseException):
                raise outcome

    async def _abort(self) -> None:
        for future in self._deliveries:  # an aborted step must not log "exception never retrieved"
            future.add_done_callback(_retrieve)
        # A fatal producer error (fenced) leaves nothing to abort: the broker aborts it for us.
        if not self._producer._txn_manager.is_fatal_error():
            await self._producer.abort_transaction()

    def sink(self, sink: S) -> S:
        """Register a buffering sink; it is flushed before state and offsets are written."""
        self._sinks.append(sink)
        return sink

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """An output record; its delivery is checked before the commit."""
        future = await self._producer.send(
            topic, value, key=key, partition=partition, headers=list(headers) if headers else None,
            timestamp_ms=timestamp_ms,
        )
        self._deliveries.append(future)

    async def settle(self) -> None:
        """Await the deliveries produced so far and forget them, raising the first failure (which
        aborts the step): a step of millions of outputs (a large handed-in file) keeps no future
        per output until its commit."""
        deliveries, self._deliveries = self._deliveries, []
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def state(self, topic: str, value: bytes, *, key: bytes, partition: int | None = None) -> None:
        """A state record (replay guard, ledger entry), written after every output."""
        self._states.append(_StateRecord(topic, value, key, partition))

    def consumed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The next offset to read per input partition, committed last in the transaction."""
        self._offsets.update(offsets)


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
