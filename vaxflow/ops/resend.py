"""`vaxflow resend FILE-NAME`: deliberately send one already-sent file again, under a new name.

For when NHS England asks for a file again. The receiver refuses a name it has seen, and the
uploader skips a name in the sent ledger, so a re-send needs a new, spec-valid name that no file
of the same (vaccine type, sender) has used or will use:

- the name stays inside the original window's seconds (names are `window start + slot` seconds,
  docs/decisions/0004), taking the highest free slot, counting down from the window's last one.
  The batcher numbers parts upwards from slot 0 and never adds a part to a closed window (late
  events go to a later window), so the top of a closed window is free for good; 0004's
  `r·k + p` rule would need the window's part count k, which is unknowable while a part is still
  pending or dead-lettered;
- for COVID and FLU a slot also names the part's extended-attribute file (schemas/extended.py:
  the family's names take every other second, so those windows have half as many slots), and a
  slot is taken only when both of its names are free: a vaccination file and its attribute file
  re-sent together keep one slot, as the batcher's pair did (decision 0020);
- the window must therefore be closed (end + grace in the past);
- a slot is free when its names are neither in the sent ledger nor recorded by an earlier resend
  in the redrive ledger (so two resends before the first is sent still get two names).

A vaccination file's extended-attribute file is re-sent with it only when asked (--with-extended):
NHS England forwards that family to another service and acknowledges none of it, so asking for a
vaccination file again says nothing about its attributes. An attribute file can be named alone.

The new ReadyFile has `resend_of` set (the uploader copies it into the SentReceipt), a new local id,
the same content and origins (acknowledgements still lead back to the events), and is recorded in
the redrive ledger as kind "resend", in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiokafka.partitioner import DefaultPartitioner

from schemas.batchkey import encode_key, local_id_for
from schemas.extended import (
    extended_file_name,
    extended_name_second,
    extended_names,
    extended_part_of,
    is_extended_file_name,
    parse_extended_file_name,
)
from schemas.filenames import parse_batch_file_name, part_file_name
from schemas.pipeline import ReadyFile, SentReceipt, encode_origin
from topics import headers as h
from topics.catalogue import READY
from vaxflow.ops import ledger as ops_ledger
from vaxflow.ops.scan import Meter, stream
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import partitions_of, reader
from workers.base.ledger import SentLedger
from workers.base.settings import Settings
from workers.batcher.archive import archive_path

_READY = msgspec.json.Decoder(ReadyFile)
_ENCODE = msgspec.json.Encoder()


class ResendError(RuntimeError):
    """The file cannot be re-sent (unknown, never sent, window still open, no free name)."""


@dataclass(frozen=True, slots=True)
class ResendPlan:
    original: ReadyFile
    found_in: str
    receipt: SentReceipt
    new_file: ReadyFile
    # the part's extended-attribute file: re-sent beside new_file (--with-extended), or only named
    extended: ReadyFile | None = None
    extended_sent: str | None = None

    @property
    def files(self) -> list[ReadyFile]:
        return [self.new_file] if self.extended is None else [self.new_file, self.extended]

    def to_json(self) -> dict[str, Any]:
        return {
            "original": self.original.file_name,
            "found_in": self.found_in,
            "sent_at": self.receipt.sent_at,
            "message_id": self.receipt.message_id,
            "new_name": self.new_file.file_name,
            "slot": self.new_file.part,
            "rows": self.new_file.rows,
            "local_id": self.new_file.local_id,
            "extended_sent": self.extended_sent,
            "extended_new_name": None if self.extended is None else self.extended.file_name,
            "extended_rows": None if self.extended is None else self.extended.rows,
        }


async def find_ready_file(
    settings: Settings, name: str, vaccine_type: str, sender_ods: str, *, meter: Meter | None = None
) -> ReadyFile | None:
    """The file as the batcher produced it. The ready topic is keyed by batch key (one lane per
    key, in window order), so the partition the default partitioner picks for the file's key is
    read first, then the others (a partition count changed since)."""
    topic = settings.topic(READY.name)
    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [tp.partition for tp in await partitions_of(consumer, topic)]
    finally:
        await consumer.stop()
    if not partitions:
        return None
    first = DefaultPartitioner()(encode_key(vaccine_type, sender_ods), partitions, partitions)
    needle = _ENCODE.encode(name)  # the name as the record's JSON spells it
    for group in ([first], [p for p in partitions if p != first]):
        found: ReadyFile | None = None
        async for record in stream(
            settings, topic, partitions=group, meter=meter, what=f"looking for {name}", fetch_bytes=48 * 1024 * 1024
        ):
            if not record.value or needle not in record.value:
                continue
            try:
                candidate = _READY.decode(record.value)
            except msgspec.DecodeError:
                continue
            if candidate.file_name == name:
                found = candidate
        if found is not None:
            return found
    return None


def from_archive(settings: Settings, receipt: SentReceipt) -> ReadyFile | None:
    """Rebuild a ReadyFile from the archive copy and the sent receipt, when the ready topic's
    retention has removed the record. The window is the configured one containing the name's
    instant (a window length changed since cannot be told from here); the receipt supplies
    origins."""
    root = settings.archive_dir or settings.dev_home / "archive"
    path = archive_path(root, receipt.vaccine_type, receipt.sender_ods, receipt.file_name)
    if not path.is_file():
        return None
    extended = is_extended_file_name(receipt.file_name)
    parsed = (parse_extended_file_name if extended else parse_batch_file_name)(receipt.file_name)
    second = int(parsed.instant.timestamp())
    length = settings.window_seconds
    start_epoch = second // length * length
    start = datetime.fromtimestamp(start_epoch, tz=UTC)
    return ReadyFile(
        file_name=receipt.file_name,
        vaccine_type=receipt.vaccine_type,
        sender_ods=receipt.sender_ods,
        window_start=start.isoformat(),
        window_end=(start + timedelta(seconds=length)).isoformat(),
        part=extended_part_of(receipt.vaccine_type, start_epoch, second) if extended else second - start_epoch,
        rows=receipt.rows,
        content=path.read_bytes(),
        origins=list(receipt.origins),
        valid_ranges=[],
        local_id=receipt.local_id,
    )


def slot_names(file: ReadyFile, slot: int) -> tuple[str, str | None]:
    """(vaccination file name, extended-attribute file name or None) of `slot` of the file's window."""
    start = datetime.fromisoformat(file.window_start)
    length = datetime.fromisoformat(file.window_end) - start
    vaccination = part_file_name(file.vaccine_type, file.sender_ods, start, length, slot)
    if extended_names(file.vaccine_type, int(start.timestamp()), int(length.total_seconds())) is None:
        return vaccination, None
    second = extended_name_second(file.vaccine_type, int(start.timestamp()), slot)
    return vaccination, extended_file_name(file.sender_ods, datetime.fromtimestamp(second, UTC))


