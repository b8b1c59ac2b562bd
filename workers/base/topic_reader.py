"""Reading topics to their end with read_committed: the one reader of compacted topics.

`TopicFollower` reads a set of topics up to their end offsets as of each `catch_up` and hands
every record to the caller's `apply`, keeping its positions between calls: the sent ledger
(uploader, ack reader, ops), the ops service's activity view and the file source's ledger are
folds of compacted topics built on it. `read_to_end` is the one-shot form for operator tools, the
demo and tests. (Operator scans of large ranges stream with progress in vaxflow/ops/scan.py; the
replay guards read one partition's last state backwards in workers/base/state_store.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from workers.base.kafka import offsets_probe, partitions_of, reader
from workers.base.settings import KafkaSettings
from workers.base.startable import Startable


async def _high_watermarks(settings: KafkaSettings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets as a read_uncommitted client sees them (every written record, markers or not)."""
    probe = offsets_probe(settings)
    await probe.start()
    try:
        return dict(await probe.end_offsets(tps))
    finally:
        await probe.stop()


async def settled_ends(
    consumer: AIOKafkaConsumer, settings: KafkaSettings, tps: list[TopicPartition], settle: float
) -> dict[TopicPartition, int]:
    """read_committed end offsets that include every transaction committed before the call.

    A transaction's commit returns to its producer once the coordinator has logged it; the
    markers reach the partitions a moment later, and until then the last stable offset (what a
    read_committed client gets as end offset) stays below the committed records. A tool that
    commits and then reads (redrive, then its ledger) would miss its own write, so while the
    stable offset is below the high watermark it is asked again for up to `settle` seconds. A
    transaction still open when the call began is not waited for beyond that.
    """
    high = await _high_watermarks(settings, tps)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while True:
        stable = await consumer.end_offsets(tps)
        if all(stable[tp] >= high[tp] for tp in tps) or loop.time() >= deadline:
            return {tp: min(stable[tp], high[tp]) for tp in tps}
        await asyncio.sleep(0.05)


Apply = Callable[[ConsumerRecord[bytes, bytes]], None]


class TopicFollower(Startable):
    """Reads `topics` to their end on each `catch_up`, applying every record in offset order per
    partition. Use as `async with TopicFollower(settings, [topic], apply) as f: await f.catch_up()`.

    Partitions are looked up again on every call, so topics (or partitions) created after the
    start are picked up and read from their beginning; `partitions` fixes the set instead. With
    `since_ms` (epoch milliseconds) a partition is read from its first record at or after that time
    instead (from its end if it has none), for a fold that only needs a recent horizon of a
    topic with a long retention.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        apply: Apply,
        *,
        fetch_bytes: int = 8 * 1024 * 1024,
        partitions: Sequence[TopicPartition] | None = None,
        since_ms: int | None = None,
        **overrides: object,
    ) -> None:
        self.settings = settings
        self._since_ms = since_ms
        self.topics = list(topics)
        self._apply = apply
        self._fixed = list(partitions) if partitions is not None else None
        self.consumer = reader(settings, fetch_bytes=fetch_bytes, **overrides)
        self.assigned: list[TopicPartition] = []
        self.records_read = 0
        self._started = False
        # An assignment callback and a poll loop may both ask for a catch-up: one read at a time,
        # or they would interleave their positions.
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.consumer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.consumer.stop()

    async def _assign(self) -> None:
        if self._fixed is not None:
            wanted = self._fixed
        else:
            wanted = [tp for topic in self.topics for tp in await partitions_of(self.consumer, topic)]
        known = set(self.assigned)
        new = [tp for tp in wanted if tp not in known]
        if not new:
            return
        self.assigned = sorted(known | set(new))
        self.consumer.assign(self.assigned)
        if self._since_ms is None:
            await self.consumer.seek_to_beginning(*new)
            return
        found = await self.consumer.offsets_for_times({tp: self._since_ms for tp in new})
        for tp in new:
            at = found.get(tp)
            if at is None:
                await self.consumer.seek_to_end(tp)
            else:
                self.consumer.seek(tp, at.offset)

    async def catch_up(self, timeout: float = 60.0, *, settle: float = 0.0) -> dict[TopicPartition, int]:
        """Read every partition up to its end offset as of the call; returns those end offsets.

        Everything fetched is applied, even records past the end: the consumer's position has
        moved past them, so dropping them here would lose them for good. With `settle`,
        transactions committed just before the call are waited for (see `settled_ends`).
        TimeoutError when the end is not reached within `timeout`.
        """
        if not self._started:
            raise RuntimeError("TopicFollower used before start()")
        async with self._lock:
            await self._assign()
            tps = self.assigned
            if not tps:
                return {}
            if settle > 0:
                ends = await settled_ends(self.consumer, self.settings, tps, settle)
            else:
                ends = dict(await self.consumer.end_offsets(tps))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                behind = [tp for tp in tps if await self.consumer.position(tp) < ends[tp]]
                if not behind:
                    return ends
                if loop.time() > deadline:
                    names = ", ".join(sorted({tp.topic for tp in behind}))
                    raise TimeoutError(f"could not read {names} to the end within {timeout:.0f}s")
                batch = await self.consumer.getmany(*behind, timeout_ms=500, max_records=10000)
                for records in batch.values():
                    for record in records:
                        self._apply(record)
                    self.records_read += len(records)


async def read_to_end(
    settings: KafkaSettings, topic: str, timeout: float = 120.0, settle: float = 2.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `topic` up to the end offsets taken at the start of the call.

    Transactions committed before the call are included even while their markers are in
    flight (see `settled_ends`).
    """
    out: list[ConsumerRecord[bytes, bytes]] = []
    follower = TopicFollower(
        settings, [topic], out.append, fetch_bytes=64 * 1024 * 1024, fetch_max_bytes=128 * 1024 * 1024
    )
    async with follower:
        ends = await follower.catch_up(timeout, settle=settle)
    return [r for r in out if r.offset < ends[TopicPartition(r.topic, r.partition)]]
