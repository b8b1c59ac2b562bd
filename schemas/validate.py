"""Validate and canonicalise events (JSON from Kafka) and records (rows of handed-in files).

Both entry points never raise: whatever a producer sends must end either as a ValidEvent or on
the rejected topic with reasons, and an exception would instead stall the consumer. The fast
path is shaped for the common case of a valid event (docs/architecture.md, "Scale"; decision 0014): the generic
checks run over all free-text values at once in C (join, regex, map), and only when one of them
fails does a per-field loop run to say which field failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache, wraps
from operator import gt, itemgetter
from typing import Final, NamedTuple, ParamSpec, TypeVar

import msgspec

from schemas.batchfile import render_values
from schemas.checks import ACTIONS, FORBIDDEN_CHARS, WHITESPACE_RUN, Checker, checker_for
from schemas.columns import COLUMNS
from schemas.dates import Clock
from schemas.event import (
    MAX_EXTENDED_ATTRIBUTES,
    SUPPORTED_SCHEMA_VERSIONS,
    EventAttribute,
    RawEvent,
    Rejection,
    ValidEvent,
)
from schemas.extended import (
    EXTENDED_EVENT_MESSAGES,
    EXTENDED_FIELD,
    EXTENDED_PERMISSION,
    EXTENDED_VACCINE_TYPES,
    ExtendedAttribute,
    event_extended_rows,
    render_extended_rows,
)
from schemas.fastpath import FAST_ROWS
from schemas.fields import COLUMN_RULES, ENVELOPE_RULES, FREE_FORM, Kind, Mandate, reason
from schemas.permissions import ACTION_LETTER, Permissions
from schemas.record import Reason, Record

# Far above any valid event (34 capped fields, even fully \u-escaped) and small enough that a
# hostile producer cannot make one decode expensive.
MAX_EVENT_BYTES: Final = 64 * 1024


_DECODER: Final = msgspec.json.Decoder(RawEvent)
_COLUMN_INDEX: Final = {name: i for i, name in enumerate(COLUMNS)}
_I_ACTION: Final = _COLUMN_INDEX["ACTION_FLAG"]
_I_UNIQUE_ID: Final = _COLUMN_INDEX["UNIQUE_ID"]
_I_UNIQUE_ID_URI: Final = _COLUMN_INDEX["UNIQUE_ID_URI"]
_I_RECORDED_DATE: Final = _COLUMN_INDEX["RECORDED_DATE"]
_MAX_LEN: Final = tuple(rule.cap for rule in COLUMN_RULES)
_REQUIRED_NEW: Final = frozenset(i for i, r in enumerate(COLUMN_RULES) if r.mandate is not Mandate.OPTIONAL)
_REQUIRED_DELETE: Final = frozenset(i for i, r in enumerate(COLUMN_RULES) if r.mandate is Mandate.ALWAYS)
_get_required_new: Final = itemgetter(*sorted(_REQUIRED_NEW))
_get_required_delete: Final = itemgetter(*sorted(_REQUIRED_DELETE))
_TEXT_COLUMNS: Final = tuple(i for i, r in enumerate(COLUMN_RULES) if r.kind in FREE_FORM)
_get_text: Final = itemgetter(*_TEXT_COLUMNS)
_MAX_TEXT: Final = tuple(_MAX_LEN[i] for i in _TEXT_COLUMNS)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _format_checks() -> tuple[tuple[int, Checker], ...]:
    found = []
    for i, rule in enumerate(COLUMN_RULES):
        check = checker_for(rule)
        if check is not None:
            found.append((i, check))
    return tuple(found)


_CODE_COLUMNS: Final = tuple(i for i, r in enumerate(COLUMN_RULES) if r.kind is Kind.CODE)
_get_codes: Final = itemgetter(*_CODE_COLUMNS)
# FHIR codes are checked together first (one regex over the joined values, NUL between them: not
# whitespace, so no run can span two values), and one by one only when that finds a run.
_CHECKS: Final = tuple((i, check) for i, check in _format_checks() if i not in _CODE_COLUMNS)
_CODE_CHECKS: Final = tuple((i, check) for i, check in _format_checks() if i in _CODE_COLUMNS)
_R_CONTROL: Final = tuple(reason(r.name, "control_char") for r in COLUMN_RULES)
_R_SPACE: Final = tuple(reason(r.name, "whitespace") for r in COLUMN_RULES)
_R_LENGTH: Final = tuple(
    reason(r.name, "format") if r.kind not in FREE_FORM else reason(r.name, "max_length") if r.max_length else None
    for r in COLUMN_RULES
)  # None: uncapped, so unreachable (no value can be longer than UNCAPPED)
_R_MANDATORY: Final = tuple(
    reason(r.name, "mandatory") if r.mandate is not Mandate.OPTIONAL else None for r in COLUMN_RULES
)
_R_ACTION_FORMAT: Final = reason("ACTION_FLAG", "format")
_R_ACTION_PERMISSION: Final = reason("ACTION_FLAG", "permission")
_R_TYPE_UNKNOWN: Final = reason("vaccine_type", "unknown")
_R_ODS_PERMISSION: Final = reason("sender_ods", "permission")
_SOURCE_RULE: Final = next(r for r in ENVELOPE_RULES if r.name == "source_system")


def _generic_failure(i: int, value: str, required: frozenset[int]) -> Reason | None:
    """The first generic rule (mandatory, characters, whitespace, length) column `i` fails."""
    if not value:
        return _R_MANDATORY[i] if i in required else None
    if FORBIDDEN_CHARS.search(value):
        return _R_CONTROL[i]
    if value != value.strip():
        return _R_SPACE[i]
    if len(value) > _MAX_LEN[i]:
        return _R_LENGTH[i]
    return None


def _record_failures(values: tuple[str, ...], required: frozenset[int], bad: dict[int, Reason]) -> None:
    """The slow path: which field failed which generic check, one reason per field."""
    for i, value in enumerate(values):
        failure = _generic_failure(i, value, required)
        if failure is not None:
            bad[i] = failure


def _check_values(
    values: tuple[str, ...], clock: Clock, no_controls: bool
) -> tuple[dict[int, str], dict[int, Reason], str | None]:
    """(canonical rewrites by column index, reasons by column index, canonical action or None).

    `no_controls` is the caller's proof that no value holds a forbidden character. For NEW
    and UPDATE the fast generic checks cover only free-text columns: a formatted value that
    passes its format cannot hold a control character, edge space or excess length, and one
    that fails is given its first generic reason, so both paths report the same rule.
    """
    action = ACTIONS.get(values[_I_ACTION])
    deleting = action == "DELETE"
    if deleting:
        required, checked, caps = _REQUIRED_DELETE, values, _MAX_LEN
    else:
        required, checked, caps = _REQUIRED_NEW, _get_text(values), _MAX_TEXT
    bad: dict[int, Reason] = {}
    if not (
        (no_controls or FORBIDDEN_CHARS.search("".join(checked)) is None)
        and checked == tuple(map(str.strip, checked))
        and all(_get_required_delete(values) if deleting else _get_required_new(values))
        and not any(map(gt, map(len, checked), caps))
    ):
        _record_failures(values, required, bad)
    changes: dict[int, str] = {}
    if action is None:
        if _I_ACTION not in bad:
            bad[_I_ACTION] = _generic_failure(_I_ACTION, values[_I_ACTION], required) or _R_ACTION_FORMAT
    elif action != values[_I_ACTION]:
        changes[_I_ACTION] = action
    if not deleting:  # the receiver validates no content of a DELETE row (digest section c)
        checks = _CHECKS
        if WHITESPACE_RUN.search("\0".join(_get_codes(values))):
            checks += _CODE_CHECKS
        for i, check in checks:
            value = values[i]
            if not value or (bad and i in bad):
                continue
            outcome = check(value, clock)
            if outcome is not None:
                if isinstance(outcome, str):
                    changes[i] = outcome
                else:
                    bad[i] = _generic_failure(i, value, required) or outcome
    return changes, bad, action


def _check_record(
    record: Record, clock: Clock, no_controls: bool
) -> tuple[Record | None, dict[int, Reason], str | None]:
    """(canonical record or None, reasons by column index, canonical action or None)."""
    changes, bad, action = _check_values(msgspec.structs.astuple(record), clock, no_controls)
    if bad:
        return None, bad, action
    return _rewritten(record, changes), bad, action


def _rewritten(record: Record, changes: dict[int, str]) -> Record:
    if not changes:
        return record
    return msgspec.structs.replace(record, **{COLUMNS[i]: value for i, value in changes.items()})


def _text_ok(value: str) -> bool:
    return FORBIDDEN_CHARS.search(value) is None and value == value.strip()


@lru_cache(maxsize=4096)
def _envelope(
    permissions: Permissions, vaccine_type: str, sender_ods: str, source_system: str | None
) -> tuple[tuple[Reason, ...], str, str, frozenset[str]]:
    """(envelope reasons, upper-cased type and ODS code, C/U/D letters held for the type).

    Cached: a deployment sees a handful of (type, sender, source) combinations, so the
    checks run once per combination instead of once per event.
    """
    reasons: list[Reason] = []
    vt = vaccine_type.upper() if vaccine_type.isascii() else ""  # the receiver upper-cases names
    ods = sender_ods.upper() if sender_ods.isascii() else ""
    known_type = vt in permissions.vaccine_types
    if not known_type:
        reasons.append(_R_TYPE_UNKNOWN)
    letters = permissions.letters(ods, vt) if known_type else frozenset()
    if not permissions.grants.get(ods) or (known_type and not letters):
        reasons.append(_R_ODS_PERMISSION)
    if source_system is not None:
        name = _SOURCE_RULE.name
        if not source_system:
            reasons.append(reason(name, "mandatory"))
        elif FORBIDDEN_CHARS.search(source_system):
            reasons.append(reason(name, "control_char"))
        elif source_system != source_system.strip():
            reasons.append(reason(name, "whitespace"))
        elif len(source_system) > _SOURCE_RULE.cap:
            reasons.append(reason(name, "max_length"))
    return tuple(reasons), vt, ods, letters


def _check_envelope(
    vaccine_type: str,
    sender_ods: str,
    source_system: str | None,
    action: str | None,
    permissions: Permissions,
    bad: dict[int, Reason],
) -> tuple[list[Reason], str, str]:
    """Envelope reasons and canonical type and ODS; records a refused action in `bad`."""
    reasons, vt, ods, letters = _envelope(permissions, vaccine_type, sender_ods, source_system)
    if letters and action is not None and ACTION_LETTER[action] not in letters and _I_ACTION not in bad:
        bad[_I_ACTION] = _R_ACTION_PERMISSION
    return list(reasons), vt, ods


def _ordered(envelope: list[Reason], bad: dict[int, Reason]) -> list[Reason]:
    return envelope + [bad[i] for i in sorted(bad)]


_ENVELOPE_PATHS: Final = {
    f"$.{name}": name for name in ("vaccine_type", "sender_ods", "source_system", "received_at", "schema_version")
}
_AT_PATH: Final = re.compile(r" - at `(\$[^`]*)`\Z")
_MISSING: Final = re.compile(r"Object missing required field `([a-z_]+)`")


def _structure_reason(message: str) -> Reason:
    """Map msgspec's first structural error to a rule; its text may quote keys, so it is dropped."""
    at = _AT_PATH.search(message)
    path = at.group(1) if at else "$"
    if path.startswith("$.extended_attributes"):
        unknown = message.startswith("Object contains unknown")
        return reason("extended_attributes", "unknown_field" if unknown else "type")
    if message.startswith("Object contains unknown field"):
        return reason("record" if path == "$.record" else "event", "unknown_field")
    missing = _MISSING.match(message)
    if missing and path == "$" and missing.group(1) in ("vaccine_type", "sender_ods", "source_system", "record"):
        return reason(missing.group(1), "missing")
    if path in _ENVELOPE_PATHS:
        return reason(_ENVELOPE_PATHS[path], "type")
    if path == "$.record":
        return reason("record", "type")
    if path.startswith("$.record.") and path[9:] in _COLUMN_INDEX:
        return reason(path[9:], "type")
    return reason("event", "type")


