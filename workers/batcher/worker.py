"""The batcher: valid events -> one ReadyFile record per file, exactly once.

The commit order lives here and only here (style examples: one module owns it):
  1. the file is rendered and written to the archive (durable, atomic, 0600);
  2. in ONE Kafka transaction on the partition's own transactional producer:
     the ReadyFile records, the partition's BatcherState (replay guard), and the consumer offset
     = the lowest offset still held by an open window of that partition;
  3. commit. Any failure before the commit aborts it and the process exits: on restart the
     partition is re-read from the committed offset and the guard skips what is already in files.
Nothing is committed past an event that is only in memory, so a crash loses nothing; the guard
and the deterministic names mean a re-run never yields a second file for the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge

from schemas.batchfile import assemble_file, render_row
from schemas.batchkey import decode_key, encode_key, local_id_for
from schemas.dialect import Dialect
from schemas.event import ValidEvent
from schemas.extended import assemble_extended, extended_file_name, extended_name_second, is_extended_file_name
from schemas.filenames import part_file_name
from schemas.pipeline import BatcherState, OffsetRange, Origin, ReadyFile, decode_origin, encode_origin
from schemas.record import Reason
from topics import headers as h
from topics.catalogue import BATCHER_IDENTITIES, BATCHER_STATE, READY, REJECTED, VALID
from workers.base.batch_send import BatchSender
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import committed_consumer
from workers.base.partition_producers import PartitionProducers, PartitionState, rewind
from workers.base.private_files import write_private
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.base.state_store import load_states
from workers.batcher.archive import archive_path
from workers.batcher.gauges import HELD_GAUGE, KEY_HELD_GAUGE, KEY_OPEN_GAUGE, OPEN_GAUGE
from workers.batcher.identities import DUPLICATE, Entry, IdentityTable, Refusal
from workers.batcher.identity_log import restore_all
from workers.batcher.saved_state import STATE_VERSION, StateFormatError, bookkeeping
from workers.batcher.windows import DueFile, PartitionWindows, ReplayGuard, offsets_to_ranges

log = logging.getLogger("vaxflow.batcher")

FILES = Counter("vaxflow_batcher_files_total", "Files produced", ["vaccine_type"])
EXTENDED_FILES = Counter(
    "vaxflow_batcher_extended_files_total", "Extended-attribute files produced (beside a vaccination file)",
    ["vaccine_type"],
)
EXTENDED_ROWS = Counter("vaxflow_batcher_extended_rows_total", "Extended-attribute rows written", ["vaccine_type"])
ROWS = Counter("vaxflow_batcher_rows_total", "Rows written into files", ["vaccine_type"])
BYTES = Counter("vaxflow_batcher_bytes_total", "Bytes of file content produced", ["vaccine_type"])
SKIPPED = Counter("vaxflow_batcher_replay_skipped_total", "Events skipped as already in a file")
HELD = Gauge(HELD_GAUGE, "Events held in open windows", ["partition"])
OPEN = Gauge(OPEN_GAUGE, "Open windows", ["partition"])
KEY_OPEN = Gauge(KEY_OPEN_GAUGE, "Open windows per key", ["partition", "vaccine_type", "sender_ods"])
KEY_HELD = Gauge(KEY_HELD_GAUGE, "Events held per key", ["partition", "vaccine_type", "sender_ods"])
POISON = Counter("vaxflow_batcher_poison_total", "Undecodable valid records sent to the rejected topic")
# The reason rule of a valid record the batcher cannot place (on the rejected topic, stage "batch").
UNDECODABLE = "valid.undecodable"
REPEATS = Counter(
    "vaxflow_batcher_repeats_total", "Events refused as a repeat of a remembered identity", ["rule"]
)
IDENTITIES = Gauge("vaxflow_batcher_identities", "Identities remembered (dedupe horizon)", ["partition"])
IDENTITY_BYTES = Gauge("vaxflow_batcher_identity_bytes", "Memory held by the identity tables", ["partition"])

_LEGACY = msgspec.json.Decoder(ValidEvent)
_ENCODE = msgspec.json.Encoder()
# How long a partition read to its end must go without records before the wall clock may close its
# windows (or the grace period, if longer): longer than the validator's usual gap between commits.
IDLE_BEFORE_WALL_CLOCK_MS = 1000
# Identity-table slots looked at per partition per poll for expired identities: a ten-million table
# is swept in minutes, a few milliseconds at a time.
EXPIRE_SLOTS_PER_POLL = 50_000


@dataclass(frozen=True, slots=True)
class Poison:
    """A valid record that is neither a file row nor a v3 ValidEvent with a usable envelope.

    `message` says why without record values (msgspec's messages name paths, not values; the
    others are fixed texts), as it goes into a header and a log line.
    """

    record: ConsumerRecord[bytes, bytes]
    exc_class: str
    message: str


class PoisonError(ValueError):
    """A valid record's own fault, with a reason that holds no record values."""


