"""Streaming a topic range for operator commands, with progress.

Redrive, replay and resend read ranges that can hold millions of records, so they stream them
(never a whole topic in memory, unlike workers.base.topic_reader) and report progress through a
`Meter`, which the CLI draws as a progress bar and tests leave silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from workers.base.kafka import partitions_of, reader
from workers.base.settings import Settings


class Meter(Protocol):
    def begin(self, what: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def end(self) -> None: ...


class Silent:
    """No progress output (library use, tests)."""

    def begin(self, what: str, total: int) -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None

    def end(self) -> None:
        return None


class RichMeter:
    """A progress bar on stderr, so --json output on stdout stays clean."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: object = None

    def begin(self, what: str, total: int) -> None:
        self.end()
        from rich.console import Console

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(what, total=max(total, 0))

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)  # type: ignore[arg-type]

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


async def stream(
    settings: Settings,
    topic: str,
    *,
    starts: Mapping[int, int] | None = None,
    partitions: list[int] | None = None,
    meter: Meter | None = None,
    what: str | None = None,
    fetch_bytes: int = 8 * 1024 * 1024,
    timeout: float = 600.0,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `topic` from `starts` (default: the log start) to the end offsets
    as of the call, partition by partition; the meter counts offsets (markers included)."""
    meter = meter or Silent()
    consumer = reader(settings, fetch_bytes=fetch_bytes)
    await consumer.start()
    try:
        if partitions is None:
            tps = await partitions_of(consumer, topic)
        else:
            tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        first = {tp: max(begins[tp], (starts or {}).get(tp.partition, begins[tp])) for tp in tps}
        meter.begin(what or f"reading {topic}", sum(max(0, ends[tp] - first[tp]) for tp in tps))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for tp in tps:
            if first[tp] >= ends[tp]:
                continue
            consumer.seek(tp, first[tp])
            consumer.pause(*[t for t in tps if t != tp])
            consumer.resume(tp)
            position = first[tp]
            while position < ends[tp]:
                if loop.time() > deadline:
                    raise TimeoutError(f"could not read {topic} partition {tp.partition} in {timeout:.0f}s")
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=2000)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        break
                    yield record
                new_position = min(await consumer.position(tp), ends[tp])
                meter.advance(new_position - position)
                position = new_position
    finally:
        meter.end()
        await consumer.stop()
