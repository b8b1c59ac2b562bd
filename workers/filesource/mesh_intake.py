"""Provider batch files that arrive in a MESH inbox, handed to the file source through its directory.

Some providers send their batch files over MESH rather than dropping them on a share. Their files
go to an intake mailbox of our own (not the one the ack reader empties: that reader publishes
anything that is not an acknowledgement as "unknown" and lets it go). Each message is downloaded
and written into the watched directory under its `mex-filename`; it is acknowledged in MESH only
once the file source has finished with the file (moved it to done/ or rejected/), so until its
rows are in Kafka MESH still holds it, and the file source's exactly-once machinery
(docs/decisions/0006-filesource.md) applies unchanged:

- after a restart the unacknowledged messages are downloaded again. A copy still waiting in the
  directory with the same bytes is recognised as that message's and not written twice; a copy
  already processed is written again and its sha256 in the processed-files ledger makes it a move
  to done/ without publishing. A different file of the same name is never overwritten: the message
  waits in MESH until that name is free;
- a name that cannot be a file name here (missing, a path, hidden) becomes `mesh-<message id>.dat`,
  and a name without a batch-file suffix gets `.dat` appended, so the file source reads it and
  rejects the name with its reasons (rejected/, beside the file): every message ends published or
  rejected with reasons, none is left unread in the directory. A name that is not UTF-8 (or not
  printable) is such a name: it once raised while being measured and crash-looped the whole file
  source (issue 16);
- a message that cannot be downloaded as a file (not valid gzip, a chunk MESH will not give, a
  header that cannot be read) is rejected by the intake itself: its reasons are written to
  rejected/`mesh-<message id>.dat.reasons.json`, as the file source writes them, and it is
  acknowledged at once, counted in `vaxflow_filesource_mesh_rejected_total{reason}`. It used to
  end the poll with an error, so it was tried first again on every poll and blocked every message
  behind it for ever (issue 16). Its bytes cannot be kept: they are not what the sender meant.

MESH asks that an inbox be polled no more often than every five minutes
(`VAXFLOW_FILESOURCE_MESH_POLL_SECONDS`, default 300).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
from prometheus_client import Counter

from schemas.record import Reason
from topics.headers import printable
from workers.base.mesh.client import MeshClient, MeshConfig, MeshPermanentError
from workers.base.mesh.settings import mailbox_config
from workers.base.private_files import NotRegularFile, folder_fd, open_regular, write_private
from workers.base.settings import Settings, SettingsError
from workers.filesource.records import REJECTED_DIR, RejectedFile, file_reason
from workers.filesource.senders import mailbox_codes, mailbox_refusal, may_submit, ods_of

log = logging.getLogger("vaxflow.filesource.mesh")

MESSAGES = Counter("vaxflow_filesource_mesh_messages_total", "MESH intake messages by outcome", ["outcome"])
REJECTED_MESSAGES = Counter(
    "vaxflow_filesource_mesh_rejected_total", "MESH intake messages rejected as undecodable and acknowledged",
    ["reason"],
)

# Outcomes of one message in one poll (also the metric's label values).
WRITTEN: Final = "written"  # into the directory under its own name
RENAMED: Final = "renamed"  # into the directory under a safe name (local_name)
ALREADY_THERE: Final = "already_there"  # its copy, written before a restart, still waits to be read
WAITING: Final = "waiting"  # another file of its name waits to be read: tried again next poll
ACKNOWLEDGED: Final = "acknowledged"  # the file source has finished with its file
REJECTED: Final = "rejected"  # undecodable: its reasons in rejected/, acknowledged at once

# Rules of an intake rejection (in its reasons, and the metric's reason label).
UNDECODABLE: Final = "mesh.undecodable"  # MESH refused the download, or it is not valid gzip
UNREADABLE_HEADER: Final = "mesh.header"  # a mex-* header that cannot be read

_SUFFIXES: Final = (".csv", ".dat")


def intake_config(settings: Settings) -> MeshConfig | None:
    """The intake mailbox's client configuration, or None when no intake mailbox is configured."""
    if not settings.filesource_mesh_mailbox:
        return None
    if settings.filesource_mesh_password is None:
        raise SettingsError("VAXFLOW_FILESOURCE_MESH_PASSWORD must be set with VAXFLOW_FILESOURCE_MESH_MAILBOX")
    return mailbox_config(
        settings,
        settings.filesource_mesh_mailbox,
        settings.filesource_mesh_password.get_secret_value(),
        variable="VAXFLOW_FILESOURCE_MESH_PASSWORD",
    )


def local_name(filename: str | None, message_id: str) -> str:
    """The name a message's file gets in the watched directory (module docstring)."""
    name = filename or ""
    unsafe = (
        not name
        or not name.isprintable()  # also a name of non-UTF-8 bytes (surrogate escapes)
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in "/\\\x00")
        or len(name.encode()) > 200
    )
    if unsafe:
        return f"mesh-{message_id}.dat"
    return name if name.lower().endswith(_SUFFIXES) else f"{name}.dat"


