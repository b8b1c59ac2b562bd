"""Helpers for the ops tests: pipeline settings, workers as tasks, waiting on group offsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from support.settings import scoped_settings

from vaxflow.ops.lag import group_lag
from workers.base.kafka import admin, offsets_probe, refresh_metadata
from workers.base.settings import Settings

# Short windows and lag samples, so that files, lag and its verdicts change within seconds.
_OPS_DEFAULTS: dict[str, Any] = {
    "window_seconds": 2,
    "grace_seconds": 1,
    "max_rows_per_file": 200,
    "ops_sample_seconds": 1.0,
    "ops_window_samples": 5,
}


def ops_settings(base: Settings, tmp_path: Path, **overrides: Any) -> Settings:
    return scoped_settings(base, tmp_path, _OPS_DEFAULTS, overrides)


async def offsets(settings: Settings, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed, log end) per partition (committed -1 when none)."""
    consumer = offsets_probe(settings)
    await consumer.start()
    try:
        await refresh_metadata(consumer)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        async with admin(settings) as client:
            committed = await client.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
        return (
            {tp.partition: (committed[tp].offset if tp in committed else -1) for tp in tps},
            {tp.partition: ends[tp] for tp in tps},
        )
    finally:
        await consumer.stop()


async def caught_up(settings: Settings, group: str, topic: str) -> bool:
    """No committed record waits after the group's committed offsets (markers may trail the data)."""
    rows = await group_lag(settings, {group: topic})
    return bool(rows) and all(not r.pending for r in rows)
