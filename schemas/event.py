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

EVENT_SCHEMA_VERSION: Final = 2
# Version 1 events (without extended attributes) stay accepted: version 2 only added a field
# (docs/decisions/0020-extended-attributes.md).
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({1, 2})
# More than any real event carries (the mock in NHS England's repository has one per row), few
# enough that one event cannot make a file of thousands of attribute rows.
MAX_EXTENDED_ATTRIBUTES: Final = 50

UtcDateTime = Annotated[datetime, msgspec.Meta(tz=True)]


class EventAttribute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One extended attribute of the event's vaccination (contract version 2).

    The extended-attribute file's other columns come from the event itself (VACCINATION_UNIQUE_ID
    and _URI are its UNIQUE_ID and UNIQUE_ID_URI, ACTION_FLAG its ACTION_FLAG), so a producer cannot
    attach an attribute to another vaccination. RECORDED_DATE defaults to the record's.
    """

    ATTRIBUTE_ID: Annotated[str, msgspec.Meta(description="Attribute identifier, e.g. a SNOMED CT or local code")] = ""
    ATTRIBUTE_DISPLAYED_TEXT: Annotated[str, msgspec.Meta(description="What the attribute is, in words")] = ""
    ATTRIBUTE_VALUE: Annotated[str, msgspec.Meta(description="The attribute's value")] = ""
    RECORDED_DATE: Annotated[
        str, msgspec.Meta(description="YYYYMMDD or YYYY-MM-DD; empty means the record's RECORDED_DATE")
    ] = ""


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
    schema_version: Annotated[int, msgspec.Meta(description="Event contract version: 1 or 2 (the default)")] = (
        EVENT_SCHEMA_VERSION
    )
    extended_attributes: Annotated[
        tuple[EventAttribute, ...],
        msgspec.Meta(description="Version 2: extended attributes of this vaccination (COVID and FLU only)"),
    ] = msgspec.field(default_factory=tuple)


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
    extended_attributes: tuple[EventAttribute, ...] = ()
    """Canonical: RECORDED_DATE filled in (YYYYMMDD)."""


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """Why an event was refused, with the envelope when it could be read (never record values)."""

    schema_version: int = EVENT_SCHEMA_VERSION
    reasons: tuple[Reason, ...]
    vaccine_type: str | None = None
    sender_ods: str | None = None
    source_system: str | None = None
