"""`vaxflow resend FILE-NAME`: deliberately send one already-sent file again, under a new name.

For when NHS England asks for a file again. The receiver refuses a name it has seen, and the
uploader skips a name in the sent ledger, so a re-send needs a new, spec-valid name that no file
of the same (vaccine type, sender) has used or will use:

- the name stays inside the original window's seconds (names are `window start + slot` seconds,
  docs/decisions/0004), taking the highest free slot, counting down from the window's last second.
  The batcher numbers parts upwards from slot 0 and never adds a part to a closed window (late
  events go to a later window), so the top of a closed window is free for good; 0004's
  `r·k + p` rule would need the window's part count k, which is unknowable while a part is still
  pending or dead-lettered;
- the window must therefore be closed (end + grace in the past);
- a slot is free when its name is neither in the sent ledger nor recorded by an earlier resend in
  the redrive ledger (so two resends before the first is sent still get two names).

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
from schemas.extended import is_extended_file_name
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
        }


async def find_ready_file(
    settings: Settings, name: str, *, meter: Meter | None = None
) -> ReadyFile | None:
    """The file as the batcher produced it: the ready topic is keyed by file name, so the
    partition the default partitioner picks for the name is read first, then the others."""
    topic = settings.topic(READY.name)
    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [tp.partition for tp in await partitions_of(consumer, topic)]
    finally:
        await consumer.stop()
    if not partitions:
        return None
    first = DefaultPartitioner()(name.encode(), partitions, partitions)
    for group in ([first], [p for p in partitions if p != first]):
        found: ReadyFile | None = None
        async for record in stream(
            settings, topic, partitions=group, meter=meter, what=f"looking for {name}", fetch_bytes=48 * 1024 * 1024
        ):
            if record.key is not None and record.key.decode("utf-8", "replace") == name and record.value:
                try:
                    found = _READY.decode(record.value)
                except msgspec.DecodeError:
                    continue
        if found is not None:
            return found
    return None


def from_archive(settings: Settings, receipt: SentReceipt) -> ReadyFile | None:
    """Rebuild a ReadyFile from the archive copy and the sent receipt, when the ready topic's
    retention has removed the record. The window is the configured one containing the name's
    instant; the receipt supplies origins."""
    root = settings.archive_dir or settings.dev_home / "archive"
    path = archive_path(root, receipt.vaccine_type, receipt.sender_ods, receipt.file_name)
    if not path.is_file():
        return None
    parsed = parse_batch_file_name(receipt.file_name)
    instant = parsed.instant.astimezone(UTC)
    length = settings.window_seconds
    start_epoch = int(instant.timestamp()) // length * length
    start = datetime.fromtimestamp(start_epoch, tz=UTC)
    return ReadyFile(
        file_name=receipt.file_name,
        vaccine_type=receipt.vaccine_type,
        sender_ods=receipt.sender_ods,
        window_start=start.isoformat(),
        window_end=(start + timedelta(seconds=length)).isoformat(),
        part=int(instant.timestamp()) - start_epoch,
        rows=receipt.rows,
        content=path.read_bytes(),
        origins=list(receipt.origins),
        valid_ranges=[],
        local_id=receipt.local_id,
    )


def free_name(file: ReadyFile, taken: set[str], grace_seconds: int, now: datetime | None = None) -> tuple[str, int]:
    """(name, slot): the highest slot of the file's window whose name nobody has used."""
    start = datetime.fromisoformat(file.window_start)
    end = datetime.fromisoformat(file.window_end)
    now = now or datetime.now(UTC)
    if end + timedelta(seconds=grace_seconds) > now:
        raise ResendError(
            f"the window of {file.file_name} closes at {end + timedelta(seconds=grace_seconds)}: until then the "
            "batcher may still add parts to it, so no name of it is known to be free; try again after that"
        )
    length = end - start
    for slot in range(int(length.total_seconds()) - 1, -1, -1):
        name = part_file_name(file.vaccine_type, file.sender_ods, start, length, slot)
        if name not in taken:
            return name, slot
    raise ResendError(f"every name of the window of {file.file_name} is in use")


async def plan_resend(settings: Settings, name: str, *, meter: Meter | None = None) -> ResendPlan:
    if is_extended_file_name(name):
        # Its new name would have to follow the family's COVID/FLU name parity (decision 0020), and
        # NHS England sends no acknowledgement to say it was lost; not supported yet.
        raise ResendError(
            f"{name} is an extended-attribute file: resend cannot re-send that family yet "
            "(MESH tracking shows whether NHS England took it: its Delivered outcome on the acks topic)"
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
    previous = await ops_ledger.read_ledger(settings)
    taken |= {e.file_name for e in previous.values() if e.kind == "resend" and e.file_name}
    original = await find_ready_file(settings, name, meter=meter)
    found_in = "ready topic"
    if original is None:
        original = from_archive(settings, receipt)
        found_in = "archive + sent receipt"
    if original is None:
        raise ResendError(f"{name} is neither in the ready topic (retention) nor in the archive")
    new_name, slot = free_name(original, taken | {name}, settings.grace_seconds)
    new_file = msgspec.structs.replace(
        original,
        file_name=new_name,
        part=slot,
        local_id=local_id_for(new_name, original.content),
        resend_of=name,
    )
    return ResendPlan(original=original, found_in=found_in, receipt=receipt, new_file=new_file)


async def execute_resend(settings: Settings, plan: ResendPlan, *, purpose: str = "resend") -> None:
    """Produce the new file to the ready topic with its ledger entry, in one transaction."""
    producer = ops_ledger.ops_producer(settings, purpose)
    await producer.start()
    try:
        async with Checkpoint(producer) as step:
            f = plan.new_file
            ready = settings.topic(READY.name)
            headers = [(h.ORIGIN, encode_origin(f.origins[0]))] if f.origins else []
            # The batch key, as the batcher writes it: the resend joins its key's lane at the uploader.
            await step.produce(ready, _ENCODE.encode(f), key=encode_key(f.vaccine_type, f.sender_ods), headers=headers)
            entry = ops_ledger.new_entry(
                kind="resend", source=plan.original.file_name, target_topic=ready, file_name=f.file_name,
                resend_of=plan.original.file_name,
            )
            ops_ledger.record(step, settings, [entry])
    finally:
        await producer.stop()


async def resend(settings: Settings, name: str, *, execute: bool = True, meter: Meter | None = None) -> ResendPlan:
    plan = await plan_resend(settings, name, meter=meter)
    if execute:
        await execute_resend(settings, plan)
    return plan
