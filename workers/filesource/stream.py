"""Reading a handed-in file in bounded memory, the same way schemas.batchfile.read_file reads it whole.

The file source used to hold about ten times a file's size (its bytes, the decoded text, every
parsed row, the split lines for dead letters: about 3 GiB at the 256 MiB cap) and parsed it on the
event loop (issue 17). Now a file is read twice through the one descriptor opened for it:

1. `survey`: 1 MiB blocks for its sha256 (the ledger key, needed before anything is published),
   the byte-order-mark check, whether it is UTF-8 or else cp1252 (incremental decoders, the same
   choice `schemas.delimited.decode` makes for the whole file) and its first line (the delimiter);
2. `rows`: a text stream over the same descriptor into csv.reader, each row parsed with its
   original text (for a dead letter). The worker takes rows in chunks on a
   thread (`take`) and produces each chunk before taking the next, so memory is bounded by a
   chunk, not by the file, and the event loop only ever produces.

Whole-file failures (BOM, encoding, header) are TableError from `survey` or the first chunk, before
any transaction; a malformed row further on raises TableError mid-file and the transaction aborts.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import BinaryIO, Final

from schemas.batchfile import ParsedRow, RowValidator, _parse_row
from schemas.columns import COLUMNS
from schemas.delimited import _BOMS, RawRow, TableError, _check_header
from schemas.dialect import DELIMITERS

BLOCK: Final = 1024 * 1024
CHUNK_ROWS: Final = 1000  # rows per hand-over from the parsing thread: ~1 MiB of rows at most
_HEAD_MAX: Final = 64 * 1024  # bytes of the first line kept to find the delimiter
_ENCODINGS: Final = ("utf-8", "cp1252")


@dataclass(frozen=True, slots=True)
class Survey:
    sha256: str
    size: int
    encoding: str
    delimiter: str


def survey(handle: BinaryIO) -> tuple[str, Survey | TableError]:
    """The sha256 of the whole file, and what the parse needs or why the file is unreadable."""
    sha = hashlib.sha256()
    decoders = {name: codecs.getincrementaldecoder(name)() for name in _ENCODINGS}
    bad: dict[str, tuple[int, int]] = {}  # encoding -> (offset, byte) of its first failure
    head = bytearray()
    offset = 0
    while block := handle.read(BLOCK):
        sha.update(block)
        for name, decoder in decoders.items():
            if name not in bad:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    bad[name] = (offset + max(exc.start, 0), exc.object[exc.start] if exc.object else 0)
        if b"\n" not in head and len(head) < _HEAD_MAX:
            head += block[: _HEAD_MAX - len(head)]
        offset += len(block)
    for name, decoder in decoders.items():
        if name not in bad:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                bad[name] = (offset, 0)
    digest = sha.hexdigest()
    for bom, bom_name in _BOMS:
        if head.startswith(bom):
            return digest, TableError(
                "file.bom",
                f"file starts with a {bom_name} byte-order mark; the receiver decodes plain UTF-8 "
                "and would refuse the header",
            )
    encoding = next((name for name in _ENCODINGS if name not in bad), None)
    if encoding is None:
        at, byte = bad[_ENCODINGS[-1]]
        return digest, TableError(
            "file.encoding", f"file is not valid {' or '.join(_ENCODINGS)} (byte 0x{byte:02X} at offset {at})"
        )
    if offset == 0:
        return digest, TableError("header.missing", "file is empty: it has no header row")
    first_line = bytes(head).partition(b"\n")[0].decode(encoding, "replace")
    delimiter = next((d for d in DELIMITERS if d in first_line), DELIMITERS[0])
    return digest, Survey(sha256=digest, size=offset, encoding=encoding, delimiter=delimiter)


class _Lines:
    """The text stream's lines for csv.reader, remembering those of the record being read."""

    def __init__(self, text: io.TextIOBase) -> None:
        self._text = text
        self.taken: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._text.readline()
        if not line:
            raise StopIteration
        self.taken.append(line)
        return line


def rows(
    handle: BinaryIO, found: Survey, *, vaccine_type: str, sender_ods: str, validator: RowValidator
) -> Generator[tuple[ParsedRow, str], None, None]:
    """Every row's outcome and its original text (from row.line to the next row, line endings at
    its end dropped: RowTexts' text), kept for a dead letter only as long as its chunk. TableError
    for the header or a malformed row. Reads `handle` from its start."""
    handle.seek(0)
    text = io.TextIOWrapper(handle, encoding=found.encoding, newline="")
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=found.delimiter)
    try:
        header = next(reader, [])
        _check_header(header, COLUMNS, found.delimiter, "".join(lines.taken).partition("\n")[0])
        lines.taken.clear()
        number = 0
        before = reader.line_num
        for fields in reader:
            if fields:
                number += 1
                row = _parse_row(RawRow(number, before + 1, fields), vaccine_type, sender_ods, validator)
                yield row, "".join(lines.taken).rstrip("\r\n")
            lines.taken.clear()
            before = reader.line_num
    except csv.Error as error:
        raise TableError("file.malformed", f"line {reader.line_num}: {error}") from None
    except UnicodeDecodeError:  # changed since the survey
        raise TableError("file.encoding", f"file is not valid {found.encoding}") from None
    finally:
        text.detach()  # the caller owns the descriptor


def take(source: Iterator[tuple[ParsedRow, str]], n: int = CHUNK_ROWS) -> list[tuple[ParsedRow, str]]:
    """The next `n` rows (fewer at the end): one hand-over from the parsing thread."""
    return list(islice(source, n))
