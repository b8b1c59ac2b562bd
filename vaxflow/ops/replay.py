"""`vaxflow replay`: move a consumer group's offsets back (or to a point in time), safely.

Like `kafka-consumer-groups --reset-offsets`, with vaxflow's guarantees kept:

- dry run by default: per partition, current -> target, how many records the group will read
  again and how many of them its replay guard will skip;
- refused while the group has live members (the members would overwrite the reset with their
  next commit, and a worker that is running has its guard state loaded already);
- refused when the target is ahead of the committed offset over records the group has not
  processed yet: that would lose events, not replay them;
- the replay guards mean a replay never sends anything twice (docs/architecture.md, "Exactly once"; decision 0010):
  validator: raw records below `ValidatorState.processed_upto` are skipped;
  batcher: valid records below `BatcherState.watermark` or in its emitted ranges are skipped;
  uploader: files whose name is in the sent ledger are skipped.
  The plan counts those, and for the validator and the batcher also how many of the skipped
  events are in files already recorded as sent.

`--resend` is the deliberate exception: events are processed and sent again.

- validator: a ValidatorState with `processed_upto` lowered to the target is written, so the
  records are validated again; their valid copies are new valid-topic offsets, which the batcher
  has never seen, so they go into new files (the batcher's late rule puts them in windows after the
  ones it has closed, hence under names never used) and are sent.
- batcher: a BatcherState with the watermark lowered to the target and the emitted ranges above
  it dropped is written; window bookkeeping (closed windows, parts) is kept, so the events go into
  files under new names (never a name already used), which are sent.
- uploader: files in the range that are in the sent ledger are re-sent one by one as
  `vaxflow resend` does (new name, `resend_of`), because the same name would be refused by both
  the ledger and NHS England.
docs/decisions/0009-replay-redrive-resend.md has the reasoning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from aiokafka import TopicPartition

from schemas.extended import is_extended_file_name
from schemas.pipeline import BatcherState, SentReceipt, ValidatorState, decode_origin
from topics import headers as h
from topics.catalogue import BATCHER_STATE, SENT, VALIDATOR_STATE
from vaxflow.ops import ledger as ops_ledger
from vaxflow.ops.lag import GroupMembers, coordinator_call, describe_group, pipeline_groups
from vaxflow.ops.resend import ResendError, execute_resend, plan_resend
from vaxflow.ops.scan import Meter, stream
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import admin, group_committer, offsets_probe, partitions_of
from workers.base.ledger import SentLedger
from workers.base.settings import Settings
from workers.base.state_store import load_state
from workers.batcher.windows import ReplayGuard

_ENCODE = msgspec.json.Encoder()
_RECEIPT = msgspec.json.Decoder(SentReceipt)
# Counting which skipped events are in sent files keeps their origins in memory; past this many the
# plan says "not counted" rather than take the operator's memory.
MAX_ORIGINS_TRACKED = 5_000_000


class ReplayRefused(RuntimeError):
    """The reset would be unsafe now; the message says why and what to do."""


@dataclass(slots=True)
class PartitionPlan:
    partition: int
    current: int | None
    target: int
    log_start: int
    log_end: int
    records: int = 0
    """Committed records from the target to the log end: what the group will read."""
    skipped: int = 0
    """Of those, what the replay guard skips (already validated / already in files / file already sent)."""
    skipped_rows: int = 0
    """Uploader: events in the files skipped as sent."""
    unprocessed_skip: int = 0
    """Records between the committed offset and a target ahead of it that were never processed."""
    resend_files: list[str] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return self.target - (self.current if self.current is not None else self.log_start)


@dataclass(slots=True)
class ReplayPlan:
    group: str
    topic: str
    kind: str
    members: GroupMembers
    resend: bool
    partitions: list[PartitionPlan]
    already_sent: int | None = None
    """Validator/batcher: skipped events whose origins are in files recorded as sent (None: not counted)."""
    notes: list[str] = field(default_factory=list)
    executed: bool = False
    resent: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def skipped(self) -> int:
        return sum(p.skipped for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "topic": self.topic,
            "kind": self.kind,
            "group_state": self.members.state,
            "active_members": self.members.members,
            "resend": self.resend,
            "executed": self.executed,
            "records_to_read": self.records,
            "skipped_by_guard": self.skipped,
            "skipped_already_sent": self.already_sent,
            "partitions": [
                {
                    "partition": p.partition,
                    "current": p.current,
                    "target": p.target,
                    "moved": p.moved,
                    "log_start": p.log_start,
                    "log_end": p.log_end,
                    "records_to_read": p.records,
                    "skipped_by_guard": p.skipped,
                    "skipped_rows": p.skipped_rows,
                    "never_processed_skipped": p.unprocessed_skip,
                    "files_to_resend": len(p.resend_files),
                }
                for p in self.partitions
            ],
            "resent": self.resent,
            "notes": self.notes,
        }


def resolve_group(settings: Settings, group: str, topic: str | None) -> tuple[str, str, str]:
    """(group id, topic, kind). Short names validator/batcher/uploader and un-namespaced ids work."""
    known = {
        "validator": settings.validator_group,
        "batcher": settings.batcher_group,
        "uploader": settings.uploader_group,
    }
    groups = pipeline_groups(settings)
    for kind, base in known.items():
        if group in (kind, base, settings.group(base)):
            gid = settings.group(base)
            return gid, topic or groups[gid], kind
    if topic is None:
        raise ReplayRefused(f"{group} is not one of vaxflow's groups: say which topic it reads (--topic)")
    return group, settings.topic(topic) if not topic.startswith(f"{settings.topic_namespace}.") else topic, "other"


def parse_datetime(value: str) -> datetime:
    """ISO 8601 with a time zone ('Z' allowed); a naive time is refused: guessing could move an
    operator's replay by an hour (the same reason schemas.filenames refuses naive instants)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ReplayRefused(f"--to-datetime {value!r}: not an ISO 8601 date-time") from exc
    if parsed.utcoffset() is None:
        raise ReplayRefused(f"--to-datetime {value!r}: give a time zone (e.g. 2025-01-31T09:00:00Z or +00:00)")
    return parsed


