"""How an uploader partition changes hands (the `PartitionState` of workers/base/partition_producers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import TopicPartition

from workers.base.ledger import SentLedger
from workers.base.partition_producers import PartitionState

log = logging.getLogger("vaxflow.uploader")


class HandOver(PartitionState):
    """The uploader's hand-over rules: the attempts in flight finish (and are recorded) before their
    partition goes, waits are abandoned, and a new partition's files wait until its producer exists
    and the sent ledger is read to its end."""

    def __init__(
        self, halts: dict[TopicPartition, asyncio.Event], lock_for: Callable[[TopicPartition], asyncio.Lock],
        ledger: SentLedger, drain: Callable[[TopicPartition], Awaitable[None]],
    ) -> None:
        self.halts = halts
        self.lock_for = lock_for
        self.ledger = ledger
        self.drain = drain

    @contextlib.asynccontextmanager
    async def assigning(self, assigned: set[TopicPartition]) -> AsyncIterator[None]:
        # The fetcher may hand out records of these partitions before this callback ends; holding
        # their locks makes processing wait until the producer exists and the ledger is read.
        for tp in assigned:
            self.halts[tp] = asyncio.Event()
        async with contextlib.AsyncExitStack() as held:
            for tp in sorted(assigned):
                await held.enter_async_context(self.lock_for(tp))
            yield

    async def load(self, assigned: set[TopicPartition]) -> None:
        applied = await self.ledger.catch_up()
        log.info(
            "partitions assigned; ledger read to its end",
            extra={"partitions": sorted(tp.partition for tp in assigned), "ledger_records": applied,
                   "ledger_files": len(self.ledger)},
        )

    async def release(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            halt = self.halts.pop(tp, None)
            if halt is not None:
                halt.set()  # a backoff wait gives up at once
        for tp in revoked:
            await self.drain(tp)  # the partition's lanes end: requests in flight finish and are recorded
            async with self.lock_for(tp):
                pass
