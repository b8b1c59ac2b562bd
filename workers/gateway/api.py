"""The gateway's response bodies as msgspec Structs: one definition for encoding and for OpenAPI.

docs/openapi/gateway.json is generated from these and from schemas.event.RawEvent (see
workers/gateway/openapi.py), so the published contract cannot drift from what the code sends.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class LineError(msgspec.Struct, frozen=True, kw_only=True):
    """Why one line (one event) of a request was refused; never quotes a record value."""

    line: Annotated[int, msgspec.Meta(ge=1, description="1-based line of the body (1 for application/json)")]
    field: Annotated[str, msgspec.Meta(description="The envelope field, spec column, or 'event' / 'body'")]
    rule: Annotated[str, msgspec.Meta(description="Stable rule id, the same ids the validator uses")]
    message: Annotated[str, msgspec.Meta(description="For people; names the field and rule, not the value")]


class Coordinate(msgspec.Struct, frozen=True, kw_only=True):
    """Where Kafka stored one event: its origin, the identity it keeps through the pipeline."""

    partition: Annotated[int, msgspec.Meta(ge=0, description="Partition of vaccination.events.raw")]
    offset: Annotated[int, msgspec.Meta(ge=0, description="Offset in that partition")]


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """202: every event of the request is on vaccination.events.raw, acknowledged by all replicas."""

    accepted: Annotated[int, msgspec.Meta(ge=1, description="Number of events written")]
    events: Annotated[list[Coordinate], msgspec.Meta(description="One origin per event, in body order")]


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Every non-2xx answer of POST /v1/events; `lines` only for 400 and 403."""

    error: Annotated[
        str,
        msgspec.Meta(
            description="unauthorized, forbidden, invalid_events, invalid_idempotency_key, payload_too_large, "
            "unsupported_media_type, request_timeout, idempotency_key_in_use, idempotency_key_reused, "
            "too_many_requests, unavailable"
        ),
    ]
    message: str
    # None (omitted) except on 400 and 403, where all three are always present.
    lines: list[LineError] | None = None
    errors: Annotated[int, msgspec.Meta(ge=0, description="Refused lines found; checking stops after 100")] | None = (
        None
    )
    truncated: (
        Annotated[bool, msgspec.Meta(description="True when checking stopped after 100 refused lines")] | None
    ) = None