def _why(exc: Exception) -> str:
    if isinstance(exc, msgspec.DecodeError):
        return f"v3 ValidEvent JSON: {exc}"[:500]
    if isinstance(exc, UnicodeError):
        return "text is not valid UTF-8"
    return str(exc)[:500] if isinstance(exc, PoisonError) else "valid record could not be decoded"


@dataclass(frozen=True, slots=True)
class Repeat:
    """A valid record refused because its identity is remembered (identities.IdentityTable.judge)."""

    record: ConsumerRecord[bytes, bytes]
    refusal: Refusal
    sender_ods: str


def _valid_row(rec: ConsumerRecord[bytes, bytes]) -> tuple[str, str, bytes, bytes]:
    """(vaccine type, sender, file row, extended-attribute lines) of a valid record;
    ValueError/DecodeError when it is none.

    Catalogue v4 records are the row itself (docs/decisions/0011-valid-topic-rows.md); a v3 record
    (a ValidEvent as JSON, still in the topic after an upgrade) is rendered here instead.
    The envelope of a v3 record is checked here, as the key of a v4 record is: one that is not a
    canonical batch key would otherwise fail only when its window's file is named, inside the
    transaction, and crash-loop the batcher on the same record (issue 16).
    """
    value = rec.value or b""
    if value[:1] == b'"' and value[-1:] == b'"':
        try:
            vaccine_type, sender_ods = decode_key(rec.key)
        except ValueError:
            raise PoisonError("file row without a canonical VACCINE_TYPE|SENDER_ODS key") from None
        return vaccine_type, sender_ods, value, h.header(rec.headers, h.EXTENDED) or b""
    if value[:1] == b"{":
        event = _LEGACY.decode(value)
        try:
            vaccine_type, sender_ods = decode_key(encode_key(event.vaccine_type.upper(), event.sender_ods.upper()))
        except ValueError:
            raise PoisonError("v3 ValidEvent whose vaccine_type/sender_ods is not a batch key") from None
        return vaccine_type, sender_ods, render_row(event.record), b""  # v3 records predate attributes
    raise PoisonError("valid record is neither a file row nor a ValidEvent")


