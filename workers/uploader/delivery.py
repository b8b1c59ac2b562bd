"""The MESH side of one file: find it in MESH by local id, resume an interrupted upload, or send it,
retrying transient failures for as long as they last (docs/decisions/0007, workers/uploader/retry.py).

Nothing here writes to Kafka: the worker records the `Delivery` or the refusal afterwards, in one
transaction with the offset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from prometheus_client import Counter

from schemas.pipeline import ReadyFile
from workers.base.mesh.client import (
    MeshClient,
    MeshPermanentError,
    MeshTLSError,
    MeshTransientError,
    TrackingInfo,
    chunk_count,
)
from workers.base.runtime import Health
from workers.base.settings import MeshSettings
from workers.uploader.outage import MeshAvailability
from workers.uploader.outcomes import MAX_GENERATIONS, Abandoned, Delivery, UploadRefused, local_id_generation
from workers.uploader.retry import Sleep, upload_retrying
from workers.uploader.routes import Route
from workers.uploader.utcdate import seconds_until_utc_date

log = logging.getLogger("vaxflow.uploader")

ATTEMPTS = Counter("vaxflow_uploader_attempts_total", "MESH upload attempts by outcome", ["outcome"])
TLS_HOLDS = Counter("vaxflow_uploader_tls_holds_total", "Waits on a MESH certificate that failed verification")
HELD_FILES = Counter(
    "vaxflow_uploader_held_for_utc_date_files_total",
    "Files held until UTC's date reached the PERSON_DOB/RECORDED_DATE in their rows (23:00-24:00 UTC in BST)",
)
HELD_SECONDS = Counter(
    "vaxflow_uploader_held_for_utc_date_seconds_total", "Seconds files were held for UTC's date to catch up"
)
# A hold longer than this gives the partition back to the poll loop (the file is read again and
# held again), so a held file never keeps the consumer from polling for max_poll_interval.
HOLD_SLICE_SECONDS: Final = 60.0
# The clock that decides whether UTC's date has caught up (a test sets it to an evening in summer).
wall_clock: Callable[[], float] = time.time


class MeshDelivery:
    """Delivers files to MESH for one uploader process; `stop` and a partition's `halt` end any wait."""

    def __init__(
        self,
        settings: MeshSettings,
        mesh: MeshClient,
        health: Health,
        stop: asyncio.Event,
        availability: MeshAvailability,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.mesh = mesh
        self.health = health
        self.stop = stop
        self.availability = availability
        self.clock = clock or (lambda: wall_clock())  # read at each call, so a test can move it
        self.held: set[str] = set()  # files already counted in HELD_FILES

    async def deliver(
        self, file: ReadyFile, route: Route, halt: asyncio.Event, slots: asyncio.Semaphore | None = None
    ) -> Delivery:
        """Track, then send, retrying transient failures until they end; raises UploadRefused or Abandoned.

        `slots` bounds the MESH requests in flight (per partition); a file holds a slot only during
        an attempt, never while it waits, so a file waiting out a failure does not hold back others.
        While MESH's certificate fails verification the file is held (not counted, not
        dead-lettered) and the worker reports itself not ready until a request gets through.
        """
        sleep = self.interruptible_sleep(halt)
        await self.hold_for_utc_date(file, sleep)
        while True:
            try:
                delivery = await self._deliver_retrying(file, route, sleep, slots or asyncio.Semaphore(1))
            except MeshTLSError as exc:
                TLS_HOLDS.inc()
                self.health.ready = False
                self.health.detail["mesh_tls"] = "server certificate not trusted: check VAXFLOW_MESH_CA_FILE"
                log.error("MESH certificate verification failed; holding the file until it is fixed",
                          extra={"file": file.file_name, "error": str(exc)})
                await sleep(self.settings.upload_backoff_max_seconds)
                continue
            if "mesh_tls" in self.health.detail:
                del self.health.detail["mesh_tls"]
                self.health.ready = True
            return delivery

    async def hold_for_utc_date(self, file: ReadyFile, sleep: Sleep) -> None:
        """Wait until no PERSON_DOB or RECORDED_DATE in the file is after UTC's date (utcdate.py says
        why). The file waits in its own lane, so the poll loop and other keys go on; the wait is
        taken in slices so that a moved clock is read again, and a halt ends it (Abandoned)."""
        while True:
            wait = seconds_until_utc_date(file.content, self.clock())
            if wait <= 0:
                self.held.discard(file.file_name)
                return
            if file.file_name not in self.held:
                if len(self.held) > 10_000:  # names of files another instance took over
                    self.held.clear()
                self.held.add(file.file_name)
                HELD_FILES.inc()
                log.info("file held until UTC's date reaches its rows' dates",
                         extra={"file": file.file_name, "seconds": round(wait, 1)})
            step = min(wait, HOLD_SLICE_SECONDS)
            await sleep(step)
            HELD_SECONDS.inc(step)


    async def _deliver_retrying(
        self, file: ReadyFile, route: Route, sleep: Sleep, slots: asyncio.Semaphore
    ) -> Delivery:
        """Attempts until one succeeds or MESH refuses for good; transient failures never end it.

        A 403 is a refusal only after a fresh handshake: MESH answers 403 to a mailbox it considers
        not validated (a lapsed daily handshake) as well as to one it refuses, so the first 403
        of a file makes the next attempt handshake first, and only a second 403 is final.
        """
        attempts = 0
        handshake_first = False
        while True:
            try:
                async for attempt in upload_retrying(self.settings, sleep=sleep):
                    with attempt:
                        attempts += 1
                        self.health.progress()
                        async with slots:
                            if handshake_first:
                                await self._handshake()
                            return await self._attempt(file, route, attempts)
            except MeshTLSError:
                raise
            except MeshPermanentError as exc:
                if exc.status == 403 and not handshake_first:
                    log.warning("MESH answered 403; handshaking again before treating it as a refusal",
                                extra={"file": file.file_name})
                    handshake_first = True
                    continue
                raise UploadRefused(exc, status=exc.status, body=exc.body, attempts=attempts) from exc

    async def _handshake(self) -> None:
        try:
            await self.mesh.handshake()
        except MeshTransientError:
            self.availability.failed()
            raise
        self.availability.answered()

    async def _attempt(self, file: ReadyFile, route: Route, attempt: int) -> Delivery:
        try:
            found, local_id = await self.find_sent(file)
            if found is not None and found.complete:
                ATTEMPTS.labels("recovered").inc()
                self.availability.answered()
                return Delivery(
                    message_id=found.message_id,
                    local_id=local_id,
                    mailbox_to=found.recipient or route.mailbox,
                    workflow_id=found.workflow_id or route.workflow_id,
                    recovered=True,
                    attempts=attempt,
                )
            if found is not None:  # an interrupted chunked upload of this very file: finish it
                message_id = await self.resume(found, file)
                ATTEMPTS.labels("resumed").inc()
                self.availability.answered()
                return Delivery(
                    message_id=message_id,
                    local_id=local_id,
                    mailbox_to=found.recipient or route.mailbox,
                    workflow_id=found.workflow_id or route.workflow_id,
                    recovered=True,
                    attempts=attempt,
                )
            message_id = await self.mesh.send(
                route.mailbox,
                route.workflow_id,
                file.content,
                filename=file.file_name,
                local_id=local_id,
                chunk_size=self.settings.mesh_chunk_bytes,
            )
        except MeshTransientError:
            ATTEMPTS.labels("transient").inc()
            self.availability.failed()
            raise
        except MeshPermanentError:
            ATTEMPTS.labels("permanent").inc()
            self.availability.answered()
            raise
        self.availability.answered()
        ATTEMPTS.labels("sent").inc()
        return Delivery(
            message_id=message_id,
            local_id=local_id,
            mailbox_to=route.mailbox,
            workflow_id=route.workflow_id,
            recovered=False,
            attempts=attempt,
        )

    async def resume(self, found: TrackingInfo, file: ReadyFile) -> str:
        """Send the remaining chunks of `found`; a refusal is retried as transient, so the next
        attempt tracks again (the message may have completed, or expired, in between)."""
        log.warning("resuming an interrupted chunked upload",
                    extra={"file": file.file_name, "message_id": found.message_id, "chunks": found.total_chunks})
        try:
            return await self.mesh.resume(
                found.message_id, file.content, total_chunks=found.total_chunks or 0,
                chunk_size=self.settings.mesh_chunk_bytes,
            )
        except MeshPermanentError as exc:
            raise MeshTransientError(f"resume of {found.message_id} refused", status=exc.status, body=exc.body) from exc

    async def find_sent(self, file: ReadyFile) -> tuple[TrackingInfo | None, str]:
        """(what MESH holds for this file, its local id) or (None, the local id to send with).

        What MESH holds is either complete (record it, never send again) or an upload that stopped
        between chunks and can be resumed (same chunk count as this file makes now). An incomplete
        upload that cannot be resumed (the chunk size setting changed) is left to expire and the
        file goes under the next local-id generation; generations therefore exist only after such
        a case, and the walk is normally one request.
        """
        chunks = chunk_count(len(file.content), self.settings.mesh_chunk_bytes)
        for generation in range(1, MAX_GENERATIONS + 1):
            local_id = local_id_generation(file.local_id, generation)
            info = await self.mesh.track_by_local_id(local_id)
            if info is None:
                return None, local_id
            if info.filename and info.filename != file.file_name:
                raise MeshPermanentError(
                    None, "", reason=f"local id {local_id} already names another file in MESH"
                )
            if info.complete or (info.total_chunks == chunks and chunks > 1):
                return info, local_id
            log.warning("incomplete upload found in MESH that cannot be resumed; using the next local id",
                        extra={"file": file.file_name, "generation": generation, "status": info.status,
                               "chunks_in_mesh": info.total_chunks, "chunks_now": chunks})
        raise MeshPermanentError(None, "", reason=f"{MAX_GENERATIONS} incomplete uploads of {file.file_name}")

    def interruptible_sleep(self, halt: asyncio.Event) -> Sleep:
        stop = self.stop

        async def sleep(seconds: float) -> None:
            if stop.is_set() or halt.is_set():
                raise Abandoned()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(halt.wait())}
            done, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if done:
                raise Abandoned()

        return sleep
