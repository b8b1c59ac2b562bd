"""Helpers for the ops tests: pipeline settings, workers as tasks, waiting on group offsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from vaxflow.ops.lag import group_lag
from workers.base.kafka import admin_client
from workers.base.settings import Settings


def ops_settings(base: Settings, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "window_seconds": 2,
        "grace_seconds": 1,
        "max_rows_per_file": 200,
        "archive_dir": tmp_path / "archive",
        "dev_home": tmp_path,
        "ops_sample_seconds": 1.0,
        "ops_window_samples": 5,
    }
    values.update(overrides)
    return base.model_copy(update=values)


async def offsets(settings: Settings, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed, log end) per partition (committed -1 when none)."""
    admin = admin_client(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
        return (
            {tp.partition: (committed[tp].offset if tp in committed else -1) for tp in tps},
            {tp.partition: ends[tp] for tp in tps},
        )
    finally:
        await consumer.stop()
        await admin.close()


async def caught_up(settings: Settings, group: str, topic: str) -> bool:
    """No committed record waits after the group's committed offsets (markers may trail the data)."""
    rows = await group_lag(settings, {group: topic})
    return bool(rows) and all(not r.pending for r in rows)