def _no_controls(raw: bytes) -> bool:
    """True when no decoded string can hold a forbidden character, judged from the bytes.

    JSON forbids raw control characters inside strings, so only an escape, a DEL or a
    non-ASCII byte could produce one; checking three byte patterns is cheaper than a regex
    over every decoded value.
    """
    return raw.isascii() and b"\\" not in raw and b"\x7f" not in raw


class _Checked(NamedTuple):
    """An event that passed every rule, before its canonical form is built."""

    event: RawEvent
    values: tuple[str, ...]
    changes: dict[int, str]  # canonical rewrites by column index
    vaccine_type: str
    sender_ods: str
    extended: list[ExtendedAttribute]  # its extended-attribute file rows (contract v2)


_R_EXTENDED: Final = {
    suffix: Reason(
        field=EXTENDED_FIELD, rule=f"{EXTENDED_FIELD}.{suffix}",
        message=f"{EXTENDED_FIELD} {text.format(max_items=MAX_EXTENDED_ATTRIBUTES)}",
    )
    for suffix, text in EXTENDED_EVENT_MESSAGES.items()
}


def _check_extended(
    event: RawEvent, values: tuple[str, ...], changes: dict[int, str], action: str, vt: str, ods: str,
    permissions: Permissions, clock: Clock,
) -> tuple[list[ExtendedAttribute], list[Reason]]:
    """The event's extended-attribute rows, or why they cannot be sent (docs/decisions/0020).

    Refused here, not at NHS England: a file of attributes the receiver would refuse (a flu-only
    supplier, see EXTENDED_PERMISSION) must not be sent as if it were fine.
    """
    attributes: tuple[EventAttribute, ...] = event.extended_attributes
    if event.schema_version < 2:
        return [], [_R_EXTENDED["schema_version"]]
    if vt not in EXTENDED_VACCINE_TYPES:
        return [], [_R_EXTENDED["vaccine_type"]]
    covid, needed = EXTENDED_PERMISSION
    if not needed <= permissions.letters(ods, covid):
        return [], [_R_EXTENDED["permission"]]
    if len(attributes) > MAX_EXTENDED_ATTRIBUTES:
        return [], [_R_EXTENDED["max_items"]]
    return event_extended_rows(
        attributes,
        unique_id=values[_I_UNIQUE_ID],
        unique_id_uri=values[_I_UNIQUE_ID_URI],
        action=action,
        recorded_date=changes.get(_I_RECORDED_DATE, values[_I_RECORDED_DATE]),
        clock=clock,
    )