class _Guard:
    """The replay guard of one partition, as the worker will apply it after the reset."""

    def __init__(self, kind: str, validator: ValidatorState | None, batcher: BatcherState | None,
                 sent: set[str], resend: bool, target: int) -> None:
        self.kind = kind
        self.sent = sent
        self.processed_upto = 0
        self.batcher = ReplayGuard()
        self.original_batcher = batcher
        self.original_validator = validator
        if validator is not None:
            self.processed_upto = min(validator.processed_upto, target) if resend else validator.processed_upto
        if batcher is not None:
            self.batcher = lowered_guard(batcher, target) if resend else ReplayGuard(
                batcher.watermark, [(a, b) for a, b in batcher.emitted])

    def skips(self, offset: int, key: bytes | None) -> bool:
        if self.kind == "validator":
            return offset < self.processed_upto
        if self.kind == "batcher":
            return self.batcher.already_emitted(offset)
        if self.kind == "uploader":
            return key is not None and key.decode("utf-8", "replace") in self.sent
        return False


def lowered_guard(state: BatcherState, target: int) -> ReplayGuard:
    """The batcher's guard with everything at or above `target` no longer counted as in files."""
    watermark = min(state.watermark, target)
    emitted = [(a, min(b, target - 1)) for a, b in state.emitted if a < target]
    return ReplayGuard(watermark, emitted)


async def plan_replay(
    settings: Settings,
    group: str,
    *,
    to_datetime: str | None = None,
    to_offset: int | None = None,
    topic: str | None = None,
    resend: bool = False,
    meter: Meter | None = None,
) -> ReplayPlan:
    if (to_datetime is None) == (to_offset is None):
        raise ReplayRefused("give exactly one of --to-datetime and --to-offset")
    gid, topic_name, kind = resolve_group(settings, group, topic)
    if resend and kind == "other":
        raise ReplayRefused("--resend applies to vaxflow's validator, batcher and uploader groups only")
    when = parse_datetime(to_datetime) if to_datetime is not None else None
    consumer = offsets_probe(settings)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic_name)
        if not tps:
            raise ReplayRefused(f"topic {topic_name} does not exist")
        async with admin(settings) as client:
            members = await coordinator_call(lambda: describe_group(client, gid))
            committed = await coordinator_call(lambda: client.list_consumer_group_offsets(gid, partitions=tps))
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        if when is not None:
            found = await consumer.offsets_for_times({tp: int(when.timestamp() * 1000) for tp in tps})
            targets = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
        else:
            assert to_offset is not None
            targets = {tp: min(max(to_offset, starts[tp]), ends[tp]) for tp in tps}
    finally:
        await consumer.stop()

    rows: list[PartitionPlan] = []
    for tp in tps:
        meta = committed.get(tp)
        current = meta.offset if meta is not None and meta.offset >= 0 else None
        rows.append(PartitionPlan(tp.partition, current, targets[tp], starts[tp], ends[tp]))
    plan = ReplayPlan(gid, topic_name, kind, members, resend, rows)
    await _count(settings, plan, meter)
    if members.active:
        plan.notes.append(
            f"group has {members.members} live member(s) (state {members.state}): stop its workers before --execute"
        )
    if any(p.unprocessed_skip for p in rows):
        plan.notes.append("the target is ahead of the committed offset over records never processed: refused")
    return plan


