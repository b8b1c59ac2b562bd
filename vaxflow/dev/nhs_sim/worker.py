"""DEVELOPMENT AND TEST TOOL ONLY — production never runs this: it plays NHS England.

Against the MESH sandbox, the simulator stands in for the receiving side of the Immunisation FHIR
API batch pipeline, so the uploader -> MESH -> acknowledgement -> ack reader loop can be exercised
end to end without NHS England. For every file in the Immunisation and DPS sandbox inboxes it does
what the receiver does (spec digest sections a, b, e), using vaxflow's own schema code:

1. the file name must pass `parse_batch_file_name` (known vaccine type, supplier ODS code, `v5`,
   timestamp, `.csv`/`.dat`), and the supplier must hold some C/U/D permission for the type;
2. a name already processed is refused as a duplicate (InfAck failure, no BusAck), as NHS does;
3. the header and encoding must pass `read_file`; otherwise InfAck failure;
4. otherwise InfAck success and, when the file has rows, a BusAck CSV and a BusAck JSON listing
   the rows `validate_as_written` rejects (an empty file gets no BusAck): vaxflow's rules, plus what
   the receiver refuses in a value as written and its UTC date for "not in the future".

Extended-attribute files (`Vaccination_Extended_Attributes_…`, recognised by name as the receiver
routes them) take the receiver's other path (digest end of section a): the name must pass
`parse_extended_file_name`, the supplier needs C, U *and* D permission for COVID (the receiver fixes
their type to COVID, whatever the rows are about), and a repeated name is a duplicate; each failure
gets an InfAck failure named from the EA file's key, like a batch file's. A file that passes is
copied to DPS unparsed and **no acknowledgement at all** goes back (outcome `forwarded`), so the
sender can learn of its acceptance only from MESH tracking (the ack reader's kind "Delivered"). The
simulator still reads its rows with `read_extended` (family `extended_attributes`, `row_ids` as
`VACCINATION_UNIQUE_ID^VACCINATION_UNIQUE_ID_URI`, `attribute_ids`, `row_valid`) so that tests can
check each row, but a row it finds wrong changes nothing, as at NHS England.

The acknowledgements go back to the message's sender (mex-from) on the `{workflow}_ACK` workflow of
the dev config, named as the receiver names them (schemas.acks). Each inbox message is
acknowledged after its replies are sent. Everything received is recorded (`received`, and as JSON
lines in `nhs_sim_log_file`, optionally with a copy of each file in `nhs_sim_files_dir`) so tests
and the demo can check invariants on what "NHS England" actually got: no event identifier in two
files, every file passing `vaxflow check-file`.

Mailbox passwords come from the sandbox configuration (config/mesh-sandbox), which holds only
development values; the shared key from VAXFLOW_MESH_SHARED_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Final

import msgspec

from schemas.acks import (
    BusAckRow,
    ack_file_name,
    ack_timestamp,
    busack_failure,
    busack_report,
    render_busack_csv,
    render_busack_json,
    render_infack_failure,
    render_infack_success,
)
from schemas.batchfile import read_file
from schemas.checkfile import validate_as_written
from schemas.delimited import TableError
from schemas.extended import is_extended_file_name, parse_extended_file_name, read_extended
from schemas.filenames import FileNameError, parse_batch_file_name
from schemas.permissions import Permissions, load_permissions
from schemas.record import Record
from vaxflow.dev.mesh_sandbox import DevMeshConfig, load_dev_config
from workers.base.mesh.client import InboxMessage, MeshClient, MeshConfig, MeshError, MeshPermanentError
from workers.base.paths import MESH_SANDBOX_CONFIG
from workers.base.runtime import Health
from workers.base.settings import DevSettings, Settings

log = logging.getLogger("vaxflow.nhs_sim")

# Outcomes, in the receiver's own terms (audit statuses of digest section e).
PROCESSED: Final = "processed"
EMPTY: Final = "empty"  # "Not processed - Empty file": InfAck success, no BusAck
DUPLICATE: Final = "duplicate"  # "Not processed - Duplicate": InfAck failure
INVALID_NAME: Final = "invalid_name"
NO_PERMISSION: Final = "no_permission"  # "Not processed - Unauthorised"
INVALID_FILE: Final = "invalid_file"  # header, BOM or encoding: "File headers are invalid."
FORWARDED: Final = "forwarded"  # an extended-attribute file copied to DPS unparsed: no acknowledgement
# A name in one of these outcomes is refused as a duplicate when it comes again.
_TAKEN: Final = frozenset({PROCESSED, FORWARDED})

# File families, by name (the receiver routes on the `Vaccination_Extended_Attributes` prefix).
VACCINATIONS: Final = "vaccinations"
EXTENDED_ATTRIBUTES: Final = "extended_attributes"
# The receiver requires all three for an extended-attribute file, not just one as for a batch file.
_CUD: Final = frozenset("CUD")


class ReceivedFile(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulated NHS England received in one MESH message and what it answered.

    Row identities are `UNIQUE_ID^UNIQUE_ID_URI` (the BusAck LOCAL_ID), never patient values; for an
    extended-attribute file, the vaccination each row belongs to (an event with k attributes has k
    consecutive rows with the same id).
    """

    mailbox: str
    message_id: str
    sender: str | None
    workflow_id: str | None
    file_name: str
    local_id: str | None
    bytes: int
    sha256: str
    received_at: str
    outcome: str
    detail: str = ""
    family: str = VACCINATIONS
    rows: int = 0
    row_valid: list[bool] = msgspec.field(default_factory=list)
    row_ids: list[str] = msgspec.field(default_factory=list)
    attribute_ids: list[str] = msgspec.field(default_factory=list)  # extended attributes: ATTRIBUTE_ID per row
    failed_rows: list[int] = msgspec.field(default_factory=list)
    infack_success: bool = False
    acks_sent: list[str] = msgspec.field(default_factory=list)

    @property
    def valid_rows(self) -> int:
        return sum(self.row_valid)