def _check_event(raw: object, permissions: Permissions, clock: Clock) -> _Checked | list[Reason]:
    if isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        return [reason("event", "json")]
    if len(raw) > MAX_EVENT_BYTES:
        return [reason("event", "too_large")]
    try:
        event = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        return [_structure_reason(str(exc))]
    except (msgspec.DecodeError, UnicodeDecodeError):
        return [reason("event", "json")]
    if event.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
        return [reason("schema_version", "unsupported")]
    values: tuple[str, ...] = msgspec.structs.astuple(event.record)
    changes, bad, action = _check_values(values, clock, _no_controls(raw))
    envelope, vt, ods = _check_envelope(
        event.vaccine_type, event.sender_ods, event.source_system, action, permissions, bad
    )
    if envelope or bad:
        return _ordered(envelope, bad)
    extended: list[ExtendedAttribute] = []
    if event.extended_attributes and action is not None:
        extended, refused = _check_extended(event, values, changes, action, vt, ods, permissions, clock)
        if refused:
            return refused
    return _Checked(event, values, changes, vt, ods, extended)


def _never_raises(validate: Callable[_P, _R]) -> Callable[_P, _R | list[Reason]]:
    """The entry points' promise (see the module docstring): an exception in any check becomes
    the single reason `event.internal`, so the input is rejected instead of stalling a consumer.

    validate_event_row keeps the same guard inline: it is the validator's hot path, one call less.
    """

    @wraps(validate)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R | list[Reason]:
        try:
            return validate(*args, **kwargs)
        except Exception:
            return [reason("event", "internal")]

    return guarded


