"""The floor under the pipeline's shape: two aiokafka stages that do no work of their own.

`relay` reads the raw topic and writes every record, cut to a valid row's size, to a scratch
topic, one Kafka transaction per poll with the input offsets in it (as the validator does, without validating,
re-keying, origin headers, replay guards or rejected records); `drain` reads the scratch topic
read_committed and commits each poll (as the batcher does, without windows or files). What these
two processes and the broker cost per event is the least any aiokafka implementation of
raw -> transactional stage -> consuming stage can cost on this machine; benchmarks/bench_pipeline.py
runs them beside the workers so the gap between the floor and vaxflow is measured, not guessed.

Run by the benchmark as `python -m benchmarks.passthrough relay|drain` with VAXFLOW_* settings.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from topics.catalogue import RAW
from workers.base.batch_send import BatchSender
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import committed_consumer, transactional_producer
from workers.base.settings import Settings

SCRATCH = "bench.passthrough"
# Each raw value is cut to the size of the row the validator would write for it (617 bytes on
# average for benchmarks/bench_pipeline.py's load), so the floor writes as many bytes as vaxflow.
ROW_BYTES = 620
RELAY_GROUP = "bench-passthrough-relay"
DRAIN_GROUP = "bench-passthrough-drain"


async def relay(settings: Settings, stop: asyncio.Event) -> None:
    group = settings.group(RELAY_GROUP)
    source, target = settings.topic(RAW.name), settings.topic(SCRATCH)
    consumer = committed_consumer(settings, source, group_id=group, max_partition_fetch_bytes=4 * 1024 * 1024)
    # The validator's producer options (workers/base/partition_producers.py): batches of up to 1 MiB.
    producer = transactional_producer(settings, f"{group}-0", linger_ms=20, max_batch_size=1024 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=settings.validator_max_batch)
            if not batch:
                continue
            # The workers' commit path (workers/base/checkpoint.py), so the floor pays what they pay.
            async with Checkpoint(producer, group_id=group) as step:
                out = step.sink(BatchSender(producer))
                for records in batch.values():
                    for rec in records:
                        value = (rec.value or b"")[:ROW_BYTES]
                        await out.add(target, value, key=rec.key or b"", timestamp_ms=rec.timestamp, headers=())
                step.consumed({tp: records[-1].offset + 1 for tp, records in batch.items()})
    finally:
        await consumer.stop()
        await producer.stop()


async def drain(settings: Settings, stop: asyncio.Event) -> None:
    consumer = committed_consumer(
        settings, settings.topic(SCRATCH), group_id=settings.group(DRAIN_GROUP), max_partition_fetch_bytes=4 * 1024 * 1024
    )
    await consumer.start()
    try:
        while not stop.is_set():
            if await consumer.getmany(timeout_ms=500, max_records=settings.validator_max_batch):
                await consumer.commit()
    finally:
        await consumer.stop()


async def main(stage: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await (relay if stage == "relay" else drain)(Settings(), stop)


if __name__ == "__main__":
    if sys.argv[1:] not in (["relay"], ["drain"]):
        raise SystemExit("usage: python -m benchmarks.passthrough relay|drain")
    asyncio.run(main(sys.argv[1]))