class _Reply(msgspec.Struct, frozen=True):
    name: str
    data: bytes


_ENCODE = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder(ReceivedFile)


class NhsSimulator:
    """The simulated receiver. `poll_once` for step-by-step tests, `run` as a worker."""

    def __init__(
        self,
        settings: Settings,
        *,
        dev_config: DevMeshConfig | None = None,
        permissions: Permissions | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.dev = dev_config or load_dev_config(settings.nhs_sim_mailbox_config or MESH_SANDBOX_CONFIG)
        self.permissions = permissions or load_permissions(settings.permissions_file)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.mailboxes = [m.strip().upper() for m in settings.nhs_sim_mailboxes.split(",") if m.strip()]
        self.received: list[ReceivedFile] = []
        self.processed_names: set[str] = set()  # upper-cased, as the receiver keys its audit table
        self._load_log()

    # --------------------------------------------------------------------------------- queries

    def files(self, file_name: str | None = None) -> list[ReceivedFile]:
        return [r for r in self.received if file_name is None or r.file_name == file_name]

    def repeated_row_ids(self) -> dict[str, list[str]]:
        """Row ids found in more than one processed file: must stay empty (no event sent twice)."""
        where: dict[str, list[str]] = {}
        for r in self.received:
            if r.outcome == PROCESSED:
                for row_id in set(r.row_ids):
                    where.setdefault(row_id, []).append(r.file_name)
        return {k: v for k, v in where.items() if len(v) > 1}

    def __iter__(self) -> Iterator[ReceivedFile]:
        return iter(list(self.received))

    def _load_log(self) -> None:
        """Duplicate detection survives a restart of the simulator when it keeps a log."""
        path = self.settings.nhs_sim_log_file
        if path is None or not path.exists():
            return
        for line in path.read_bytes().splitlines():
            if line.strip():
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    entry = _DECODE.decode(line)
                    self.received.append(entry)
                    if entry.outcome in _TAKEN:
                        self.processed_names.add(entry.file_name.upper())

    # ------------------------------------------------------------------------------- the loop

    def mailbox_config(self, mailbox_id: str) -> MeshConfig:
        mb = self.dev.mailbox(mailbox_id)
        return MeshConfig(
            url=self.settings.mesh_url,
            credentials=mb.credentials(self.settings.mesh_shared_key.get_secret_value()),
            ca_file=self.settings.mesh_ca_file,
            allowed_workflows=self.dev.workflows_from(mb.mailbox_id),
        )

    async def run(self, stop: asyncio.Event, health: Health) -> None:
        async with AsyncExitStack() as stack:
            clients = {m: await stack.enter_async_context(MeshClient(self.mailbox_config(m))) for m in self.mailboxes}
            health.ready = True
            log.warning("NHS England SIMULATOR running (development only)", extra={"mailboxes": self.mailboxes})
            while not stop.is_set():
                for mailbox, client in clients.items():
                    try:
                        await self.poll_mailbox(mailbox, client)
                    except MeshError as exc:
                        log.warning("simulator poll failed", extra={"mailbox": mailbox, "error": str(exc)[:300]})
                health.progress()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.nhs_sim_poll_seconds)
            health.ready = False

    async def poll_once(self) -> int:
        """One pass over every mailbox (tests); returns the number of messages handled."""
        done = 0
        async with AsyncExitStack() as stack:
            for mailbox in self.mailboxes:
                client = await stack.enter_async_context(MeshClient(self.mailbox_config(mailbox)))
                done += await self.poll_mailbox(mailbox, client)
        return done

    async def poll_mailbox(self, mailbox: str, client: MeshClient) -> int:
        done = 0
        for message_id in await client.inbox():
            try:
                meta, data = await client.download(message_id)
            except MeshPermanentError as exc:  # e.g. not gzip: the receiver could not read it either
                log.warning("undownloadable message dropped", extra={"mailbox": mailbox, "error": str(exc)[:300]})
                await client.acknowledge(message_id)
                continue
            record, replies = self.receive(mailbox, meta, data)
            sent = await self.reply(mailbox, client, meta, replies)
            await client.acknowledge(message_id)
            self.commit(msgspec.structs.replace(record, acks_sent=sent), data)
            done += 1
        return done

    # ------------------------------------------------------------------------ the receiver's rules

    def receive(self, mailbox: str, meta: InboxMessage, data: bytes) -> tuple[ReceivedFile, list[_Reply]]:
        """Decide the outcome and build the ack files; pure apart from the clock."""
        now = self.clock()
        created = ack_timestamp(now)
        header_id = str(uuid.uuid4())
        name = meta.filename or ""
        base = ReceivedFile(
            mailbox=mailbox, message_id=meta.message_id, sender=meta.sender, workflow_id=meta.workflow_id,
            file_name=name, local_id=meta.local_id, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
            received_at=now.isoformat(timespec="seconds"), outcome=INVALID_NAME,
            family=EXTENDED_ATTRIBUTES if is_extended_file_name(name) else VACCINATIONS,
        )

        def failed(outcome: str, detail: str) -> tuple[ReceivedFile, list[_Reply]]:
            infack = _Reply(ack_file_name(name, "InfAck", created), render_infack_failure(header_id, created))
            return msgspec.structs.replace(base, outcome=outcome, detail=detail), [infack]

        if base.family == EXTENDED_ATTRIBUTES:
            return self.receive_extended(base, data, failed)
        perms = self.permissions
        try:
            parsed = parse_batch_file_name(name, vaccine_types=perms.vaccine_types, ods_codes=perms.suppliers.keys())
        except FileNameError as exc:
            return failed(INVALID_NAME, exc.detail)
        vaccine_type, ods = parsed.vaccine_type, parsed.ods_code
        if not perms.letters(ods, vaccine_type):
            return failed(NO_PERMISSION, f"{ods} holds no C/U/D permission for {vaccine_type}")
        if name.upper() in self.processed_names:
            return failed(DUPLICATE, "file name already processed")
        try:
            table = read_file(data, vaccine_type=vaccine_type, sender_ods=ods)  # values only, rules below
        except TableError as exc:
            return failed(INVALID_FILE, f"{exc.rule}: {exc.message}")

        infack = _Reply(ack_file_name(name, "InfAck", created), render_infack_success(header_id, created))
        if not table.rows:
            return msgspec.structs.replace(base, outcome=EMPTY, infack_success=True), [infack]

        validate = partial(validate_as_written, permissions=perms, now=now)  # as check-file does
        row_valid: list[bool] = []
        row_ids: list[str] = []
        failures: list[BusAckRow] = []
        for row in table.rows:
            raw = row.record
            local_id = f"{raw.UNIQUE_ID}^{raw.UNIQUE_ID_URI}" if raw is not None else "^"
            row_ids.append(local_id)
            if raw is None:
                reasons = list(row.reasons)
            else:
                result = validate(vaccine_type, ods, msgspec.structs.asdict(raw))
                reasons = [] if isinstance(result, Record) else result
            row_valid.append(not reasons)
            if reasons:
                diagnostics = "Validation errors: " + "; ".join(r.message for r in reasons)
                failures.append(busack_failure(header_id, row.number, local_id, created, diagnostics))
        epoch = int(now.timestamp())
        report = busack_report(
            provider=perms.suppliers.get(ods, ods), batch_file_key=name, message_id=header_id,
            total_records=len(table.rows), failures=failures, ingestion_start=epoch, ingestion_end=epoch,
            generated=now,
        )
        replies = [
            infack,
            _Reply(ack_file_name(name, "BusAck", created, "csv"), render_busack_csv(failures)),
            _Reply(ack_file_name(name, "BusAck", created, "json"), render_busack_json(report)),
        ]
        record = msgspec.structs.replace(
            base, outcome=PROCESSED, infack_success=True, rows=len(table.rows), row_valid=row_valid,
            row_ids=row_ids, failed_rows=[f.row_number for f in failures],
        )
        return record, replies

    def receive_extended(
        self, base: ReceivedFile, data: bytes, failed: Callable[[str, str], tuple[ReceivedFile, list[_Reply]]]
    ) -> tuple[ReceivedFile, list[_Reply]]:
        """The receiver's extended-attribute path: name, C+U+D for COVID, duplicate; then forwarded
        unparsed with no reply. The rows are read for the record only (tests check each one)."""
        name = base.file_name
        perms = self.permissions
        try:
            parsed = parse_extended_file_name(name, ods_codes=perms.suppliers.keys())
        except FileNameError as exc:
            return failed(INVALID_NAME, exc.detail)
        ods, vaccine_type = parsed.ods_code, parsed.vaccine_type
        if not perms.letters(ods, vaccine_type) >= _CUD:
            return failed(NO_PERMISSION, f"{ods} needs C, U and D permission for {vaccine_type}")
        if name.upper() in self.processed_names:
            return failed(DUPLICATE, "file name already processed")
        try:
            rows = read_extended(data, now=self.clock())
        except TableError as exc:  # the receiver never looks inside: forwarded all the same
            return msgspec.structs.replace(base, outcome=FORWARDED, detail=f"{exc.rule}: {exc.message}"), []
        row_ids = [
            f"{r.attribute.VACCINATION_UNIQUE_ID}^{r.attribute.VACCINATION_UNIQUE_ID_URI}" if r.attribute else "^"
            for r in rows
        ]
        record = msgspec.structs.replace(
            base, outcome=FORWARDED, rows=len(rows), row_valid=[not r.reasons for r in rows], row_ids=row_ids,
            attribute_ids=[r.attribute.ATTRIBUTE_ID if r.attribute else "" for r in rows],
            failed_rows=[r.number for r in rows if r.reasons],
        )
        return record, []

    async def reply(self, mailbox: str, client: MeshClient, meta: InboxMessage, replies: list[_Reply]) -> list[str]:
        """Send the ack files back to the sender; a message without a sender gets none."""
        if not meta.sender or not replies:
            return []
        workflow = self.reply_workflow(mailbox, meta)
        if workflow is None:
            log.warning("no _ACK workflow back to the sender", extra={"sender": meta.sender, "mailbox": mailbox})
            return []
        sent = []
        for r in replies:
            await client.send(meta.sender, workflow, r.data, filename=r.name, local_id=f"nhs-sim-{uuid.uuid4().hex}")
            sent.append(r.name)
        return sent

    def reply_workflow(self, mailbox: str, meta: InboxMessage) -> str | None:
        allowed = self.dev.workflows_from(mailbox)
        if meta.workflow_id and f"{meta.workflow_id}_ACK" in allowed:
            return f"{meta.workflow_id}_ACK"
        try:
            return self.dev.workflow(mailbox, meta.sender or "")
        except KeyError:
            return None

    def commit(self, record: ReceivedFile, data: bytes) -> None:
        """Remember the file (duplicate detection, queries, log) once it is acknowledged."""
        self.received.append(record)
        if record.outcome in _TAKEN:
            self.processed_names.add(record.file_name.upper())
        log.info(
            "simulated NHS England received a file",
            extra={"file": record.file_name, "family": record.family, "outcome": record.outcome, "rows": record.rows,
                   "failed_rows": len(record.failed_rows), "mailbox": record.mailbox},
        )
        if self.settings.nhs_sim_log_file is not None:
            path = self.settings.nhs_sim_log_file
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as out:
                out.write(_ENCODE.encode(record) + b"\n")
        if self.settings.nhs_sim_files_dir is not None and _safe_name(record.file_name):
            target = self.settings.nhs_sim_files_dir / record.message_id / record.file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            # Test data may still look like patient data: owner-only, as the batcher's archive.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def kept_file(settings: DevSettings, record: ReceivedFile) -> Path | None:
    """Where `nhs_sim_files_dir` keeps the copy of a received file, if it does."""
    if settings.nhs_sim_files_dir is None or not _safe_name(record.file_name):
        return None
    return settings.nhs_sim_files_dir / record.message_id / record.file_name


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Worker entry point (`python -m vaxflow.dev.nhs_sim`); development stack and tests only."""
    await NhsSimulator(settings).run(stop, health)
