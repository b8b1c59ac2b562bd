"""Outcomes of extended-attribute (EA) files, which NHS England never acknowledges when it takes them.

The receiver copies an accepted EA file to DPS unparsed and writes no InfAck and no BusAck for
it (spec digest, end of section a); only a *refused* one (bad name, no COVID C/U/D permission,
duplicate) gets an InfAck failure. Without more, the acks topic would say nothing about every EA
file that went well. The one signal there is comes from MESH: tracking the sent message shows
when the recipient's mailbox client downloaded and acknowledged it. So the ack reader tracks each
EA receipt until then and publishes:

- kind "Delivered" (accepted=True) once tracking says "acknowledged": NHS England's MESH client has
  taken the file. Not "accepted", which only means it waits in the recipient's inbox
  (`TrackingInfo.delivered` includes that, so it is not used here);
- kind "Undelivered" (accepted=False) once tracking says "undeliverable" or "error": MESH gave up,
  NHS England never got it.

Both carry `mesh_message_id` = the *sent* message's id (there is no acknowledgement message),
`file_name` = the EA file (key of the acks topic, and the receipt's key, whose origins say which
events its rows came from), `total_rows` = the receipt's rows and an empty `ack_file`. An InfAck
failure for an EA file may still follow a Delivered (the real receiver validates after its MESH
client has collected the file): it is the final word, so a consumer reads a file's verdict as "the
InfAck failure if any, else Delivered".

This module is the pure part: which files wait (`DeliveryBook`), what an outcome looks like, and
which acks-topic records settle a file. Bounded by design:

- only receipts sent within `horizon` are tracked, so memory is a horizon's worth of EA names, and a
  restart re-tracks only those;
- a file is settled (never tracked or published again) by any outcome already on the acks topic
  for it, read back from the horizon's start at start-up and as it grows (by this or another ack
  reader), so a restart does not re-publish for every EA file ever sent;
- at most `per_poll` files are tracked per poll, least recently checked first (round robin), and a
  failed tracking call just leaves the file waiting for the next poll.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import msgspec
from aiokafka.structs import ConsumerRecord

from schemas.extended import is_extended_file_name
from schemas.pipeline import AckOutcome, SentReceipt
from topics import headers as h
from workers.base.mesh.client import TrackingInfo

KIND_DELIVERED: Final = "Delivered"
KIND_UNDELIVERED: Final = "Undelivered"
# Every kind that says something about the file itself settles it; "unknown" is keyed by whatever
# name an unrecognised message carried, so it settles nothing.
_UNSETTLING: Final = frozenset({"unknown"})

_DECODE_OUTCOME = msgspec.json.Decoder(AckOutcome)


def sent_epoch(sent_at: str) -> float | None:
    """A receipt's `sent_at` (ISO 8601 with offset) in epoch seconds; None if unreadable or naive."""
    try:
        instant = datetime.fromisoformat(sent_at)
    except ValueError:
        return None
    return instant.timestamp() if instant.tzinfo is not None else None


def delivery_outcome(receipt: SentReceipt, info: TrackingInfo, received_at: str) -> AckOutcome | None:
    """The outcome tracking allows for an EA file now, or None while MESH has not decided."""
    if info.acknowledged:
        return AckOutcome(
            file_name=receipt.file_name, ack_file="", kind=KIND_DELIVERED, mesh_message_id=receipt.message_id,
            accepted=True, total_rows=receipt.rows, received_at=received_at,
        )
    if info.undeliverable:
        said = " ".join(x for x in (info.status_code, info.status_description) if x)
        return AckOutcome(
            file_name=receipt.file_name, ack_file="", kind=KIND_UNDELIVERED, mesh_message_id=receipt.message_id,
            accepted=False, total_rows=receipt.rows, received_at=received_at,
            error=h.printable(f"MESH tracking status {info.status}" + (f": {said}" if said else ""))[:1000],
        )
    return None


def settled_name(record: ConsumerRecord[bytes, bytes]) -> str | None:
    """The EA file an acks-topic record settles, or None. Records keyed by any other file are
    skipped by their key alone, so reading the topic back does not decode large BusAck outcomes."""
    if record.key is None or record.value is None:
        return None
    name = record.key.decode("utf-8", "replace")
    if not is_extended_file_name(name):
        return None
    try:
        outcome = _DECODE_OUTCOME.decode(record.value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if outcome.kind in _UNSETTLING or not is_extended_file_name(outcome.file_name):
        return None
    return outcome.file_name


class DeliveryBook:
    """EA files awaiting a MESH verdict (`pending`) and files already settled (`settled`).

    Times are epoch seconds, passed in, so the book is testable without a clock. `pending` is in
    round-robin order: `due` hands out its front, `checked` moves a file to the back.
    """

    def __init__(self, *, horizon: float, per_poll: int) -> None:
        if horizon <= 0 or per_poll < 1:
            raise ValueError("horizon must be positive and per_poll at least 1")
        self.horizon = horizon
        self.per_poll = per_poll
        self.pending: dict[str, float] = {}  # file name -> sent at
        self.settled: dict[str, float] = {}  # file name -> when it was settled

    def offer(self, receipt: SentReceipt, now: float) -> bool:
        """Track this receipt if it is an unsettled EA file sent within the horizon; True if it is."""
        name = receipt.file_name
        if not is_extended_file_name(name) or name in self.settled:
            return False
        sent = sent_epoch(receipt.sent_at)
        if sent is None or sent < now - self.horizon:
            return False
        self.pending.setdefault(name, sent)
        return True

    def settle(self, file_name: str, now: float) -> None:
        """An outcome for this file is on the acks topic: never track or publish it again."""
        self.pending.pop(file_name, None)
        self.settled[file_name] = now

    def is_settled(self, file_name: str) -> bool:
        return file_name in self.settled

    def forget(self, file_name: str) -> None:
        """Its receipt is gone (a tombstone in the ledger): nothing left to link an outcome to."""
        self.pending.pop(file_name, None)

    def due(self, now: float) -> list[str]:
        """Up to `per_poll` files to track now, least recently checked first; drops what has aged
        out of the horizon (MESH gives up on an uncollected message well within it)."""
        edge = now - self.horizon
        for name in [n for n, sent in self.pending.items() if sent < edge]:
            del self.pending[name]
        # A file settles no earlier than it was sent, so a settlement older than the horizon
        # belongs to a receipt `offer` would refuse anyway.
        for name in [n for n, at in self.settled.items() if at < edge]:
            del self.settled[name]
        return list(self.pending)[: self.per_poll]

    def checked(self, file_name: str) -> None:
        """Tracked once more without a verdict: to the back of the queue."""
        sent = self.pending.pop(file_name, None)
        if sent is not None:
            self.pending[file_name] = sent