def free_slot(file: ReadyFile, taken: set[str], grace_seconds: int, now: datetime | None = None) -> int:
    """The highest slot of the file's window none of whose names anybody has used."""
    start = datetime.fromisoformat(file.window_start)
    end = datetime.fromisoformat(file.window_end)
    now = now or datetime.now(UTC)
    if end + timedelta(seconds=grace_seconds) > now:
        raise ResendError(
            f"the window of {file.file_name} closes at {end + timedelta(seconds=grace_seconds)}: until then the "
            "batcher may still add parts to it, so no name of it is known to be free; try again after that"
        )
    seconds = int((end - start).total_seconds())
    slots = extended_names(file.vaccine_type, int(start.timestamp()), seconds) or seconds
    for slot in range(slots - 1, -1, -1):
        if not taken.intersection(n for n in slot_names(file, slot) if n is not None):
            return slot
    raise ResendError(f"every name of the window of {file.file_name} is in use")


def free_name(file: ReadyFile, taken: set[str], grace_seconds: int, now: datetime | None = None) -> tuple[str, int]:
    """(name, slot): the file's own family's name at the highest free slot of its window."""
    slot = free_slot(file, taken, grace_seconds, now)
    vaccination, extended = slot_names(file, slot)
    name = extended if is_extended_file_name(file.file_name) else vaccination
    assert name is not None  # an extended-attribute file's type has extended names
    return name, slot