class Batcher(PartitionState):
    """Per-process state: the windows of the partitions this instance owns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.group = settings.group(settings.batcher_group)
        self.valid_topic = settings.topic(VALID.name)
        self.ready_topic = settings.topic(READY.name)
        self.state_topic = settings.topic(BATCHER_STATE.name)
        self.rejected_topic = settings.topic(REJECTED.name)
        self.dialect = Dialect(line_ending="CRLF" if settings.line_ending == "crlf" else "LF")
        self.archive = settings.archive_dir or settings.dev_home / "archive"
        self.partitions: dict[TopicPartition, PartitionWindows] = {}
        self.poison: dict[TopicPartition, list[Poison]] = {}
        self.identities_topic = settings.topic(BATCHER_IDENTITIES.name)
        self.horizon_ms = settings.dedupe_horizon_days * 86_400_000
        self.identities: dict[TopicPartition, IdentityTable] = {}
        # Identities remembered since the partition's last transaction, written with the next one.
        self.remembered: dict[TopicPartition, list[Entry]] = {}
        self.repeats: dict[TopicPartition, list[Repeat]] = {}
        self.producers = PartitionProducers(
            settings, prefix=self.group, state=self,
            max_request_size=2 * settings.max_bytes_per_file + 4 * 1024 * 1024,
        )
        self.key_labels: set[tuple[str, str, str]] = set()
        # Wall-clock ms of each partition's last poll that brought records (see clock_for).
        self.records_at: dict[TopicPartition, int] = {}
        self.idle_ms = max(IDLE_BEFORE_WALL_CLOCK_MS, settings.grace_seconds * 1000)
        # Partitions whose state was loaded in an older format: saved again (as times) at once, so
        # that one run with the old window length converts every partition, quiet ones included.
        self.unsaved: set[TopicPartition] = set()
        # A saved state this run cannot read (saved_state.StateFormatError). Raised by the run loop:
        # aiokafka only logs what the assignment callback raises, and the partition would stall unseen.
        self.refusal: StateFormatError | None = None

    def clock_for(self, tp: TopicPartition, wall_ms: int, *, got_records: bool, at_end: bool) -> int:
        """The time `tp`'s windows close against: the wall clock once the partition is read to its
        end and no record has come for `idle_ms`, else its stream time.

        Being at the end is not enough: while the validator works through a backlog the batcher
        keeps reaching the end of what has been validated so far, and closing on the wall clock
        then cut windows whose events were still upstream (they went on to later windows). Records
        still arriving keep stream time moving, so only an idle partition needs the wall clock.
        """
        if got_records or tp not in self.records_at:
            self.records_at[tp] = wall_ms
        idle = wall_ms - self.records_at[tp] >= self.idle_ms
        return wall_ms if at_end and idle else self.partitions[tp].stream_time_ms

    def new_windows(self, state: BatcherState | None) -> PartitionWindows:
        guard = ReplayGuard(state.watermark, [(r[0], r[1]) for r in state.emitted]) if state else ReplayGuard()
        windows = PartitionWindows(
            window_seconds=self.settings.window_seconds,
            grace_seconds=self.settings.grace_seconds,
            max_rows=self.settings.max_rows_per_file,
            max_bytes=self.settings.max_bytes_per_file,
            guard=guard,
        )
        if state is not None:
            try:
                closed_until, open_parts = bookkeeping(
                    state,
                    window_seconds=self.settings.window_seconds,
                    state_window_seconds=self.settings.batcher_state_window_seconds,
                    now_ms=int(time.time() * 1000),
                )
            except StateFormatError as exc:
                # The message names settings, a partition and a year, never an event's values.
                log.error("cannot read the saved batcher state: %s", exc, extra={"partition": state.partition})
                raise
            windows.restore(closed_until, open_parts)
        return windows

    def add(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> list[DueFile]:
        windows = self.partitions[tp]
        due: list[DueFile] = []
        newline = len(self.dialect.newline)
        skipped = windows.skipped
        for rec in records:
            try:
                vaccine_type, sender_ods, row, extended = _valid_row(rec)
                origin_header = h.header(rec.headers, h.ORIGIN)
                origin = decode_origin(origin_header) if origin_header else (-1, -1)
            except (msgspec.DecodeError, ValueError) as exc:  # ValueError includes UnicodeError
                self._set_aside(tp, rec, exc)
                continue
            if not windows.guard.already_emitted(rec.offset):  # a replayed record is the guard's to skip
                try:  # judge reads the row's identity first and changes nothing when it cannot
                    refusal, entry = self.identities[tp].judge(
                        row, valid_offset=rec.offset, origin=origin, timestamp_ms=rec.timestamp, extended=extended
                    )
                except (IndexError, ValueError, csv.Error):  # a quoted value that is not a file row
                    self._set_aside(tp, rec, PoisonError("file row without the 34 quoted fields of a row"))
                    continue
                if entry is not None:
                    self.remembered.setdefault(tp, []).append(entry)
                if refusal is not None:
                    self.repeats.setdefault(tp, []).append(Repeat(rec, refusal, sender_ods))
                    windows.position = max(windows.position, rec.offset + 1)
                    continue
            due.extend(
                windows.add(
                    offset=rec.offset,
                    timestamp_ms=rec.timestamp,
                    origin=origin,
                    vaccine_type=vaccine_type,
                    sender_ods=sender_ods,
                    row=row,
                    size=len(row) + newline,
                    extended=extended,
                )
            )
        if windows.skipped > skipped:
            SKIPPED.inc(windows.skipped - skipped)
        return due

    def _set_aside(self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
        """Poison, sent to the rejected topic with the partition's next transaction (emit); the
        offset counts as done from then on (the replay guard's emitted ranges)."""
        windows = self.partitions[tp]
        if not windows.guard.already_emitted(rec.offset):
            self.poison.setdefault(tp, []).append(Poison(rec, type(exc).__name__, _why(exc)))
        windows.position = max(windows.position, rec.offset + 1)

    def render(self, due: DueFile, partition: int) -> list[ReadyFile]:
        """The file of `due`, read from valid-topic `partition` (its manifest names the offsets it
        consumed), and after it the part's extended-attribute file when its events carry any."""
        name = part_file_name(due.vaccine_type, due.sender_ods, due.window_start, due.window_length, due.part)
        ranges = [OffsetRange(partition, first, last) for first, last in due.ranges]
        files = [_ready(due, name, assemble_file(due.rows, self.dialect), len(due.rows), due.origins, ranges)]
        if due.extended:
            files.append(self._extended_file(due))
        return files

    def _extended_file(self, due: DueFile) -> ReadyFile:
        """The part's extended-attribute file (docs/decisions/0020): row n is an attribute of the
        event whose origin is origins[n-1], so an outcome links back as for a vaccination file.
        No valid ranges: the vaccination file beside it holds those events' offsets."""
        lines: list[bytes] = []
        origins = []
        for index, block in due.extended:
            block_lines = block.split(b"\n")
            lines += block_lines
            origins += [due.origins[index]] * len(block_lines)
        second = extended_name_second(due.vaccine_type, int(due.window_start.timestamp()), due.part)
        name = extended_file_name(due.sender_ods, datetime.fromtimestamp(second, UTC))
        return _ready(due, name, assemble_extended(lines, self.dialect), len(lines), origins, [])

    def archive_all(self, files: list[ReadyFile]) -> None:
        for f in files:
            write_private(archive_path(self.archive, f.vaccine_type, f.sender_ods, f.file_name), f.content)

    async def emit(self, tp: TopicPartition, due: list[DueFile]) -> None:
        """Archive, then publish files + state + offset in one transaction (module docstring)."""
        windows = self.partitions[tp]
        files = [f for d in due for f in self.render(d, tp.partition)]
        # In a thread: an fsync per file would otherwise stall the loop, and with it the other
        # partitions' fetches and commits (the files are still archived before they are published).
        if files:
            await asyncio.to_thread(self.archive_all, files)
        poison = self.poison.pop(tp, [])
        repeats = self.repeats.pop(tp, [])
        remembered = self.remembered.pop(tp, [])
        windows.record_emitted(due)
        if poison or repeats:
            taken_out = [p.record.offset for p in poison] + [r.record.offset for r in repeats]
            windows.guard.add(offsets_to_ranges(sorted(taken_out)))
            windows.guard.advance(windows.low_watermark())
        closed_until, open_parts = windows.snapshot()
        state = BatcherState(
            partition=tp.partition,
            watermark=windows.guard.watermark,
            emitted=list(windows.guard.emitted),
            version=STATE_VERSION,
            window_ms=windows.window_ms,
            closed_until=closed_until,
            open_parts=open_parts,
        )
        async with Checkpoint(self.producers.producers[tp], group_id=self.group) as step:
            for f in files:
                await step.produce(
                    self.ready_topic,
                    _ENCODE.encode(f),
                    key=encode_key(f.vaccine_type, f.sender_ods),  # the batch key: one partition, window order
                    headers=[(h.ORIGIN, encode_origin(f.origins[0]))] if f.origins else [],
                )
            for p in poison:
                rec = p.record
                await step.produce(
                    self.rejected_topic,
                    rec.value,
                    key=b"",
                    headers=h.dead_letter_headers(
                        topic=rec.topic, partition=rec.partition, offset=rec.offset, stage="batch",
                        exc_class=p.exc_class, exc_message=p.message,
                        origin=h.header(rec.headers, h.ORIGIN) or b"",
                        reasons=[Reason(field="record", rule=UNDECODABLE, message=p.message)],
                    ),
                )
            out = step.sink(BatchSender(self.producers.producers[tp]))
            for repeat in repeats:
                await out.add(
                    self.rejected_topic,
                    repeat.record.value or b"",
                    key=repeat.sender_ods.encode(),
                    timestamp_ms=repeat.record.timestamp,
                    headers=_repeat_headers(repeat),
                )
            for entry in remembered:
                key, value = entry.record()
                await out.add(
                    self.identities_topic, value, key=key, timestamp_ms=int(time.time() * 1000),
                    headers=(), partition=tp.partition,
                )
            step.state(self.state_topic, _ENCODE.encode(state), key=str(tp.partition).encode(), partition=tp.partition)
            step.consumed({tp: windows.guard.watermark})
        self.unsaved.discard(tp)
        for p in poison:  # counted once committed, as files are
            POISON.inc()
            log.warning(
                "undecodable valid record sent to the rejected topic",
                extra={"partition": tp.partition, "offset": p.record.offset, "error": p.exc_class,
                       "reason": p.message},
            )
        for repeat in repeats:
            REPEATS.labels(repeat.refusal.rule).inc()
            log.warning(
                "repeat submission refused",
                extra={"rule": repeat.refusal.rule, "partition": tp.partition, "offset": repeat.record.offset,
                       "first_origin": encode_origin(repeat.refusal.first_origin).decode()},
            )
        for f in files:
            if is_extended_file_name(f.file_name):
                EXTENDED_FILES.labels(f.vaccine_type).inc()
                EXTENDED_ROWS.labels(f.vaccine_type).inc(f.rows)
                log.info("extended-attribute file ready", extra={"file": f.file_name, "rows": f.rows})
                continue
            FILES.labels(f.vaccine_type).inc()
            ROWS.labels(f.vaccine_type).inc(f.rows)
            BYTES.labels(f.vaccine_type).inc(len(f.content))
            log.info("file ready", extra={"file": f.file_name, "rows": f.rows, "partition": tp.partition})

    def total_held(self) -> int:
        return sum(w.held for w in self.partitions.values())

    def expire_identities(self, wall_ms: int) -> None:
        for tp, table in self.identities.items():
            table.expire(wall_ms - self.horizon_ms, budget=EXPIRE_SLOTS_PER_POLL)
            IDENTITIES.labels(str(tp.partition)).set(len(table))
            IDENTITY_BYTES.labels(str(tp.partition)).set(table.nbytes())

    def publish_gauges(self) -> None:
        """Per-partition and per-key window gauges for the ops dashboard; labels of keys whose
        windows closed, and of partitions handed back, are removed rather than left at stale values."""
        current: dict[tuple[str, str, str], tuple[int, int]] = {}
        for tp, windows in self.partitions.items():
            HELD.labels(str(tp.partition)).set(windows.held)
            OPEN.labels(str(tp.partition)).set(len(windows.windows))
            for window in windows.windows.values():
                labels = (str(tp.partition), window.vaccine_type, window.sender_ods)
                opened, held = current.get(labels, (0, 0))
                current[labels] = (opened + 1, held + len(window.rows))
        for labels, (opened, held) in current.items():
            KEY_OPEN.labels(*labels).set(opened)
            KEY_HELD.labels(*labels).set(held)
        for labels in self.key_labels - set(current):
            KEY_OPEN.remove(*labels)
            KEY_HELD.remove(*labels)
        self.key_labels = set(current)

    # ------------------------------------------------------- the assignment (PartitionState)

    def is_loaded(self, tp: TopicPartition) -> bool:
        return tp in self.partitions

    async def load(self, assigned: set[TopicPartition]) -> None:
        """Each new partition's windows and remembered identities, restored from what is committed."""
        self.identities.update(
            await restore_all(self.settings, self.identities_topic, sorted(assigned), horizon_ms=self.horizon_ms)
        )
        for tp, state in (await load_states(self.settings, self.state_topic, assigned, BatcherState)).items():
            try:
                self.partitions[tp] = self.new_windows(state)
            except StateFormatError as exc:
                self.refusal = exc
                continue
            if state is not None and state.version < STATE_VERSION:
                self.unsaved.add(tp)
            log.info(
                "partition assigned",
                extra={"partition": tp.partition, "watermark": state.watermark if state else None},
            )

    def forget(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.partitions.pop(tp, None)  # handed back: the new owner re-reads from the watermark
            self.poison.pop(tp, None)
            self.records_at.pop(tp, None)
            self.unsaved.discard(tp)
            # uncommitted identities go with the windows; the next owner restores the committed ones
            self.identities.pop(tp, None)
            self.remembered.pop(tp, None)
            self.repeats.pop(tp, None)
            for gauge in (HELD, OPEN, IDENTITIES, IDENTITY_BYTES):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(tp.partition))


def _ready(
    due: DueFile, name: str, content: bytes, rows: int, origins: list[Origin], ranges: list[OffsetRange]
) -> ReadyFile:
    """A ready record for one file of the part `due` (its window, part and key)."""
    return ReadyFile(
        file_name=name,
        vaccine_type=due.vaccine_type,
        sender_ods=due.sender_ods,
        window_start=due.window_start.isoformat(),
        window_end=(due.window_start + due.window_length).isoformat(),
        part=due.part,
        rows=rows,
        content=content,
        origins=origins,
        valid_ranges=ranges,
        local_id=local_id_for(name, content),
    )


def _repeat_headers(repeat: Repeat) -> h.Headers:
    """Connect-style headers of a refused repeat, naming the first submission's origin."""
    rec, rule = repeat.record, repeat.refusal.rule
    first = encode_origin(repeat.refusal.first_origin)
    message = (
        "the same event (UNIQUE_ID_URI, UNIQUE_ID, ACTION_FLAG and content) was already taken"
        if rule == DUPLICATE
        else "a NEW with this UNIQUE_ID_URI and UNIQUE_ID was already taken with different content;"
        " send an UPDATE to change it"
    )
    headers = h.dead_letter_headers(
        topic=rec.topic, partition=rec.partition, offset=rec.offset, stage="batch",
        exc_class="RepeatSubmission", exc_message=f"{rule}: {message} (first: raw {first.decode()})",
        origin=h.header(rec.headers, h.ORIGIN) or b"",
        reasons=[Reason(field="UNIQUE_ID", rule=rule, message=message)],
    )
    headers.append((h.FIRST_ORIGIN, first))
    return headers


async def caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    """Whether the batcher has read everything committed to `tp` (as of the last fetch response).

    Only then, and once no record has come for a while (Batcher.clock_for), may the wall clock
    close the partition's windows. While a backlog is read (after an outage, a restart or a
    replay) the wall clock is far ahead of the events: closing on it closed each key's window
    after every poll, so a key's events of one window were cut into a file per poll instead of
    one file per window, and the next poll's events went on to later windows
    (benchmarks/bench_scaling.py, one partition: 13,915 files where 4,800 windows held events).
    Behind, windows close on stream time, which the events themselves move on; an idle key or
    partition still closes on the wall clock.
    """
    try:
        lso = consumer.last_stable_offset(tp)  # the end for a read_committed consumer
        return lso is not None and await consumer.position(tp) >= lso
    except (AssertionError, IllegalStateError):  # aiokafka's answer for a partition no longer assigned
        return False


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    batcher = Batcher(settings)
    consumer = committed_consumer(settings, group_id=batcher.group, max_partition_fetch_bytes=4 * 1024 * 1024)
    consumer.subscribe([batcher.valid_topic], listener=batcher.producers)
    await consumer.start()
    health.ready = True
    gauges_at = 0
    log.info("batcher started", extra={"window_seconds": settings.window_seconds})
    try:
        while not stop.is_set():
            paused = batcher.total_held() >= settings.max_buffered_events
            batch = {} if paused else await consumer.getmany(timeout_ms=500, max_records=settings.batcher_max_records)
            if batcher.refusal is not None:
                health.detail["reason"] = str(batcher.refusal)
                raise batcher.refusal
            health.progress(busy=bool(batch) or batcher.total_held() > 0)
            async with batcher.producers.lock:
                wall_ms = int(time.time() * 1000)
                for tp, records in batch.items():
                    if not batcher.producers.is_ready(tp) and records:
                        rewind(consumer, tp, records[0].offset)
                # (partition, files) first, the emit coroutines only in the gather below: a coroutine
                # made before a later partition's add/due raised was never awaited (issue 16).
                emits: list[tuple[TopicPartition, list[DueFile]]] = []
                for tp in list(batcher.partitions):
                    if not batcher.producers.is_ready(tp):
                        continue
                    records = batch.get(tp, [])
                    due = batcher.add(tp, records)
                    at_end = await caught_up(consumer, tp)
                    clock = batcher.clock_for(tp, wall_ms, got_records=bool(records), at_end=at_end)
                    due.extend(batcher.partitions[tp].due(clock))
                    if paused and not due:
                        due.extend(batcher.partitions[tp].largest())
                    if due or batcher.poison.get(tp) or batcher.repeats.get(tp) or tp in batcher.unsaved:
                        emits.append((tp, due))
                # one transaction per partition, on its own producer: let the commits overlap
                # (every one ends, committed or aborted, before a failure of one ends the worker)
                outcomes = await asyncio.gather(*(batcher.emit(tp, due) for tp, due in emits), return_exceptions=True)
                for failure in outcomes:
                    if isinstance(failure, BaseException):
                        raise failure
                if wall_ms - gauges_at >= 1000:
                    gauges_at = wall_ms
                    batcher.publish_gauges()
                    batcher.expire_identities(wall_ms)
                health.detail = {
                    "held_events": batcher.total_held(),
                    "open_windows": sum(len(w.windows) for w in batcher.partitions.values()),
                }
            if paused:
                await asyncio.sleep(0.1)
    finally:
        health.ready = False
        await consumer.stop()
        await batcher.producers.close()


