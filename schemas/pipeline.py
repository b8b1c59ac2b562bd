"""The records that flow between vaxflow's workers after validation (what a file is, on the wire).

An event's **origin** — its (partition, offset) in vaccination.events.raw — is its identity for
exactly-once (docs/architecture.md, "Identity"): it travels in the `vaxflow.origin` header, inside every
file manifest, every sent receipt and every acknowledgement outcome, so any outcome can be
traced back to the event that caused it.
"""

from __future__ import annotations

from typing import Final

import msgspec

PIPELINE_SCHEMA_VERSION: Final = 1

Origin = tuple[int, int]
"""(raw partition, raw offset)."""


def encode_origin(origin: Origin) -> bytes:
    return f"{origin[0]}:{origin[1]}".encode()


def decode_origin(value: bytes) -> Origin:
    partition, _, offset = value.decode().partition(":")
    return int(partition), int(offset)


class OffsetRange(msgspec.Struct, frozen=True, array_like=True):
    """Offsets first..last (inclusive) of one partition."""

    partition: int
    first: int
    last: int


class ReadyFile(msgspec.Struct, frozen=True, kw_only=True):
    """One batch file, complete and final: the batcher never changes a file once produced.

    `origins[i]` is the origin of data row i+1, so BusAck row numbers map straight back to events.
    `valid_ranges` are the vaccination.events.valid offsets the file consumed (the batcher's own
    replay guard).
    """

    schema_version: int = PIPELINE_SCHEMA_VERSION
    file_name: str
    vaccine_type: str
    sender_ods: str
    window_start: str
    window_end: str
    part: int
    rows: int
    content: bytes
    origins: list[Origin]
    valid_ranges: list[OffsetRange]
    local_id: str
    resend_of: str | None = None


class SentReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The sent-files ledger entry (compacted topic keyed by file name)."""

    schema_version: int = PIPELINE_SCHEMA_VERSION
    file_name: str
    local_id: str
    message_id: str
    mailbox_to: str
    workflow_id: str
    vaccine_type: str
    sender_ods: str
    rows: int
    bytes: int
    sent_at: str
    origins: list[Origin]
    recovered: bool = False
    resend_of: str | None = None


class UploadFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A file MESH refused for good: the file itself plus why, for redrive after a fix."""

    schema_version: int = PIPELINE_SCHEMA_VERSION
    file: ReadyFile
    status: int | None
    body: str
    attempts: int
    failed_at: str
    error: str


class BatcherState(msgspec.Struct, frozen=True, kw_only=True):
    """Per valid-topic partition: everything below `watermark` is in a produced file, and so are
    the `emitted` ranges above it. Written in the same transaction as the files and the offsets,
    so after a crash or a replay the batcher skips exactly what it already put into files.

    The window bookkeeping is kept as TIMES (epoch ms) from `version` 2 on, so that it means the
    same under any VAXFLOW_WINDOW_SECONDS a later run has: version 1 kept window INDEXES in units
    of the window length of the run that wrote it, and a run with another length read them as
    windows millions of days away (issue 16). A version-1 state is migrated on load
    (workers/batcher/saved_state.py); its `closed`/`parts` are never written again.
    """

    partition: int
    watermark: int
    emitted: list[tuple[int, int]]
    closed: dict[str, int] = msgspec.field(default_factory=dict)
    """Version 1 only: "TYPE|ODS" -> highest window index closed (units of the writer's window length)."""
    parts: dict[str, int] = msgspec.field(default_factory=dict)
    """Version 1 only: "TYPE|ODS|index" -> parts already cut from a still-open window."""
    version: int = 1
    """Format of the window bookkeeping: 1 = indexes (`closed`, `parts`), 2 = times (below)."""
    window_ms: int = 0
    """The window length in force when this state was written (0 in version 1, which did not say)."""
    closed_until: dict[str, int] = msgspec.field(default_factory=dict)
    """"TYPE|ODS" -> epoch ms: every file name of the key below this instant may be taken, so an event
    older than it is late and goes to the window holding it, whose parts are named from it upward."""
    open_parts: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    """"TYPE|ODS|start ms" -> (end ms, next part) of a still-open window that has cut early parts."""


class ValidatorState(msgspec.Struct, frozen=True, kw_only=True):
    """Per raw-topic partition: every record below `processed_upto` has been validated and its result
    published. Written in the validator's transaction; after an operator rewinds the validator's
    group (replay), records below it are skipped instead of being forwarded a second time.
    """

    partition: int
    processed_upto: int


class RowOutcome(msgspec.Struct, frozen=True, kw_only=True):
    row: int
    origin: Origin | None
    local_id: str
    response_code: str
    severity: str
    message: str


class AckOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """NHS England's answer for one file (InfAck) or its rows (BusAck), linked to origins."""

    schema_version: int = PIPELINE_SCHEMA_VERSION
    file_name: str
    ack_file: str
    kind: str
    mesh_message_id: str
    accepted: bool
    total_rows: int | None = None
    failed_rows: list[RowOutcome] = msgspec.field(default_factory=list)
    received_at: str
    error: str | None = None
    """Why the ack could not be read or matched (kind "unknown" or "unreadable", or no sent receipt);
    never file content."""
    content: bytes | None = None
    """Kind "unreadable" only: the message's own bytes (up to a bound; header vaxflow.source.truncated
    says when cut), kept because acknowledging it in MESH deletes MESH's copy (issue 16)."""
