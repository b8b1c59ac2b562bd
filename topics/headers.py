"""Record headers in vaxflow's own namespace (`vaxflow.*`), Kafka-Connect style for dead letters.

Dead-letter records keep the original bytes as their value and say where they came from and why
in headers, as Kafka Connect's `errors.deadletterqueue.context.headers.enable` does, so that an
operator's redrive can put them back exactly as they arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import orjson

from schemas.record import Reason

ORIGIN: Final = "vaxflow.origin"
# On a valid record (catalogue v7): the event's extended-attribute rows, as lines of the
# extended-attribute file (quoted, `|`, UTF-8, LF between rows); absent when it has none.
EXTENDED: Final = "vaxflow.extended"
DLQ_TOPIC: Final = "vaxflow.dlq.topic"
DLQ_PARTITION: Final = "vaxflow.dlq.partition"
DLQ_OFFSET: Final = "vaxflow.dlq.offset"
DLQ_STAGE: Final = "vaxflow.dlq.stage"
DLQ_EXC_CLASS: Final = "vaxflow.dlq.exception.class"
DLQ_EXC_MESSAGE: Final = "vaxflow.dlq.exception.message"
DLQ_REASONS: Final = "vaxflow.dlq.reasons"
REDRIVE_COUNT: Final = "vaxflow.redrive.count"
# Where a redriven record was taken from (`topic:partition:offset` of the dead letter).
REDRIVE_FROM: Final = "vaxflow.redrive.from"
# A refused repeat's first submission (`partition:offset` of its raw record), as ORIGIN is written.
FIRST_ORIGIN: Final = "vaxflow.dlq.first.origin"
# An upload dead letter's MESH HTTP status (absent when MESH never answered or was not asked).
DLQ_MESH_STATUS: Final = "vaxflow.dlq.mesh.status"
# The MESH message a quarantined inbox message was (acknowledged, so gone from MESH).
DLQ_MESH_MESSAGE_ID: Final = "vaxflow.dlq.mesh.message.id"

# Where a record came from, on raw events and dead letters alike: sender feedback maps an outcome
# back to the provider's file and row (file source) or request and line (gateway) with these.
SOURCE_FILE: Final = "vaxflow.source.file"
SOURCE_SHA256: Final = "vaxflow.source.sha256"
SOURCE_ROW: Final = "vaxflow.source.row"
SOURCE_LINE: Final = "vaxflow.source.line"
SOURCE_TRUNCATED: Final = "vaxflow.source.truncated"
GATEWAY_CLIENT: Final = "vaxflow.gateway.client"
GATEWAY_REQUEST: Final = "vaxflow.gateway.request"
GATEWAY_LINE: Final = "vaxflow.gateway.line"

Headers = list[tuple[str, bytes]]


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def printable(text: str) -> str:
    """`text` as valid UTF-8: undecodable bytes (surrogate escapes, as aiohttp and os give them
    for a header or file name that is not UTF-8) become U+FFFD. JSON, headers and logs cannot
    carry lone surrogates; encoding one raised and crash-looped the worker (issue 16)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def quarantine_headers(
    *, stage: str, exc_class: str, exc_message: str, reasons: Sequence[Reason], mesh_message_id: str, file_name: str
) -> Headers:
    """Connect-style headers of a MESH inbox message set aside as unreadable: no topic, partition or
    offset (it never was in Kafka), but the MESH message id and the file name it arrived under."""
    listed = [{"field": r.field, "rule": r.rule, "message": r.message} for r in reasons]
    return [
        (DLQ_STAGE, stage.encode()),
        (DLQ_EXC_CLASS, exc_class.encode()),
        (DLQ_EXC_MESSAGE, printable(exc_message).encode()[:4000]),
        (DLQ_REASONS, orjson.dumps(listed)),
        (DLQ_MESH_MESSAGE_ID, printable(mesh_message_id).encode()),
        (SOURCE_FILE, printable(file_name).encode()),
    ]


def dead_letter_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    exc_class: str,
    exc_message: str,
    origin: bytes,
    reasons: Sequence[Reason] = (),
) -> Headers:
    out: Headers = [
        (ORIGIN, origin),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
        (DLQ_STAGE, stage.encode()),
        (DLQ_EXC_CLASS, exc_class.encode()),
        (DLQ_EXC_MESSAGE, exc_message.encode()[:4000]),
    ]
    if reasons:
        listed = [{"field": r.field, "rule": r.rule, "message": r.message} for r in reasons]
        out.append((DLQ_REASONS, orjson.dumps(listed)))
    return out