ValidRow = tuple[str, str, bytes, bytes]
"""(canonical vaccine type, canonical sender ODS code, the event's canonical file row, its
extended-attribute rows as render_extended_rows writes them: b"" when it has none)."""


def validate_event_row(
    raw: bytes, *, permissions: Permissions, now: datetime | None = None, native: bool = True
) -> ValidRow | list[Reason]:
    """validate_event, then render_row of its record, without building the canonical record between.

    The validator publishes only the row (docs/decisions/0011-valid-topic-rows.md), and on its
    hot path the ValidEvent and the rewritten Record were built only to be taken apart again.
    Same rules, same reasons, same bytes as the two-step path
    (tests/schemas/test_schemas_validate_properties.py compares them). With `native` and the
    compiled module installed, an event it is sure of skips the Python rules altogether
    (schemas/fastpath.py); whatever it declines comes here, so reasons are always Python's.
    """
    try:
        clock = Clock(now)
        if native and FAST_ROWS is not None and type(raw) is bytes:
            fast = FAST_ROWS.row(raw, clock.epoch, clock.today)
            if fast is not None:
                vaccine_type, sender_ods, source_system, action, row = fast
                reasons, vt, ods, letters = _envelope(permissions, vaccine_type, sender_ods, source_system)
                if not reasons and ACTION_LETTER[action] in letters:
                    return vt, ods, row, b""  # it declines events that carry extended attributes
        checked = _check_event(raw, permissions, clock)
        if isinstance(checked, list):
            return checked
        values = list(checked.values)
        for i, value in checked.changes.items():
            values[i] = value
        extended = render_extended_rows(checked.extended) if checked.extended else b""
        return checked.vaccine_type, checked.sender_ods, render_values(values), extended
    except Exception:
        return [reason("event", "internal")]