def _copy(original: ReadyFile, name: str, slot: int) -> ReadyFile:
    return msgspec.structs.replace(
        original, file_name=name, part=slot, local_id=local_id_for(name, original.content), resend_of=original.file_name
    )


async def _original(settings: Settings, receipt: SentReceipt, meter: Meter | None) -> tuple[ReadyFile, str]:
    found = await find_ready_file(settings, receipt.file_name, receipt.vaccine_type, receipt.sender_ods, meter=meter)
    if found is not None:
        return found, "ready topic"
    found = from_archive(settings, receipt)
    if found is not None:
        return found, "archive + sent receipt"
    raise ResendError(f"{receipt.file_name} is neither in the ready topic (retention) nor in the archive")


async def plan_resend(
    settings: Settings, name: str, *, with_extended: bool = False, meter: Meter | None = None
) -> ResendPlan:
    if with_extended and is_extended_file_name(name):
        raise ResendError(
            f"{name} is an extended-attribute file: --with-extended goes with the vaccination file beside it"
        )
    async with SentLedger(settings, keep_origins=True) as sent:
        await sent.catch_up()
        receipt = sent.get(name)
        taken = {r.file_name for r in sent}
        if receipt is None:
            raise ResendError(
                f"{name} is not in the sent ledger: only a sent file can be re-sent "
                "(a dead-lettered one is redriven: `vaxflow redrive --from deadletter`)"
            )
        original, found_in = await _original(settings, receipt, meter)
        beside = None if is_extended_file_name(name) else slot_names(original, original.part)[1]
        beside_receipt = None if beside is None else sent.get(beside)
    if with_extended and beside_receipt is None:
        raise ResendError(f"no extended-attribute file was sent beside {name}{f' ({beside})' if beside else ''}")
    previous = await ops_ledger.read_ledger(settings)
    taken |= {e.file_name for e in previous.values() if e.kind == "resend" and e.file_name}
    new_name, slot = free_name(original, taken | {name}, settings.grace_seconds)
    extended = None
    if with_extended and beside_receipt is not None:
        extended_original, _ = await _original(settings, beside_receipt, meter)
        extended_name = slot_names(original, slot)[1]
        assert extended_name is not None  # a sent extended file means the type has extended names
        extended = _copy(extended_original, extended_name, slot)
    return ResendPlan(
        original=original, found_in=found_in, receipt=receipt, new_file=_copy(original, new_name, slot),
        extended=extended, extended_sent=None if beside_receipt is None else beside_receipt.file_name,
    )  # fmt: skip


async def execute_resend(settings: Settings, plan: ResendPlan, *, purpose: str = "resend") -> None:
    """Produce the new file to the ready topic with its ledger entry, in one transaction."""
    producer = ops_ledger.ops_producer(settings, purpose)
    await producer.start()
    try:
        async with Checkpoint(producer) as step:
            ready = settings.topic(READY.name)
            entries = []
            for f in plan.files:  # the vaccination file first, its attribute file after it, as the batcher does
                headers = [(h.ORIGIN, encode_origin(f.origins[0]))] if f.origins else []
                # The batch key, as the batcher writes it: the resend joins its key's lane at the uploader.
                key = encode_key(f.vaccine_type, f.sender_ods)
                await step.produce(ready, _ENCODE.encode(f), key=key, headers=headers)
                original = f.resend_of or plan.original.file_name
                entries.append(ops_ledger.new_entry(
                    kind="resend", source=original, target_topic=ready, file_name=f.file_name, resend_of=original
                ))  # fmt: skip
            ops_ledger.record(step, settings, entries)
    finally:
        await producer.stop()


async def resend(
    settings: Settings, name: str, *, execute: bool = True, with_extended: bool = False, meter: Meter | None = None
) -> ResendPlan:
    plan = await plan_resend(settings, name, with_extended=with_extended, meter=meter)
    if execute:
        await execute_resend(settings, plan)
    return plan
