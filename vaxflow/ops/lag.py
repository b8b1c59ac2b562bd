"""Consumer lag per group and partition, with `kafka-consumer-groups` arithmetic.

lag = log end offset - committed offset (a partition never committed counts from the log start).
The batcher commits only the lowest offset still held by an open window, so its lag includes
events that wait in windows on purpose; `held` tells those apart where the batcher reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from topics.catalogue import RAW, READY, VALID
from vaxflow.kafka_clients import admin_client
from vaxflow.settings import Settings


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    log_start: int
    log_end: int

    @property
    def lag(self) -> int:
        base = self.committed if self.committed is not None else self.log_start
        return max(0, self.log_end - base)


def pipeline_groups(settings: Settings) -> dict[str, str]:
    """vaxflow's consumer groups and the topic each reads."""
    return {
        settings.group(settings.validator_group): settings.topic(RAW.name),
        settings.group(settings.batcher_group): settings.topic(VALID.name),
        settings.group(settings.uploader_group): settings.topic(READY.name),
    }


async def group_lag(settings: Settings, groups: dict[str, str] | None = None) -> list[PartitionLag]:
    groups = groups or pipeline_groups(settings)
    admin = admin_client(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed")
    await admin.start()
    await consumer.start()
    out: list[PartitionLag] = []
    try:
        for group, topic in groups.items():
            partitions = sorted(consumer.partitions_for_topic(topic) or [])
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = sorted(consumer.partitions_for_topic(topic) or [])
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                continue
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            starts = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                out.append(PartitionLag(group, topic, tp.partition, offset, starts[tp], ends[tp]))
    finally:
        await consumer.stop()
        await admin.close()
    return out