async def _states(settings: Settings, kind: str, partitions: list[int]) -> tuple[dict[int, Any], set[str]]:
    states: dict[int, Any] = {}
    sent: set[str] = set()
    if kind == "validator":
        for p in partitions:
            states[p] = await load_state(settings, settings.topic(VALIDATOR_STATE.name), p, ValidatorState)
    elif kind == "batcher":
        for p in partitions:
            states[p] = await load_state(settings, settings.topic(BATCHER_STATE.name), p, BatcherState)
    elif kind == "uploader":
        async with SentLedger(settings, keep_origins=False) as ledger:
            await ledger.catch_up()
            sent = {r.file_name for r in ledger}
    return states, sent


async def _count(settings: Settings, plan: ReplayPlan, meter: Meter | None) -> None:
    """Read the range each partition will be replayed over and classify every record."""
    states, sent = await _states(settings, plan.kind, [p.partition for p in plan.partitions])
    skipped_origins: set[tuple[int, int]] = set()
    track = plan.kind in ("validator", "batcher")
    for row in plan.partitions:
        current = row.current if row.current is not None else row.log_start
        start = min(current, row.target)
        if start >= row.log_end:
            continue
        state = states.get(row.partition)
        guard = _Guard(
            plan.kind,
            state if isinstance(state, ValidatorState) else None,
            state if isinstance(state, BatcherState) else None,
            sent, plan.resend, row.target,
        )
        async for record in stream(
            settings, plan.topic, starts={row.partition: start}, partitions=[row.partition], meter=meter,
            what=f"{plan.topic}[{row.partition}]", fetch_bytes=48 * 1024 * 1024 if plan.kind == "uploader" else 8 << 20,
        ):
            # the uploader's guard is the file name, in the value: ready records are keyed by batch key
            key = _file_name(record.value).encode() if plan.kind == "uploader" else record.key
            if record.offset < row.target:
                if not _processed_before(guard, record.offset, key):
                    row.unprocessed_skip += 1
                continue
            row.records += 1
            if plan.kind == "uploader":
                name = (key or b"").decode("utf-8", "replace")
                if name in sent:
                    if plan.resend:
                        row.resend_files.append(name)
                    else:
                        row.skipped += 1
                        row.skipped_rows += _rows(record.value)
                continue
            if guard.skips(record.offset, record.key):
                row.skipped += 1
                if track and len(skipped_origins) < MAX_ORIGINS_TRACKED:
                    origin = h.header(record.headers, h.ORIGIN)
                    skipped_origins.add(decode_origin(origin) if origin else (record.partition, record.offset))
    if track:
        if plan.skipped > MAX_ORIGINS_TRACKED:
            plan.notes.append(f"more than {MAX_ORIGINS_TRACKED} events skipped: how many were sent is not counted")
        else:
            plan.already_sent = await _count_sent(settings, skipped_origins)


def _processed_before(guard: _Guard, offset: int, key: bytes | None) -> bool:
    """Whether a record the reset would jump over had been processed (so skipping it loses nothing)."""
    if guard.kind == "validator":
        state = guard.original_validator
        return state is not None and offset < state.processed_upto
    if guard.kind == "batcher":
        state_b = guard.original_batcher
        return state_b is not None and ReplayGuard(state_b.watermark, list(state_b.emitted)).already_emitted(offset)
    if guard.kind == "uploader":
        return guard.skips(offset, key)
    return False


class _ReadySummary(msgspec.Struct):
    """What a replay plan reads of a ready record (the rest, content included, is skipped)."""

    file_name: str = ""
    rows: int = 0


def _summary(value: bytes | None) -> _ReadySummary:
    try:
        return msgspec.json.decode(value or b"{}", type=_ReadySummary)
    except msgspec.DecodeError:
        return _ReadySummary()


def _rows(value: bytes | None) -> int:
    return _summary(value).rows


