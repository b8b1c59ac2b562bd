"""The streamed read (workers/filesource/stream.py) gives what the whole-file read gives.

schemas.batchfile.read_file plus records.RowTexts is the reference: the same rows, numbers, lines,
records and reasons, the same original text per row, the same whole-file rule, for every line
ending, both encodings, both delimiters, blank lines and rows spanning lines, and across chunks.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.batchfile import parse_only, read_file
from schemas.delimited import TableError
from workers.filesource import stream
from workers.filesource.records import RowTexts

DATA = Path(__file__).parent / "data"
FILES = sorted(p for p in DATA.iterdir() if p.suffix.lower() in (".csv", ".dat"))


Rows = tuple[str, str, str, list[tuple[int, int, object, tuple[object, ...], str]]]


def streamed(data: bytes, chunk: int = 2) -> Rows:
    handle = io.BytesIO(data)
    sha, found = stream.survey(handle)
    if isinstance(found, TableError):
        raise found
    rows = stream.rows(handle, found, vaccine_type="MMR", sender_ods="X8E5B", validator=parse_only)
    out = []
    while part := stream.take(rows, chunk):
        out += [(r.number, r.line, r.record, r.reasons, text) for r, text in part]
    return sha, found.encoding, found.delimiter, out


def whole(data: bytes) -> Rows:
    parsed = read_file(data, vaccine_type="MMR", sender_ods="X8E5B", validator=parse_only)
    texts = RowTexts(data, parsed)
    rows = [(r.number, r.line, r.record, r.reasons, texts(r)) for r in parsed.rows]
    return hashlib.sha256(data).hexdigest(), parsed.encoding, parsed.delimiter, rows


def outcome(read: Callable[[bytes], object], data: bytes) -> object:
    try:
        return read(data)
    except TableError as exc:  # a whole-file failure (e.g. a CR-only file whose one "line" has a `|`)
        return exc.rule


def variants(data: bytes) -> list[bytes]:
    header, *rows = [line for line in data.replace(b"\r\n", b"\n").split(b"\n") if line]
    rows[0] = rows[0] + b"|EXTRA"  # a row with 35 fields: a failure with its text
    rows.insert(1, b"")  # a blank line
    spanning = rows[-1].replace(b'"|"', b'"|"\nX', 1) if len(rows) > 2 else rows[-1]
    out = []
    for newline in (b"\n", b"\r\n", b"\r"):
        out.append(newline.join([header, *rows]) + newline)
        out.append(newline.join([header, *rows[:-1], spanning]))  # no final line end
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_the_streamed_read_matches_the_whole_file_read(path: Path) -> None:
    for data in [path.read_bytes(), *variants(path.read_bytes())]:
        assert outcome(streamed, data) == outcome(whole, data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xef\xbb\xbfNHS_NUMBER",
        b"NHS_NUMBR|X\n",
        b"\n\n",
        (DATA / FILES[0].name).read_bytes().replace(b"DELYTH", b"DEL\x81YTH\xff"),
        (DATA / FILES[0].name).read_bytes() + b'"unterminated\n' + b"x" * 200_000,
    ],
    ids=["empty", "bom", "header", "blank-header", "encoding", "malformed"],
)
def test_whole_file_failures_have_the_same_rule(data: bytes) -> None:
    with pytest.raises(TableError) as reference:
        whole(data)
    with pytest.raises(TableError) as got:
        streamed(data)
    assert got.value.rule == reference.value.rule


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b'"', b"|", b"\xc2\xac", b"a", b"\xe9", b" "]), max_size=60))
def test_any_body_reads_the_same_streamed_and_whole(body: list[bytes]) -> None:
    data = FILES[0].read_bytes().split(b"\n")[0] + b"\n" + b"".join(body)
    assert outcome(lambda d: streamed(d, chunk=1), data) == outcome(whole, data)


async def test_a_file_is_parsed_off_the_event_loop_in_bounded_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: the file was parsed on the event loop. Every row is now parsed on another thread,
    handed over in chunks of at most CHUNK_ROWS, and produced before the next chunk is parsed."""
    from benchmarks.bench_filesource_memory import NAME, _DroppingProducer, write_file
    from workers.base.settings import Settings
    from workers.filesource.worker import FileSource

    rows = write_file(tmp_path / NAME, 2)
    loop_thread = threading.get_ident()
    parsed_on: set[int] = set()
    ahead: list[int] = []  # rows parsed but not yet produced, at each parse
    producer = _DroppingProducer()
    real_parse = stream._parse_row

    def parse(*args: Any) -> Any:
        parsed_on.add(threading.get_ident())
        ahead.append(parsed[0] - producer.sent)
        parsed[0] += 1
        return real_parse(*args)

    parsed = [0]
    monkeypatch.setattr(stream, "_parse_row", parse)
    source = FileSource(Settings(topic_namespace="unit", filesource_settle_seconds=0), tmp_path)
    source._producer = producer  # type: ignore[assignment]
    outcome = await source.process(tmp_path / NAME)
    assert outcome is not None
    assert outcome.published == rows
    assert producer.sent == rows + 1  # and the ledger entry
    assert loop_thread not in parsed_on
    assert max(ahead) < stream.CHUNK_ROWS


