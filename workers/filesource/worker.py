"""filesource: batch files handed in by providers -> vaccination.events.raw, each file exactly once.

Some providers cannot send events; they hand in batch files (the `|` or `¬` dialect, UTF-8 or
cp1252) instead. This worker turns every row into the same RawEvent the gateway and Kafka
producers send, so one validator judges all sources alike. Only *structure* is checked here (file
name, encoding, header, 34 fields per row): content rules stay with the validator, which dead-letters
with reasons, exactly as for events from any other source.

Exactly once per file (docs/decisions/0006-filesource.md):
- A file's rows, the dead letters of its unreadable rows and its entry in the processed-files
  ledger (`vaccination.sources.files`, keyed by the sha256 of the bytes) are written in ONE Kafka
  transaction. Either all of them are visible to read_committed consumers or none is.
- The file is moved to `done/` only after the commit. A crash before the commit aborts the
  transaction (the next `init_transactions` with the same transactional id does so) and the file
  is still in the directory, so it is simply processed again. A crash after the commit but before
  the move leaves a file whose sha256 is in the ledger: it is moved to `done/` without publishing.
- The transactional id is derived from the directory, so a second instance watching the same
  directory fences the first (its next commit fails with ProducerFenced and it exits). The ledger
  is read after the producer has fenced any predecessor, so it holds everything that instance
  could ever commit; hence reading it once at start-up (and again after any Kafka error, when a
  commit's outcome is unknown) is enough.

Per-sender subdirectories (issue 17, decision 0019): with `VAXFLOW_FILESOURCE_SUBDIR_SENDERS` each
provider may write into its own folder `<directory>/<name>/`, and a file there may only be for the
ODS codes bound to that name. Only the named subdirectories are read (one that is a symlink never),
each opened relative to the directory's descriptor without following a link; files from
`<name>/` are moved to `done/<name>/` or `rejected/<name>/` (0700, files 0600), out of the
provider's reach, kept apart per sender. The same one writer per directory, ledger and transaction
cover the top level and every subdirectory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from schemas.batchfile import ParsedRow, parse_only
from schemas.batchkey import encode_key
from schemas.delimited import TableError
from schemas.event import RawEvent
from schemas.fields import reason
from schemas.filenames import FileNameError, name_token, parse_batch_file_name
from schemas.record import Reason
from schemas.validate import MAX_EVENT_BYTES
from topics.catalogue import RAW, REJECTED, SOURCE_FILES
from workers.base.checkpoint import Checkpoint
from workers.base.kafka import transactional_producer
from workers.base.mesh.client import MeshClient, MeshError
from workers.base.private_files import (
    NotRegularFile,
    child_folder_fd,
    exists_here,
    folder_fd,
    move_private,
    open_regular,
    private_folder,
    write_private_at,
)
from workers.base.runtime import Health
from workers.base.settings import Settings, SettingsError
from workers.base.topic_reader import TopicFollower
from workers.filesource import stream
from workers.filesource.mesh_intake import MeshIntake, intake_config
from workers.filesource.records import (
    DONE,
    EXTENSIONS,
    REJECTED_DIR,
    SOURCE_SYSTEM_MAX,
    STAGE,
    Outcome,
    RejectedFile,
    SourceFile,
    dead_letter_row,
    file_reason,
    printable_name,
    source_headers,
    transactional_id_for,
)
from workers.filesource.senders import directory_refusal, may_submit, ods_of, subdirectory_codes

log = logging.getLogger("vaxflow.filesource")

FILES = Counter("vaxflow_filesource_files_total", "Handed-in files by outcome", ["outcome"])
ROWS = Counter("vaxflow_filesource_rows_total", "Rows of handed-in files by outcome", ["outcome"])

_ENCODER = msgspec.json.Encoder()

class FileSource:
    """Watches one directory; `start`, then `poll_once` repeatedly, then `close`."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self._settings = settings
        self._dir = directory
        self._done = directory / DONE
        self._rejected = directory / REJECTED_DIR
        self._raw_topic = settings.topic(RAW.name)
        self._rejected_topic = settings.topic(REJECTED.name)
        self._ledger_topic = settings.topic(SOURCE_FILES.name)
        self.transactional_id = transactional_id_for(settings, directory)
        self._producer: AIOKafkaProducer | None = None
        self._ledger: dict[str, SourceFile] = {}
        self._subdirs = settings.filesource_subdir_senders  # per-sender subdirectory -> its ODS codes
        self._warned: set[str] = set()  # subdirectories already warned about (once per process)

    async def start(self) -> None:
        """Fence any earlier writer for this directory, then read what it committed."""
        for folder in (self._done, self._rejected):  # 0700, files 0600; a symlink in their place refused
            try:
                await asyncio.to_thread(private_folder, folder)
            except OSError as exc:  # not Kafka's trouble: run() must not retry it as such
                raise SettingsError(f"{folder} must be a folder of its own, not a link ({exc.strerror})") from exc
        producer = transactional_producer(
            self._settings,
            self.transactional_id,
            client_id="vaxflow-filesource",
            transaction_timeout_ms=5 * 60 * 1000,  # a large file is one transaction
            linger_ms=20,
            max_batch_size=1024 * 1024,
        )
        try:
            await producer.start()  # init_transactions: aborts a predecessor's open transaction
            self._ledger = await self._read_ledger(await producer.partitions_for(self._ledger_topic))
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        if (await asyncio.to_thread(self._dir.stat)).st_mode & 0o007:
            log.warning("the watched directory is open to every local user; keep it to the providers' group")
        if self._settings.filesource_dir_senders is None:
            log.warning(
                "no sender binding: files in this directory may be for any ODS code "
                "(set VAXFLOW_FILESOURCE_DIR_SENDERS)"
            )
        await asyncio.to_thread(self._check_subdirectories)
        log.info(
            "filesource started",
            extra={"directory": str(self._dir), "transactional_id": self.transactional_id, "ledger": len(self._ledger)},
        )

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def _read_ledger(self, partitions: set[int], timeout: float = 30.0) -> dict[str, SourceFile]:
        """Every committed ledger entry (the topic is compacted: one per file content)."""
        entries: dict[str, SourceFile] = {}

        def apply(record: ConsumerRecord[bytes, bytes]) -> None:
            key = (record.key or b"").decode()
            if record.value is None:
                entries.pop(key, None)
                return
            try:
                entries[key] = msgspec.json.decode(record.value, type=SourceFile)
            except msgspec.DecodeError:
                log.warning("unreadable ledger entry skipped", extra={"offset": record.offset})

        tps = [TopicPartition(self._ledger_topic, p) for p in sorted(partitions)]
        async with TopicFollower(self._settings, [self._ledger_topic], apply, partitions=tps) as follower:
            await follower.catch_up(timeout)
        return entries

    def candidates(self) -> list[Path]:
        """Files ready to read, oldest first: *.csv / *.dat, not hidden, unmodified for the settle time.

        Providers should write under another name and rename into the directory; the settle time
        guards against one that writes in place.
        """
        cutoff = time.time() - self._settings.filesource_settle_seconds
        found: list[tuple[float, str, Path]] = []
        with folder_fd(self._dir, follow=True) as here:
            self._scan(here, None, cutoff, found)
            for sub in self._subdirs or {}:
                try:
                    with child_folder_fd(here, sub) as sub_fd:  # never through a symlink
                        self._scan(sub_fd, sub, cutoff, found)
                except FileNotFoundError:
                    continue  # not made yet: nothing to read
                except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file of that name
                    self._warn_once(sub, "per-sender subdirectory is a link or not a folder; never read", exc)
        return [path for _, _, path in sorted(found)]

    def _scan(self, dir_fd: int, sub: str | None, cutoff: float, found: list[tuple[float, str, Path]]) -> None:
        folder = self._dir if sub is None else self._dir / sub
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if os.path.splitext(entry.name)[1].lower() not in EXTENSIONS:
                    if sub is None:
                        self._note_unbound(entry)
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue
                if mtime <= cutoff:
                    found.append((mtime, entry.name, folder / entry.name))

    def _note_unbound(self, entry: os.DirEntry[str]) -> None:
        """A provider's folder the subdirectory binding does not name is not read: say so once."""
        if self._subdirs is None or entry.name in self._subdirs or entry.name in (DONE, REJECTED_DIR):
            return
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                self._warn_once(entry.name, "subdirectory not in VAXFLOW_FILESOURCE_SUBDIR_SENDERS; not read")

    def _warn_once(self, sub: str, message: str, exc: OSError | None = None) -> None:
        if sub in self._warned:
            return
        self._warned.add(sub)
        extra: dict[str, str] = {"subdirectory": printable_name(sub)}
        if exc is not None:
            extra["error"] = exc.strerror or type(exc).__name__
        log.warning(message, extra=extra)

    def _check_subdirectories(self) -> None:
        """At start: say which bound subdirectories cannot be read yet, or are open to every local user."""
        for sub in self._subdirs or {}:
            try:
                status = (self._dir / sub).lstat()
            except FileNotFoundError:
                log.info("per-sender subdirectory not made yet", extra={"subdirectory": sub})
                continue
            if not stat.S_ISDIR(status.st_mode):
                self._warn_once(sub, "per-sender subdirectory is a link or not a folder; never read")
            elif status.st_mode & 0o007:
                log.warning("per-sender subdirectory is open to every local user; keep it to its provider",
                            extra={"subdirectory": sub})

    def _subdirectory_of(self, path: Path) -> str | None:
        """None for a file directly in the directory, else the bound subdirectory it is in."""
        if path.parent == self._dir:
            return None
        sub = path.parent.name
        if path.parent.parent == self._dir and sub in (self._subdirs or {}):
            return sub
        raise ValueError(f"{path} is neither in {self._dir} nor in one of its bound subdirectories")

    @staticmethod
    @contextlib.contextmanager
    def _from(here: int, sub: str | None) -> Iterator[int]:
        """The folder a file was handed in: the directory, or its subdirectory (never a link)."""
        if sub is None:
            yield here
        else:
            with child_folder_fd(here, sub) as folder:
                yield folder

    @staticmethod
    @contextlib.contextmanager
    def _into(here: int, name: str, sub: str | None) -> Iterator[int]:
        """done/ or rejected/ (0700), and in it the subdirectory's own folder (0700), never a link."""
        with child_folder_fd(here, name, create=True) as top:
            if sub is None:
                yield top
            else:
                with child_folder_fd(top, sub, create=True) as folder:
                    yield folder

    async def poll_once(
        self, stop: asyncio.Event | None = None, on_file: Callable[[], None] | None = None
    ) -> list[Outcome]:
        """Process every ready file; stops between files when `stop` is set. `on_file` is called
        before each file (the runtime's progress: a poll of many files is not a stall)."""
        outcomes: list[Outcome] = []
        for path in await asyncio.to_thread(self.candidates):
            if stop is not None and stop.is_set():
                break
            if on_file is not None:
                on_file()
            try:
                outcome = await self.process(path)
            except FileNotFoundError:
                continue  # taken by another instance (which then fenced this one) or removed
            except OSError as exc:  # unreadable or unmovable: leave it for the next poll, keep the rest going
                log.warning(
                    "file could not be handled; left in place",
                    extra={"file": printable_name(path.name), "error": type(exc).__name__},
                )
                continue
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    async def process(self, path: Path) -> Outcome | None:
        """One file, end to end; None when it must be retried later (Kafka error, logged)."""
        try:
            handle = await asyncio.to_thread(self._open, path)
        except NotRegularFile:  # swapped for a symlink (or a FIFO) after the scan: never read
            reasons = [file_reason("file.not_regular", "not a regular file (a symlink, folder or device); not read")]
            return await self._reject(path, "", reasons)
        try:
            return await self._process_open(path, handle)
        finally:
            handle.close()

    async def _process_open(self, path: Path, handle: BinaryIO) -> Outcome | None:
        name = printable_name(path.name)
        status = os.fstat(handle.fileno())
        if status.st_size > self._settings.filesource_max_file_bytes:
            reasons = [
                file_reason("file.too_large", f"file is larger than {self._settings.filesource_max_file_bytes} bytes")
            ]
            return await self._reject(path, "", reasons)
        sha, surveyed = await asyncio.to_thread(stream.survey, handle)
        refusal = self._sender_refusal(path, name)
        if refusal is not None:  # before the ledger: a copy of another origin's file is still refused
            return await self._reject(path, sha, [refusal])
        known = self._ledger.get(sha)
        if known is not None:
            if known.file_name == name:
                # Committed before a crash that came ahead of the move: finish the move only.
                await self._archive(path, sha)
                FILES.labels("replayed").inc()
                log.info("file already published; moved to done/", extra={"file": name})
                return Outcome(file_name=name, outcome="replayed")
            reasons = [
                file_reason(
                    "file.duplicate", f"identical content was already processed as {known.file_name} (sha256 {sha})"
                )
            ]
            await self._reject(path, sha, reasons)
            return Outcome(file_name=name, outcome="duplicate")
        try:
            parsed_name = parse_batch_file_name(name)
            name_token(parsed_name.ods_code)  # the receiver knows no ODS code with other characters
        except FileNameError as exc:
            return await self._reject(path, sha, [file_reason("file.name", f"{exc.message}: {exc.detail}")])
        except ValueError:
            return await self._reject(path, sha, [file_reason("file.name", "the ODS code must be letters and digits")])
        if isinstance(surveyed, TableError):
            return await self._reject(path, sha, [file_reason(surveyed.rule, surveyed.message)])
        rows = stream.rows(
            handle, surveyed, vaccine_type=parsed_name.vaccine_type, sender_ods=parsed_name.ods_code,
            validator=parse_only,
        )
        try:
            first = await asyncio.to_thread(stream.take, rows)  # the header: checked before any transaction
            received = datetime.fromtimestamp(status.st_mtime, UTC)
            entry = await self._publish(
                name, sha, surveyed.encoding, first, rows, lambda: _changed(handle, status),
                parsed_name.vaccine_type, parsed_name.ods_code, received,
            )
        except TableError as exc:  # the header, or a malformed row further on (its transaction aborted)
            return await self._reject(path, sha, [file_reason(exc.rule, exc.message)])
        except ProducerFenced:
            raise  # another instance owns this directory now
        except KafkaError as exc:
            log.warning("transaction failed; file left for the next poll", extra={"file": name, "error": repr(exc)})
            await self._reconnect()
            return None
        finally:
            rows.close()
        self._ledger[sha] = entry
        await self._archive(path, sha)
        FILES.labels("published").inc()
        ROWS.labels("published").inc(entry.published)
        ROWS.labels("rejected").inc(entry.rejected)
        log.info(
            "file published",
            extra={"file": name, "rows": entry.rows, "published": entry.published, "rejected": entry.rejected},
        )
        return Outcome(file_name=name, outcome="published", published=entry.published, rejected=entry.rejected)

    async def _reconnect(self) -> None:
        """After an unknown transaction outcome: a new producer (aborts what is open) and a fresh ledger."""
        await self.close()
        with contextlib.suppress(KafkaError, OSError):
            await self.start()

    async def _publish(
        self,
        name: str,
        sha: str,
        encoding: str,
        first: list[tuple[ParsedRow, str]],
        rest: Iterator[tuple[ParsedRow, str]],
        changed: Callable[[], bool],
        vaccine_type: str,
        sender_ods: str,
        received: datetime,
    ) -> SourceFile:
        """The file's rows and ledger entry in one transaction, a chunk of rows at a time: the next
        chunk is parsed on a thread only once this one's records are with the producer, whose
        buffer makes `produce` wait when full (backpressure), and each chunk's deliveries are
        confirmed before the next (no per-row future kept for the whole file)."""
        producer = self._producer
        if producer is None:
            raise KafkaError("producer not connected")
        key = encode_key(vaccine_type, sender_ods)
        source_system = f"{STAGE}:{name}"[:SOURCE_SYSTEM_MAX]
        published = rejected = rows = 0
        async with Checkpoint(producer) as step:
            chunk = first
            while chunk:
                for row, text in chunk:
                    rows += 1
                    reasons: Sequence[Reason] = row.reasons
                    if row.record is not None:
                        value = _ENCODER.encode(
                            RawEvent(
                                vaccine_type=vaccine_type,
                                sender_ods=sender_ods,
                                source_system=source_system,
                                record=row.record,
                                received_at=received,
                            )
                        )
                        if len(value) <= MAX_EVENT_BYTES:
                            headers = source_headers(name, sha, row)
                            await step.produce(self._raw_topic, value, key=key, headers=headers)
                            published += 1
                            continue
                        # The validator would refuse it as too large; keep the file's own bytes instead.
                        reasons = [reason("event", "too_large")]
                    value, headers = dead_letter_row(name, sha, row, text, encoding, reasons)
                    await step.produce(self._rejected_topic, value, key=sender_ods.encode(), headers=headers)
                    rejected += 1
                await step.settle()
                chunk = await asyncio.to_thread(stream.take, rest)
            if changed():  # written to in place while read: its rows may not match its sha256
                raise FileChangedError(errno.EAGAIN, "file changed while it was read; tried again next poll", name)
            entry = SourceFile(
                sha256=sha,
                file_name=name,
                source=self.transactional_id,
                rows=rows,
                published=published,
                rejected=rejected,
                processed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            step.state(self._ledger_topic, _ENCODER.encode(entry), key=sha.encode())
        return entry

    def _sender_refusal(self, path: Path, name: str) -> Reason | None:
        """Why the file's origin (the directory, or its per-sender subdirectory) may not submit for
        the ODS code in its name, or None; a name that is no batch-file name is refused later."""
        ods = ods_of(name)
        if ods is None:
            return None
        sub = self._subdirectory_of(path)
        allowed = self._settings.filesource_dir_senders if sub is None else subdirectory_codes(self._subdirs, sub)
        return None if may_submit(allowed, ods) else directory_refusal(ods, sub)

    def _open(self, path: Path) -> BinaryIO:
        """The file, opened once without following a symlink (private_files.py): every later
        read (survey, rows) goes through this descriptor."""
        sub = self._subdirectory_of(path)
        with folder_fd(self._dir, follow=True) as here, self._from(here, sub) as dir_fd:
            fd = open_regular(dir_fd, path.name)
        return os.fdopen(fd, "rb")

    async def _archive(self, path: Path, sha: str) -> None:
        sub = self._subdirectory_of(path)

        def move() -> None:
            with (
                folder_fd(self._dir, follow=True) as here,
                self._from(here, sub) as source,
                self._into(here, DONE, sub) as done,
            ):
                move_private(source, path.name, done, self._free_name(done, path.name, sha))

        await asyncio.to_thread(move)

    async def _reject(self, path: Path, sha: str, reasons: list[Reason]) -> Outcome:
        """Move a file that publishes nothing to rejected/, its reasons beside it (written first)."""
        note = RejectedFile(file_name=printable_name(path.name), sha256=sha, reasons=reasons)
        sub = self._subdirectory_of(path)

        def write_and_move() -> None:
            with (
                folder_fd(self._dir, follow=True) as here,
                self._from(here, sub) as source,
                self._into(here, REJECTED_DIR, sub) as rejected,
            ):
                target = self._free_name(rejected, path.name, sha)
                content = msgspec.json.format(_ENCODER.encode(note)) + b"\n"
                write_private_at(rejected, f"{target}.reasons.json", content)
                move_private(source, path.name, rejected, target)

        await asyncio.to_thread(write_and_move)
        FILES.labels("rejected").inc()
        log.info(
            "file rejected",
            extra={"file": note.file_name, "subdirectory": sub or "", "rules": [r.rule for r in reasons]},
        )
        return Outcome(file_name=note.file_name, outcome="rejected")

    @staticmethod
    def _free_name(folder_fd: int, name: str, sha: str) -> str:
        """`name`, or with the content hash appended when a different file had that name."""
        return f"{name}.{(sha or 'unhashed')[:12]}" if exists_here(folder_fd, name) else name


class FileChangedError(OSError):
    """The file was written to while it was read: its transaction is aborted and the file left for
    the next poll (an OSError: poll_once logs it and carries on)."""


def _changed(handle: BinaryIO, before: os.stat_result) -> bool:
    now = os.fstat(handle.fileno())
    return (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns)


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    if settings.filesource_dir is None:
        raise SettingsError("VAXFLOW_FILESOURCE_DIR must name the directory providers hand batch files into")
    mesh_config = intake_config(settings)  # a half-configured intake stops the worker before it starts
    source = FileSource(settings, Path(settings.filesource_dir))
    delay = 0.5
    while not stop.is_set():
        try:
            await source.start()
            break
        except (KafkaError, OSError) as exc:
            health.detail["kafka"] = f"unavailable ({type(exc).__name__})"
            log.warning("Kafka not reachable; retrying", extra={"error": type(exc).__name__, "in_s": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
    else:
        return
    health.ready = True
    health.detail["kafka"] = "connected"
    loop = asyncio.get_running_loop()
    try:
        async with contextlib.AsyncExitStack() as stack:
            intake = None
            if mesh_config is not None:
                mesh = await stack.enter_async_context(MeshClient(mesh_config))
                intake = MeshIntake(mesh, Path(settings.filesource_dir), senders=settings.filesource_mesh_senders)
            intake_due = 0.0
            while not stop.is_set():
                health.progress(busy=True)  # a poll under way: a hung disk or MESH call is a stall
                if intake is not None and loop.time() >= intake_due:
                    await _poll_intake(intake, health)
                    intake_due = loop.time() + settings.filesource_mesh_poll_seconds
                await source.poll_once(stop, on_file=health.progress)
                health.progress(busy=False)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), settings.filesource_poll_seconds)
    finally:
        health.ready = False
        await source.close()


async def _poll_intake(intake: MeshIntake, health: Health) -> None:
    """One intake poll; MESH or disk trouble is reported and the messages wait in MESH for the next."""
    try:
        report = await intake.poll_once()
    except (MeshError, OSError) as exc:
        health.detail["mesh_intake"] = f"failing ({type(exc).__name__})"
        log.warning("MESH intake poll failed; messages stay in MESH", extra={"error": type(exc).__name__})
    else:
        health.detail["mesh_intake"] = f"ok ({len(report.outcomes)} messages last poll)"
