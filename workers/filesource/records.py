"""What a handed-in file becomes: its ledger entry, its rejection note, and for each row a raw event
or a dead letter with the headers that lead back to the provider's file, row and line.

Pure: the worker (worker.py) reads the directory, publishes and moves files; this decides the bytes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from schemas.batchfile import ParsedFile, ParsedRow
from schemas.record import Reason
from topics import headers as h
from topics.catalogue import REJECTED
from workers.base.settings import FileSettings

DONE: Final = "done"
REJECTED_DIR: Final = "rejected"
EXTENSIONS: Final = frozenset({".csv", ".dat"})
STAGE: Final = "filesource"
LEDGER_SCHEMA_VERSION: Final = 1

# The source_system envelope field is capped at 100 characters by the contract; the full name
# travels in the vaxflow.source.file header.
SOURCE_SYSTEM_MAX: Final = 100
# Headroom under the rejected topic's max.message.bytes for the headers of a dead letter.
_DEAD_LETTER_MAX: Final = REJECTED.max_message_bytes - 64 * 1024


class SourceFile(msgspec.Struct, frozen=True, kw_only=True):
    """One processed file in the ledger: enough to recognise it again and to report on it."""

    schema_version: int = LEDGER_SCHEMA_VERSION
    sha256: str
    file_name: str
    source: str  # the transactional id, i.e. which directory it came from
    rows: int
    published: int
    rejected: int
    processed_at: str


class RejectedFile(msgspec.Struct, frozen=True, kw_only=True):
    """The `.reasons.json` written next to a file moved to rejected/."""

    file_name: str
    sha256: str
    reasons: list[Reason]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one file; returned by poll_once for tests and logs."""

    file_name: str
    outcome: str  # published | replayed | duplicate | rejected
    published: int = 0
    rejected: int = 0


def transactional_id_for(settings: FileSettings, directory: Path) -> str:
    """One writer per directory: the id is a pure function of the resolved path unless configured."""
    if settings.filesource_transactional_id:
        return settings.filesource_transactional_id
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    return f"vaxflow-filesource-{digest}"


def printable_name(name: str) -> str:
    """The file name as valid UTF-8: a name of undecodable bytes (surrogate escapes) gets U+FFFD.

    The name travels in JSON, headers and logs, none of which can carry lone surrogates.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def file_reason(rule: str, message: str) -> Reason:
    return Reason(field="file", rule=rule, message=message)


class RowTexts:
    """The original text of a row (the lines it spans), for dead letters; split only when needed.

    csv's line numbers count physical lines as io.StringIO(newline="") splits them, so the same
    splitting is used here; a row ends where the next row (or the file) starts, less line endings.
    """

    def __init__(self, data: bytes, parsed: ParsedFile) -> None:
        self._data = data
        self._parsed = parsed
        self._lines: list[str] | None = None
        self._ends: dict[int, int] = {}

    def __call__(self, row: ParsedRow) -> str:
        if self._lines is None:
            self._lines = io.StringIO(self._data.decode(self._parsed.encoding), newline="").readlines()
            starts = [r.line for r in self._parsed.rows] + [len(self._lines) + 1]
            self._ends = {r.number: starts[i + 1] - 1 for i, r in enumerate(self._parsed.rows)}
        return "".join(self._lines[row.line - 1 : self._ends[row.number]]).rstrip("\r\n")


def dead_letter_row(
    name: str, sha: str, row: ParsedRow, text: str, encoding: str, reasons: Sequence[Reason]
) -> tuple[bytes, list[tuple[str, bytes]]]:
    value = text.encode(encoding)
    headers = [
        (key, raw)
        for key, raw in h.dead_letter_headers(
            topic=f"{STAGE}:{name}",
            partition=-1,
            offset=-1,
            stage=STAGE,
            exc_class="RowStructureError",
            exc_message="; ".join(f"{r.field}:{r.rule}" for r in reasons),
            origin=b"",
            reasons=reasons,
        )
        if key != h.ORIGIN  # never reached the raw topic, so it has no origin
    ]
    headers += source_headers(name, sha, row)
    if len(value) > _DEAD_LETTER_MAX:
        value = value[:_DEAD_LETTER_MAX]
        headers.append((h.SOURCE_TRUNCATED, b"true"))
    return value, headers

def source_headers(name: str, sha: str, row: ParsedRow) -> list[tuple[str, bytes]]:
    return [
        (h.SOURCE_FILE, name.encode()),
        (h.SOURCE_SHA256, sha.encode()),
        (h.SOURCE_ROW, b"%d" % row.number),
        (h.SOURCE_LINE, b"%d" % row.line),
    ]
