"""Request bodies to events: split lines, decode each into a RawEvent, say precisely what is wrong.

Only the *shape* is checked here (UTF-8 JSON, an object, known envelope and record keys with the
right types, a size the raw topic can hold). Content rules (NHS number, dates, codes, supplier
permissions) stay with the validator, which dead-letters failures with reasons; checking them
twice would let the two drift apart. What the gateway forwards is the original bytes of each line,
so the validator sees exactly what the caller sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import msgspec

from schemas.batchkey import encode_key
from schemas.columns import COLUMNS
from schemas.event import RawEvent
from schemas.fields import reason
from schemas.record import Reason
from schemas.validate import MAX_EVENT_BYTES
from workers.gateway.api import LineError

MAX_LISTED: Final = 100
"""At most this many refused lines are reported (and checked): the request fails at the first one."""

_DECODER: Final = msgspec.json.Decoder(RawEvent)
_AT_PATH: Final = re.compile(r" - at `(\$[^`]*)`\Z")
_UNKNOWN: Final = re.compile(r"Object contains unknown field `([^`]*)`")
_MISSING: Final = re.compile(r"Object missing required field `([a-z_]+)`")
_SAFE_KEY: Final = re.compile(r"[A-Za-z0-9_]{1,64}")
_REQUIRED: Final = frozenset({"vaccine_type", "sender_ods", "source_system", "record"})
_ENVELOPE: Final = frozenset({"vaccine_type", "sender_ods", "source_system", "received_at", "schema_version"})
_COLUMN_NAMES: Final = frozenset(COLUMNS)
_JSON_SPACE: Final = b" \t\r"

EMPTY_BODY: Final = Reason(field="body", rule="body.empty", message="body holds no event")


@dataclass(frozen=True, slots=True)
class Line:
    """One decoded event and the exact bytes it came from."""

    number: int
    raw: bytes
    event: RawEvent

    @property
    def key(self) -> bytes:
        """The raw topic's key, so one batch key always lands on one partition."""
        return encode_key(self.event.vaccine_type.upper(), self.event.sender_ods.upper())


def _line_error(number: int, why: Reason, detail: str = "") -> LineError:
    return LineError(line=number, field=why.field, rule=why.rule, message=why.message + detail)


def structure_error(number: int, message: str) -> LineError:
    """msgspec's first structural error as a rule id; only a key name (never a value) is quoted."""
    at = _AT_PATH.search(message)
    path = at.group(1) if at else "$"
    unknown = _UNKNOWN.match(message)
    if path.startswith("$.extended_attributes"):  # contract version 2 (docs/decisions/0020)
        return _line_error(number, reason("extended_attributes", "unknown_field" if unknown else "type"))
    if unknown:
        key = unknown.group(1)
        detail = f": {key}" if _SAFE_KEY.fullmatch(key) else ""
        return _line_error(number, reason("record" if path == "$.record" else "event", "unknown_field"), detail)
    missing = _MISSING.match(message)
    if missing and path == "$" and missing.group(1) in _REQUIRED:
        return _line_error(number, reason(missing.group(1), "missing"))
    name = path[2:] if path.startswith("$.") else ""
    if name in _ENVELOPE:
        return _line_error(number, reason(name, "type"))
    if name == "record":
        return _line_error(number, reason("record", "type"))
    if name.startswith("record.") and name[7:] in _COLUMN_NAMES:
        return _line_error(number, reason(name[7:], "type"))
    return _line_error(number, reason("event", "type"))


def decode_line(number: int, raw: bytes) -> Line | LineError:
    if len(raw) > MAX_EVENT_BYTES:
        return _line_error(number, reason("event", "too_large"))
    try:
        return Line(number=number, raw=raw, event=_DECODER.decode(raw))
    except msgspec.ValidationError as exc:
        return structure_error(number, str(exc))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _line_error(number, reason("event", "json"))


def split_ndjson(body: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes without the line ending) for each non-blank line; CRLF is accepted.

    A generator over `find` so that a body of millions of empty lines costs no list of them.
    """
    start = number = 0
    size = len(body)
    while start < size:
        end = body.find(b"\n", start)
        if end < 0:
            end = size
        number += 1
        line = body[start:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip(_JSON_SPACE):
            yield number, line
        start = end + 1


@dataclass(slots=True)
class Parsed:
    lines: list[Line]
    errors: list[LineError]
    truncated: bool


def parse_body(body: bytes, *, ndjson: bool) -> Parsed:
    """Every line decoded, or the first MAX_LISTED reasons why not.

    application/json is one event: the body itself, forwarded as is. NDJSON is one event per
    line; blank lines are skipped but still counted, so reported numbers match the caller's file.
    """
    pieces: Iterator[tuple[int, bytes]] = split_ndjson(body) if ndjson else iter(((1, body),))
    lines: list[Line] = []
    errors: list[LineError] = []
    truncated = False
    for number, raw in pieces:
        outcome = decode_line(number, raw)
        if isinstance(outcome, Line):
            if not errors:
                lines.append(outcome)
            continue
        if len(errors) == MAX_LISTED:
            truncated = True
            break
        errors.append(outcome)
    if not lines and not errors:
        errors.append(_line_error(1, EMPTY_BODY))
    return Parsed(lines=lines if not errors else [], errors=errors, truncated=truncated)