def _file_name(value: bytes | None) -> str:
    return _summary(value).file_name


async def _count_sent(settings: Settings, origins: set[tuple[int, int]]) -> int:
    """How many of `origins` are in files the sent ledger records (streamed: the ledger is large)."""
    if not origins:
        return 0
    seen: set[str] = set()
    found = 0
    async for record in stream(settings, settings.topic(SENT.name), what="reading the sent ledger"):
        if record.value is None or record.key is None:
            continue
        try:
            receipt = _RECEIPT.decode(record.value)
        except msgspec.DecodeError:
            continue
        # an extended-attribute file repeats the origins of the vaccination file beside it
        if receipt.file_name in seen or is_extended_file_name(receipt.file_name):
            continue
        seen.add(receipt.file_name)
        found += sum(1 for o in receipt.origins if (o[0], o[1]) in origins)
    return found


async def execute_replay(settings: Settings, plan: ReplayPlan, *, meter: Meter | None = None) -> ReplayPlan:
    """Apply a plan made by plan_replay, after checking again that the group is idle."""
    async with admin(settings) as client:
        members = await coordinator_call(lambda: describe_group(client, plan.group))
    if members.active:
        raise ReplayRefused(
            f"group {plan.group} has {members.members} live member(s) (state {members.state}); "
            "stop its workers first: a running member would overwrite the reset with its next commit"
        )
    if any(p.unprocessed_skip for p in plan.partitions):
        raise ReplayRefused(
            "the target is ahead of the committed offset over "
            f"{sum(p.unprocessed_skip for p in plan.partitions)} records never processed: they would be lost"
        )
    if plan.resend:
        await _lower_guards(settings, plan, meter)
    consumer = group_committer(settings, plan.group)
    await consumer.start()
    try:
        tps = [TopicPartition(plan.topic, p.partition) for p in plan.partitions]
        consumer.assign(tps)
        await consumer.commit({TopicPartition(plan.topic, p.partition): p.target for p in plan.partitions})
    finally:
        await consumer.stop()
    plan.executed = True
    return plan


async def _lower_guards(settings: Settings, plan: ReplayPlan, meter: Meter | None) -> None:
    """--resend: write guard states that let the records be processed again (module docstring)."""
    if plan.kind == "uploader":
        for row in plan.partitions:
            in_range = set(row.resend_files)
            with_their_pair: set[str] = set()  # attribute files re-sent beside their vaccination file
            for name in row.resend_files:
                if name in with_their_pair:
                    continue
                try:
                    resend_plan = await plan_resend(settings, name, meter=meter)
                    if resend_plan.extended_sent in in_range:  # keep the pair on one slot (decision 0020)
                        resend_plan = await plan_resend(settings, name, with_extended=True, meter=meter)
                except ResendError as exc:
                    plan.notes.append(f"{name}: not re-sent: {exc}")
                    continue
                await execute_resend(settings, resend_plan, purpose="replay")
                plan.resent += [f.file_name for f in resend_plan.files]
                if resend_plan.extended is not None and resend_plan.extended_sent is not None:
                    with_their_pair.add(resend_plan.extended_sent)
        return
    state_topic = settings.topic((VALIDATOR_STATE if plan.kind == "validator" else BATCHER_STATE).name)
    kind = ValidatorState if plan.kind == "validator" else BatcherState
    producer = ops_ledger.ops_producer(settings, "replay")
    await producer.start()
    try:
        async with Checkpoint(producer) as step:
            entries = []
            for row in plan.partitions:
                state = await load_state(settings, state_topic, row.partition, kind)
                new: ValidatorState | BatcherState | None = None
                if isinstance(state, ValidatorState) and state.processed_upto > row.target:
                    new = ValidatorState(partition=row.partition, processed_upto=row.target)
                elif isinstance(state, BatcherState):
                    guard = lowered_guard(state, row.target)
                    if guard.watermark != state.watermark or guard.emitted != [tuple(r) for r in state.emitted]:
                        new = msgspec.structs.replace(state, watermark=guard.watermark, emitted=guard.emitted)
                if new is None:
                    continue
                step.state(state_topic, _ENCODE.encode(new), key=str(row.partition).encode(), partition=row.partition)
                entries.append(ops_ledger.new_entry(
                    kind="replay-resend",
                    source=f"replay:{plan.group}:{row.partition}:{row.target}:{time.time():.0f}",
                    target_topic=state_topic,
                ))
            ops_ledger.record(step, settings, entries)
    finally:
        await producer.stop()
