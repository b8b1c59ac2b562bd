"""Changing the window length, grace and caps between two batcher runs over the same topics
(issue 16, "A configuration change never corrupts state"), against the real broker.

An operator's run had VAXFLOW_WINDOW_SECONDS=10, then 86400: the saved window indexes of 10 s were
read as days and the batcher crash-looped for ever. Here a first run (10 s windows, a grace of two
days, a cap of 15 rows) stops with windows open that have cut parts; a second run (daily windows,
3 s grace, 40 rows) reads the same topics, with more events, late ones for the first run's closed
and open windows among them. Every event must be in exactly one file, judged from the files' own
rows matched to the events sent (support.placement), and no file name may repeat.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Coroutine
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import msgspec
import pytest
from aiokafka import TopicPartition
from pipeline_support import ProcessWorker, TaskWorker, settings_env
from support.placement import SentLoad
from support.topics import ensure
from support.workers import wait_for
from test_workers_pipeline import check_placed, outcome, pipeline_settings, rejected_values

from schemas.batchfile import render_row
from schemas.filenames import parse_batch_file_name
from schemas.permissions import default_permissions
from schemas.pipeline import BatcherState, ReadyFile
from schemas.record import Record
from schemas.validate import validate_record
from topics import headers as h
from topics.catalogue import BATCHER_STATE, VALID
from vaxflow.dev.loadgen import generate, produce
from vaxflow.dev.samples import make_valid_record
from workers.base.kafka import idempotent_producer
from workers.base.settings import Settings
from workers.base.state_store import load_state
from workers.batcher.saved_state import STATE_VERSION, StateFormatError
from workers.batcher.windows import DueFile, PartitionWindows
from workers.batcher.worker import Batcher
from workers.batcher.worker import run as run_batcher
from workers.validator.worker import run as run_validator

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
PERMISSIONS = default_permissions()


def stamps(n: int, first_ms: int, span_ms: int) -> list[int]:
    """`n` ingestion times spread evenly over `span_ms` from `first_ms`."""
    return [first_ms + i * span_ms // n for i in range(n)]


async def placed(settings: Settings, load: SentLoad) -> set[int]:
    files, _ = await outcome(settings)
    return load.placed([f.content for f in files], await rejected_values(settings))


async def has_placed(settings: Settings, load: SentLoad, wanted: set[int]) -> bool:
    return wanted <= await placed(settings, load)


async def test_window_grace_and_caps_changed_between_runs_every_event_in_one_file(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    first = pipeline_settings(
        kafka_settings, tmp_path, window_seconds=10, grace_seconds=2 * 86400, max_rows_per_file=15
    )
    second = pipeline_settings(kafka_settings, tmp_path, window_seconds=86400, grace_seconds=3, max_rows_per_file=40)
    await ensure(first)
    # Three keys (vaccine type, sender), so each 10 s window holds enough events to be cut by the cap.
    generated = generate(12000, invalid_fraction=0.05, seed=16)
    top = {key for key, _ in Counter(generated.keys).most_common(3)}
    chosen = [i for i, key in enumerate(generated.keys) if key in top]
    payloads = [generated.payloads[i] for i in chosen]
    keys = [generated.keys[i] for i in chosen]
    invalid = frozenset(n for n, i in enumerate(chosen) if i in generated.invalid)
    load = SentLoad(payloads, invalid)
    n = len(payloads)
    cut = [0, 250, 500, 500 + (n - 500) // 3, 500 + 2 * (n - 500) // 3, n]
    groups = [range(cut[g], cut[g + 1]) for g in range(5)]

    now_ms = int(time.time() * 1000)
    old_ms = (now_ms - 5 * DAY_MS) // 10_000 * 10_000  # closed by the first run (end + grace is past)
    open_ms = (now_ms - DAY_MS - 3_600_000) // 10_000 * 10_000  # left open by it (end + grace is ahead)
    earlier_ms = (now_ms - 2 * DAY_MS - 3_600_000) // 10_000 * 10_000  # a day only the second run sees
    times = [
        *stamps(len(groups[0]), old_ms, 40_000),
        *stamps(len(groups[1]), open_ms, 40_000),
        *stamps(len(groups[2]), old_ms, 40_000),  # late for the first run's closed windows
        *stamps(len(groups[3]), open_ms, 40_000),  # late for the windows it left open
        *stamps(len(groups[4]), earlier_ms, 40_000),
    ]

    # --- run 1: 10 s windows, until the old windows are in files and the open ones have cut parts
    coords = await produce(first, payloads[: cut[2]], keys[: cut[2]], timestamps_ms=times[: cut[2]])
    validator = TaskWorker(run_validator, first).start()
    batcher = TaskWorker(run_batcher, first).start()
    try:
        await wait_for(partial(has_placed, first, load, set(groups[0])), 120, "the first group in files")
        await wait_for(partial(has_cut_parts_of, first, open_ms), 60, "parts cut from the open windows")
    finally:
        await batcher.close()
        await validator.close()
    files_1, _ = await outcome(first)
    held = set(groups[1]) - set(invalid) - await placed(first, load)
    print(f"\n[run 1] {len(files_1)} files; {len(held)} events of open windows still held when it stopped")
    assert held, "the first run should stop with events held in open windows"
    assert {datetime.fromisoformat(f.window_end) - datetime.fromisoformat(f.window_start) for f in files_1} == {
        timedelta(seconds=10)
    }
    states = [
        await load_state(first, first.topic(BATCHER_STATE.name), p, BatcherState) for p in range(VALID.partitions)
    ]
    assert any(s is not None and s.open_parts for s in states), "no window was open with parts at the stop"
    assert all(s is None or s.version == STATE_VERSION for s in states)

    # --- run 2: daily windows, another grace and cap, the same topics, more events (late ones too)
    coords += await produce(second, payloads[cut[2] :], keys[cut[2] :], timestamps_ms=times[cut[2] :])
    validator = TaskWorker(run_validator, second).start()
    batcher = TaskWorker(run_batcher, second).start()
    try:
        await wait_for(partial(has_placed, second, load, set(range(n))), 120, "every event in a file or rejected")
        await nothing_more(second, 6)
    finally:
        await batcher.close()
        await validator.close()

    placement = await check_placed(second, payloads, invalid, coords)
    files, _ = await outcome(second)
    first_names = {f.file_name for f in files_1}  # the ready topic has several partitions: no order
    files_2 = [f for f in files if f.file_name not in first_names]
    print(f"[run 2] {len(files_2)} files; {placement.summary()}")
    assert files_2, "the second run wrote no file"
    assert {datetime.fromisoformat(f.window_end) - datetime.fromisoformat(f.window_start) for f in files_2} == {
        timedelta(days=1)
    }
    assert all(abs(datetime.fromisoformat(f.window_start).timestamp() * 1000 - now_ms) < 7 * DAY_MS for f in files)
    # The late events of the first run's windows are in the second run's files, each named after
    # every name the first run gave its key in that day (names are seconds: window start + part).
    late = set(groups[2]) | set(groups[3])
    late_files = [f for f in files_2 if set(load.rows_of([f.content])) & late]
    assert late_files, "no late event reached a file of the second run"
    for f in files_2:
        before = [named_at(g) for g in files_1 if same_key_and_day(f, g)]
        assert all(named_at(f) > at for at in before), f"{f.file_name} is named inside the first run's names"


def named_at(f: ReadyFile) -> datetime:
    return parse_batch_file_name(f.file_name).instant


def same_key_and_day(daily: ReadyFile, f: ReadyFile) -> bool:
    start, end = datetime.fromisoformat(daily.window_start), datetime.fromisoformat(daily.window_end)
    return (f.vaccine_type, f.sender_ods) == (daily.vaccine_type, daily.sender_ods) and start <= named_at(f) < end


async def has_cut_parts_of(settings: Settings, window_ms: int) -> bool:
    """Whether a file of a window starting at or after `window_ms` exists (a part cut by the cap)."""
    files, _ = await outcome(settings)
    return any(datetime.fromisoformat(f.window_start).timestamp() * 1000 >= window_ms for f in files)


async def nothing_more(settings: Settings, seconds: float) -> None:
    """No ready file or rejection arrives for `seconds` more (the daily windows are all closed:
    the suite's own settle period would be a day)."""
    files, rejected = await outcome(settings)
    before = len(files) + len(rejected)
    await asyncio.sleep(seconds)
    files, rejected = await outcome(settings)
    assert len(files) + len(rejected) == before, "output arrived after every event was placed"


async def test_an_index_state_of_10_s_windows_is_refused_under_daily_windows_then_migrated_with_its_length(
    kafka_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A BatcherState saved before version 2 (window indexes, no length) by a run with 10 s windows:
    a batcher with daily windows refuses it with a message naming the settings (it crash-looped on
    `year 493805` before), and with VAXFLOW_BATCHER_STATE_WINDOW_SECONDS=10 it migrates it, saves
    it as times at once, and puts late events of the closed window after every name it had."""
    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=86400, grace_seconds=1)
    await ensure(settings)
    # a 10 s window at 03:00 two days ago, closed. In the morning: FLU parts have a name every other
    # second (extended-attribute files), so a closed window past noon sends late events to the next
    # day (test_workers_batcher_state_change covers that case without a broker)
    day = (int(time.time() * 1000) - 2 * DAY_MS) // DAY_MS * DAY_MS
    index = (day + 3 * 3600 * 1000) // 10_000
    old = BatcherState(partition=0, watermark=0, emitted=[], closed={"FLU|YGM41": index})
    rows = [
        render_row(msgspec.structs.replace(record, UNIQUE_ID=f"state-change-{i}")) for i, record in enumerate(valid(6))
    ]
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(BATCHER_STATE.name), msgspec.json.encode(old), key=b"0", partition=0
        )
        for i, row in enumerate(rows):  # late: inside the closed window
            await producer.send_and_wait(
                settings.topic(VALID.name), row, key=b"FLU|YGM41", partition=0,
                timestamp_ms=index * 10_000 + 1000 * i, headers=[(h.ORIGIN, f"0:{i}".encode())],
            )  # fmt: skip
    finally:
        await producer.stop()

    refused = TaskWorker(run_batcher, settings).start()
    await wait_for(lambda: refused.task is not None and refused.task.done(), 60, "the batcher to refuse the state")
    with pytest.raises(StateFormatError, match="VAXFLOW_BATCHER_STATE_WINDOW_SECONDS"):
        await refused.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "vaxflow.batcher" and r.levelname == "ERROR"]
    assert any("VAXFLOW_WINDOW_SECONDS=86400" in m and "partition 0" in m for m in logged), logged
    assert (await outcome(settings))[0] == []
    # As an operator runs it (a process, its supervisor restarting it): each attempt logs why.
    log_file = tmp_path / "batcher.log"
    process = ProcessWorker("batcher", settings_env(settings), log_file).start()
    try:
        await wait_for(lambda: len(refusals_logged(log_file)) >= 2, 90, "two refusals in the process's log")
    finally:
        process.terminate()
    [*_, last] = refusals_logged(log_file)
    print(f"\n[refused] {len(refusals_logged(log_file))} times; last log line: {last}")
    assert "VAXFLOW_BATCHER_STATE_WINDOW_SECONDS" in str(last["msg"]), last
    assert last["partition"] == 0, last
    assert (await outcome(settings))[0] == []

    told = settings.model_copy(update={"batcher_state_window_seconds": 10})
    batcher = TaskWorker(run_batcher, told).start()
    try:
        await wait_for(partial(saved_as_times, told), 60, "the migrated state saved as times")
        await wait_for(partial(rows_in_files, told, len(rows)), 60, "the late rows in a file")
    finally:
        await batcher.close()
    [file] = (await outcome(told))[0]
    assert file.rows == len(rows)
    assert datetime.fromisoformat(file.window_end) - datetime.fromisoformat(file.window_start) == timedelta(days=1)
    # named at the end of the closed 10 s window: after every name that window's run gave the key
    assert named_at(file).timestamp() == (index + 1) * 10


def refusals_logged(log_file: Path) -> list[dict[str, object]]:
    """The batcher process's JSON log lines that say it cannot read its saved state."""
    lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
    found = [json.loads(line) for line in lines if line.startswith("{")]
    return [line for line in found if "cannot read the saved batcher state" in str(line.get("msg"))]


def valid(n: int) -> list[Record]:
    out = []
    for i in range(n):
        record = validate_record("FLU", "YGM41", make_valid_record(random.Random(i), "FLU"), permissions=PERMISSIONS)
        assert isinstance(record, Record), record
        out.append(record)
    return out


async def saved_as_times(settings: Settings) -> bool:
    state = await load_state(settings, settings.topic(BATCHER_STATE.name), 0, BatcherState)
    return state is not None and state.version == STATE_VERSION and state.window_ms == 86_400_000


async def rows_in_files(settings: Settings, n: int) -> bool:
    return sum(f.rows for f in (await outcome(settings))[0]) >= n


async def test_a_failure_after_a_partitions_files_are_due_leaves_no_emit_unawaited(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's log had "coroutine 'Batcher.emit' was never awaited": the loop made each
    partition's emit coroutine as it went, and a later partition's failure left the earlier ones
    unawaited. Here partition 0's window is due and then the next partition's window check fails
    in the same poll: the batcher must fail with that error, every emit it made awaited."""
    settings = pipeline_settings(kafka_settings, tmp_path, window_seconds=2, grace_seconds=0)
    await ensure(settings)
    [row] = [render_row(msgspec.structs.replace(r, UNIQUE_ID="unawaited-0")) for r in valid(1)]
    producer = idempotent_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(VALID.name), row, key=b"FLU|YGM41", partition=0,
            timestamp_ms=int(time.time() * 1000) - 3_600_000, headers=[(h.ORIGIN, b"0:0")],
        )  # fmt: skip
    finally:
        await producer.stop()

    made: list[int] = []
    awaited: list[int] = []
    emit, due = Batcher.emit, PartitionWindows.due
    files_due = asyncio.Event()

    def counted_emit(self: Batcher, tp: TopicPartition, files: list[DueFile]) -> Coroutine[None, None, None]:
        made.append(tp.partition)

        async def run() -> None:
            awaited.append(tp.partition)
            await emit(self, tp, files)

        return run()

    def failing_due(self: PartitionWindows, wall_ms: int) -> list[DueFile]:
        out = due(self, wall_ms)
        if out:
            files_due.set()
        elif files_due.is_set():
            raise ValueError("injected after another partition's files were due")
        return out

    monkeypatch.setattr(Batcher, "emit", counted_emit)
    monkeypatch.setattr(PartitionWindows, "due", failing_due)
    batcher = TaskWorker(run_batcher, settings).start()
    await wait_for(lambda: batcher.task is not None and batcher.task.done(), 60, "the injected failure")
    with pytest.raises(ValueError, match="injected"):
        await batcher.close()
    assert files_due.is_set()
    assert made == awaited