def _same_regular_file(directory: Path, name: str, data: bytes) -> bool:
    """Whether `name` is a regular file (not followed through a symlink) holding exactly `data`."""
    try:
        with folder_fd(directory, follow=True) as dir_fd:
            fd = open_regular(dir_fd, name)
    except (NotRegularFile, FileNotFoundError):
        return False
    with os.fdopen(fd, "rb") as handle:
        return handle.read(len(data) + 1) == data


@dataclass(slots=True)
class IntakeReport:
    """What one poll did, by message id."""

    outcomes: dict[str, str] = field(default_factory=dict)


class MeshIntake:
    """Moves the intake mailbox's messages into the file source's directory and acknowledges each
    one in MESH once the file source has finished with its file (module docstring)."""

    def __init__(
        self, mesh: MeshClient, directory: Path, senders: Mapping[str, Collection[str]] | None = None
    ) -> None:
        self._mesh = mesh
        self._senders = senders  # mailbox -> ODS codes it may submit for (senders.py); None: any
        self._directory = directory
        self._pending: dict[str, str] = {}  # message id -> its file's name in the directory

    async def poll_once(self) -> IntakeReport:
        report = IntakeReport()
        for message_id, name in list(self._pending.items()):
            if not (self._directory / name).exists():  # read and moved to done/ or rejected/
                await self._mesh.acknowledge(message_id)
                del self._pending[message_id]
                self._count(report, message_id, ACKNOWLEDGED)
        for message_id in await self._mesh.inbox():
            if message_id in self._pending:
                continue
            try:
                meta, data = await self._mesh.download(message_id)
            except MeshPermanentError as exc:  # a transient error still ends the poll: tried again
                await self._reject(report, message_id, UNDECODABLE, f"MESH message could not be downloaded: {exc}")
                continue
            except ValueError as exc:  # e.g. a chunk count MESH passed on that is no number
                await self._reject(report, message_id, UNREADABLE_HEADER, f"unreadable MESH header: {exc}")
                continue
            name = local_name(meta.filename, message_id)
            refusal = self._refusal(meta.sender, name)
            if refusal is not None:  # nothing of it reaches the directory, so nothing is published
                await self._reject(report, message_id, refusal.rule, refusal.message)
                continue
            target = self._directory / name
            if await asyncio.to_thread(os.path.lexists, target):  # a planted symlink counts; never read
                if await asyncio.to_thread(_same_regular_file, self._directory, name, data):
                    self._pending[message_id] = name  # written before a restart, not yet read
                    self._count(report, message_id, ALREADY_THERE)
                else:
                    # Another file of this name is still waiting to be read: overwriting it could
                    # lose it. The message stays in MESH and is tried again on a later poll.
                    self._count(report, message_id, WAITING)
                continue
            await asyncio.to_thread(write_private, target, data)  # an fsync: not on the loop
            self._pending[message_id] = name
            self._count(report, message_id, WRITTEN if name == meta.filename else RENAMED)
            log.info("intake message handed to the file source",
                     extra={"message_id": message_id, "file": name, "bytes": len(data), "sender": meta.sender,
                            "mex_filename": printable(meta.filename or "")})
        return report

    def _refusal(self, mailbox: str | None, name: str) -> Reason | None:
        """Why the sending mailbox may not submit this file, or None (senders.py). A name that is
        no batch-file name from a bound mailbox passes: the file source rejects the name itself."""
        codes = mailbox_codes(self._senders, mailbox)
        if codes is None:
            return None
        ods = ods_of(name)
        if ods is None:
            return None if codes else mailbox_refusal(mailbox, None)
        return None if may_submit(codes, ods) else mailbox_refusal(mailbox, ods)

    async def _reject(self, report: IntakeReport, message_id: str, rule: str, message: str) -> None:
        """Write the message's reasons to rejected/ (durably), then acknowledge it (module docstring)."""
        name = local_name(None, message_id)
        note = RejectedFile(file_name=name, sha256="", reasons=[file_reason(rule, printable(message)[:1000])])
        target = self._directory / REJECTED_DIR / f"{name}.reasons.json"
        await asyncio.to_thread(write_private, target, msgspec.json.format(msgspec.json.encode(note)) + b"\n")
        await self._mesh.acknowledge(message_id)
        REJECTED_MESSAGES.labels(rule).inc()
        self._count(report, message_id, REJECTED)
        log.warning("undecodable intake message rejected and acknowledged",
                    extra={"message_id": message_id, "rule": rule, "reasons_file": target.name})

    @staticmethod
    def _count(report: IntakeReport, message_id: str, outcome: str) -> None:
        report.outcomes[message_id] = outcome
        MESSAGES.labels(outcome).inc()