@_never_raises
def validate_event(raw: bytes, *, permissions: Permissions, now: datetime | None = None) -> ValidEvent | list[Reason]:
    """A ValidEvent with canonical values, or every reason (one per failing field) it was refused.

    `now` fixes the clock for the "not in the future" rules (tests, replays); naive means UTC.
    A structurally broken event (not JSON, wrong types, unknown keys) gets a single reason,
    because nothing after the first structural error can be trusted.
    """
    checked = _check_event(raw, permissions, Clock(now))
    if isinstance(checked, list):
        return checked
    event = checked.event
    return ValidEvent(
        vaccine_type=checked.vaccine_type,
        sender_ods=checked.sender_ods,
        source_system=event.source_system,
        received_at=event.received_at,
        record=_rewritten(event.record, checked.changes),
        extended_attributes=tuple(
            EventAttribute(
                ATTRIBUTE_ID=a.ATTRIBUTE_ID, ATTRIBUTE_DISPLAYED_TEXT=a.ATTRIBUTE_DISPLAYED_TEXT,
                ATTRIBUTE_VALUE=a.ATTRIBUTE_VALUE, RECORDED_DATE=a.RECORDED_DATE,
            )
            for a in checked.extended
        ),
    )


@_never_raises
def validate_record(
    vaccine_type: str,
    sender_ods: str,
    record: Mapping[str, str | None],
    *,
    permissions: Permissions,
    now: datetime | None = None,
) -> Record | list[Reason]:
    """Validate one row of a handed-in file; the type and sender come from its file name.

    None or a missing key means the column is empty, as the receiver treats short rows.
    """
    values: dict[str, str] = {}
    typed: dict[int, Reason] = {}
    extra: list[Reason] = []
    for key, value in record.items():
        index = _COLUMN_INDEX.get(key) if isinstance(key, str) else None
        if index is None:
            extra = [reason("record", "unknown_field")]
        elif isinstance(value, str):
            values[key] = value
        elif value is not None:
            typed[index] = reason(key, "type")
    canonical, bad, action = _check_record(Record(**values), Clock(now), False)
    bad.update(typed)
    vt = vaccine_type if isinstance(vaccine_type, str) else ""
    ods = sender_ods if isinstance(sender_ods, str) else ""
    envelope, _, _ = _check_envelope(vt, ods, None, action, permissions, bad)
    envelope += extra
    if envelope or bad or canonical is None:
        return _ordered(envelope, bad)
    return canonical


class _EnvelopeProbe(msgspec.Struct):
    vaccine_type: object = None
    sender_ods: object = None
    source_system: object = None


_PROBE: Final = msgspec.json.Decoder(_EnvelopeProbe)


def rejection_for(raw: bytes, reasons: Sequence[Reason]) -> Rejection:
    """The Rejection to publish for `raw`, with whatever envelope fields can still be read.

    Envelope values are kept only when short and printable: they name a sender, not a patient.
    """

    def keep(value: object) -> str | None:
        if isinstance(value, str) and len(value) <= 100 and _text_ok(value):
            return value
        return None

    try:
        probe = _PROBE.decode(raw) if len(raw) <= MAX_EVENT_BYTES else _EnvelopeProbe()
    except Exception:
        probe = _EnvelopeProbe()
    return Rejection(
        reasons=tuple(reasons),
        vaccine_type=keep(probe.vaccine_type),
        sender_ods=keep(probe.sender_ods),
        source_system=keep(probe.source_system),
    )