async def test_a_malformed_row_after_the_first_chunk_aborts_the_transaction_and_rejects_the_file(
    tmp_path: Path,
) -> None:
    """Rows before it were already produced in the open transaction: it is aborted, never committed."""
    from benchmarks.bench_filesource_memory import NAME, _DroppingProducer, write_file
    from workers.base.settings import Settings
    from workers.filesource.worker import FileSource

    class Recording(_DroppingProducer):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        async def commit_transaction(self) -> None:
            self.calls.append("commit")

        async def abort_transaction(self) -> None:
            self.calls.append("abort")

    path = tmp_path / NAME
    write_file(path, 2)
    with path.open("ab") as handle:
        handle.write(b'"unterminated' + b"x" * 200_000 + b"\n")  # over csv's field limit
    producer = Recording()
    source = FileSource(Settings(topic_namespace="unit", filesource_settle_seconds=0), tmp_path)
    source._producer = producer  # type: ignore[assignment]
    outcome = await source.process(path)
    assert outcome is not None
    assert outcome.outcome == "rejected"
    assert producer.sent > stream.CHUNK_ROWS  # rows had gone out inside the transaction
    assert producer.calls == ["abort"]
    note = (tmp_path / "rejected" / f"{NAME}.reasons.json").read_bytes()
    assert b"file.malformed" in note


async def test_a_file_written_to_while_it_is_read_is_not_committed_and_stays_for_the_next_poll(
    tmp_path: Path,
) -> None:
    """Its rows would not match the sha256 of the ledger entry: the transaction is aborted."""
    from benchmarks.bench_filesource_memory import NAME, _DroppingProducer, write_file
    from workers.base.settings import Settings
    from workers.filesource.worker import FileChangedError, FileSource

    path = tmp_path / NAME
    write_file(path, 1)

    class Appending(_DroppingProducer):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        async def send(self, topic: str, value: bytes | None, **kwargs: Any) -> Any:
            if self.sent == 5:
                with path.open("ab") as handle:  # the provider still writing in place
                    handle.write(b"\n")
            return await super().send(topic, value, **kwargs)

        async def commit_transaction(self) -> None:
            self.calls.append("commit")

        async def abort_transaction(self) -> None:
            self.calls.append("abort")

    producer = Appending()
    source = FileSource(Settings(topic_namespace="unit", filesource_settle_seconds=0), tmp_path)
    source._producer = producer  # type: ignore[assignment]
    with pytest.raises(FileChangedError):  # an OSError: poll_once logs it and leaves the file
        await source.process(path)
    assert producer.calls == ["abort"]
    assert path.exists()
    assert source._ledger == {}
