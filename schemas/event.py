"""The event contract: what producers put on vaccination.events.raw, and what the validator emits.

Unknown keys are rejected, in the envelope and in the record, so that a producer's typo (for
example `NHS_NUMBR`) is a visible rejection instead of a silently empty column. Changing any of
these shapes needs a bump of EVENT_SCHEMA_VERSION and a note in docs/decisions/.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec

from schemas.record import Reason, Record

EVENT_SCHEMA_VERSION: Final = 1

UtcDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


class RawEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One vaccination event as a producer sends it: an envelope and the 34 spec columns.

    Record values are strings; an absent key and "" both mean the column is empty. Values may
    use the lenient forms listed in docs/event-contract.md; the validator makes them canonical.
    """

    vaccine_type: Annotated[str, msgspec.Meta(description="File-name vaccine type, e.g. RSV, FLU, 3IN1")]
    sender_ods: Annotated[str, msgspec.Meta(description="ODS code of the sending organisation")]
    source_system: Annotated[str, msgspec.Meta(description="Id of the producing system, for tracing")]
    record: Annotated[Record, msgspec.Meta(description="The 34 batch-file columns; values need not be canonical yet")]
    received_at: Annotated[
        UtcDateTime | None, msgspec.Meta(description="When the producer received the event, RFC 3339")
    ] = None
    schema_version: Annotated[int, msgspec.Meta(description="Event contract version; only 1 exists")] = (
        EVENT_SCHEMA_VERSION
    )


class ValidEvent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An event that passed validation; `record` holds only canonical values.

    Its JSON decodes as a RawEvent too, so a valid event can be re-validated after a redrive.
    """

    schema_version: int = EVENT_SCHEMA_VERSION
    vaccine_type: str
    sender_ods: str
    source_system: str
    received_at: UtcDateTime | None = None
    record: Record


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """Why an event was refused, with the envelope when it could be read (never record values)."""

    schema_version: int = EVENT_SCHEMA_VERSION
    reasons: tuple[Reason, ...]
    vaccine_type: str | None = None
    sender_ods: str | None = None
    source_system: str | None = None
