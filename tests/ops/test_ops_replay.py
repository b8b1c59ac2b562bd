"""`vaxflow replay` against the real broker: dry run, refusal while the group is live, execute
without duplicates (the replay guards), and --resend as the deliberate way to process again."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import msgspec
import pytest
from ops_support import caught_up, offsets, ops_settings
from pipeline_support import read_all
from prometheus_client import REGISTRY
from support.topics import ensure
from support.workers import running, wait_for

from schemas.pipeline import ReadyFile
from topics.catalogue import RAW, READY, REJECTED, VALID
from vaxflow.dev.loadgen import generate, produce
from vaxflow.ops.replay import ReplayRefused, execute_replay, plan_replay
from workers.base.settings import Settings
from workers.batcher import worker as batcher
from workers.validator import worker as validator

pytestmark = pytest.mark.integration

_READY = msgspec.json.Decoder(ReadyFile)


async def files(settings: Settings) -> list[ReadyFile]:
    return [_READY.decode(r.value or b"") for r in await read_all(settings, settings.topic(READY.name))]


async def placed(settings: Settings, total: int) -> bool:
    rejected = await read_all(settings, settings.topic(REJECTED.name))
    return sum(f.rows for f in await files(settings)) + len(rejected) >= total


async def settled_pipeline(
    kafka_settings: Settings, tmp_path: Path, seed: int
) -> tuple[Settings, list[tuple[int, int]], frozenset[int]]:
    """600 events through validator and batcher, workers stopped: (settings, origins, invalid indexes)."""
    settings = ops_settings(kafka_settings, tmp_path)
    await ensure(settings)
    load = generate(600, invalid_fraction=0.05, seed=seed)
    coords = await produce(settings, load.payloads, load.keys)
    async with running(validator.run, settings), running(batcher.run, settings):
        await wait_for(partial(placed, settings, len(coords)), 120, "every event in a file or rejected")
    return settings, coords, load.invalid


async def test_replay_dry_run_refusal_execute_and_resend(kafka_settings: Settings, tmp_path: Path) -> None:
    settings, coords, invalid = await settled_pipeline(kafka_settings, tmp_path, 21)
    raw, valid = settings.topic(RAW.name), settings.topic(VALID.name)
    vgroup, bgroup = settings.group(settings.validator_group), settings.group(settings.batcher_group)
    before_files = await files(settings)
    before_valid = len(await read_all(settings, valid))
    committed, ends = await offsets(settings, vgroup, raw)
    assert committed == ends

    # dry run: everything would be read again, and everything skipped by the guard
    plan = await plan_replay(settings, "validator", to_offset=0)
    assert not plan.executed
    assert plan.records == len(coords) == plan.skipped
    assert [(p.current, p.target) for p in plan.partitions] == [(ends[p], 0) for p in sorted(ends)]
    assert (await offsets(settings, vgroup, raw))[0] == committed, "a dry run must not move offsets"

    # refused while a member is live
    async with running(validator.run, settings):
        await wait_for(partial(_has_members, settings, vgroup), 30, "validator joined")
        with pytest.raises(ReplayRefused, match="live member"):
            await execute_replay(settings, await plan_replay(settings, "validator", to_offset=0))

    # batcher to a datetime before everything: every valid record is already in a file
    bplan = await plan_replay(settings, bgroup, to_datetime="2000-01-01T00:00:00Z")
    assert bplan.records == before_valid == bplan.skipped
    await execute_replay(settings, bplan)
    skipped_before = _skipped()
    async with running(batcher.run, settings):
        await wait_for(partial(_skipped_reached, skipped_before + before_valid), 60, "batcher re-read the valid topic")
    assert len(await files(settings)) == len(before_files), "a replay without --resend made new files"

    # --resend on the validator: the guard is lowered, events are validated and batched again,
    # into files under names never used before
    rplan = await plan_replay(settings, "validator", to_offset=0, resend=True)
    assert rplan.skipped == 0
    assert rplan.records == len(coords)
    await execute_replay(settings, rplan)
    async with running(validator.run, settings), running(batcher.run, settings):
        await wait_for(partial(placed, settings, 2 * len(coords)), 120, "every event placed a second time")
    after = await files(settings)
    names = Counter(f.file_name for f in after)
    assert all(n == 1 for n in names.values()), "a file name was used twice"
    in_files = Counter(tuple(o) for f in after for o in f.origins)
    valid_origins = {coords[i] for i in range(len(coords)) if i not in invalid}
    assert set(in_files) == valid_origins
    assert set(in_files.values()) == {2}, "--resend should have put every valid event in a second file"

    # --resend on the batcher: its guard is lowered, every valid record goes into a file once more,
    # under a name never used (the batcher keeps its closed windows)
    valid_now = len(await read_all(settings, valid))
    bres = await plan_replay(settings, "batcher", to_offset=0, resend=True)
    assert bres.skipped == 0
    assert bres.records == valid_now
    await execute_replay(settings, bres)
    async with running(batcher.run, settings):
        await wait_for(partial(_rows_in_files, settings, 2 * valid_now), 120, "the valid topic batched again")
    again = await files(settings)
    assert all(n == 1 for n in Counter(f.file_name for f in again).values()), "a file name was used twice"
    assert set(Counter(tuple(o) for f in again for o in f.origins).values()) == {4}


async def _rows_in_files(settings: Settings, rows: int) -> bool:
    return sum(f.rows for f in await files(settings)) >= rows


async def test_validator_replay_forwards_nothing_twice(kafka_settings: Settings, tmp_path: Path) -> None:
    settings, _coords, _invalid = await settled_pipeline(kafka_settings, tmp_path, 22)
    raw, valid = settings.topic(RAW.name), settings.topic(VALID.name)
    vgroup = settings.group(settings.validator_group)
    before_valid = len(await read_all(settings, valid))
    before_rejected = len(await read_all(settings, settings.topic(REJECTED.name)))
    await execute_replay(settings, await plan_replay(settings, "validator", to_offset=0))
    assert set((await offsets(settings, vgroup, raw))[0].values()) == {0}
    async with running(validator.run, settings):
        await wait_for(partial(caught_up, settings, vgroup, raw), 60, "validator re-read the raw topic")
    assert len(await read_all(settings, valid)) == before_valid, "the validator forwarded events twice"
    assert len(await read_all(settings, settings.topic(REJECTED.name))) == before_rejected


async def _has_members(settings: Settings, group: str) -> bool:
    from vaxflow.ops.lag import describe_group
    from workers.base.kafka import admin

    async with admin(settings) as client:
        return (await describe_group(client, group)).active


def _skipped() -> float:
    """The batcher's own count of records its guard skipped (it runs in this process)."""
    return REGISTRY.get_sample_value("vaxflow_batcher_replay_skipped_total") or 0.0


async def _skipped_reached(target: float) -> bool:
    return _skipped() >= target
