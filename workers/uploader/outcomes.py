"""What the uploader decides about one ready file, apart from doing it: the outcome types, the
local-id generations, and which origin a record carries (which files go together: lanes.py).

The worker (worker.py) does the Kafka side, the MESH side is delivery.py; both act on these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiokafka.structs import ConsumerRecord

from schemas.pipeline import ReadyFile, encode_origin
from topics import headers as h

# After this many incomplete uploads under one local id something is badly wrong: stop, dead-letter.
MAX_GENERATIONS: Final = 20


def local_id_generation(local_id: str, generation: int) -> str:
    """Generation 1 is the batcher's local id itself; later ones follow an incomplete upload."""
    return local_id if generation == 1 else f"{local_id}.g{generation}"


class Abandoned(Exception):
    """Stop or revocation arrived while waiting to retry: nothing is in flight, leave the file."""


class UploadRefused(Exception):
    """The file cannot be delivered: MESH refused it, no route, or retries ran out."""

    def __init__(self, cause: BaseException, *, status: int | None, body: str, attempts: int) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.status = status
        self.body = body
        self.attempts = attempts


@dataclass(frozen=True, slots=True)
class Delivery:
    message_id: str
    local_id: str
    mailbox_to: str
    workflow_id: str
    recovered: bool
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """One ready record's fate, decided before anything is written: `poison` when the record is no
    ReadyFile; otherwise `file` plus its delivery, its refusal, or neither (already in the ledger)."""

    file: ReadyFile | None = None
    delivery: Delivery | None = None
    refused: UploadRefused | None = None
    poison: Exception | None = None


def origin_value(rec: ConsumerRecord[bytes, bytes], file: ReadyFile) -> bytes:
    found = h.header(rec.headers, h.ORIGIN)
    if found:
        return found
    return encode_origin(file.origins[0]) if file.origins else b""


def origin_headers(rec: ConsumerRecord[bytes, bytes], file: ReadyFile) -> h.Headers:
    value = origin_value(rec, file)
    return [(h.ORIGIN, value)] if value else []
