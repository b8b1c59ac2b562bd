"""An asyncio client for the MESH API v2 (`application/vnd.mesh.v2+json`).

Workers already run an asyncio loop for Kafka, so MESH calls must not block it: NHS England's
`mesh-client` is synchronous (requests), which is why vaxflow has its own client. Its behaviour
follows that reference: every chunk is gzipped on its own with `Content-Encoding: gzip`, the first
POST of a send is never retried here (a retry could create a second message), later chunk POSTs
are (they only overwrite the same chunk).

Errors come in two kinds because the uploader treats them differently: `MeshTransientError` is
worth retrying with backoff (no answer, 425, 429, 5xx); `MeshPermanentError` will fail the same
way again and goes to the dead-letter topic with its status and body. Some limits of the real MESH
that the sandbox does not enforce (request size, header characters, workflow ids) are checked here
before anything is sent, so tests against the sandbox cannot pass on requests production refuses.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import platform
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential
from yarl import URL

from workers.base.mesh.auth import MeshCredentials, authorization_header
from workers.base.mesh.gunzip import TooLarge, gunzip_capped

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MESH_V2_JSON: Final = "application/vnd.mesh.v2+json"
OCTET_STREAM: Final = "application/octet-stream"
# The real MESH refuses any single request above 100 MB; larger messages must be chunked.
MAX_REQUEST_BYTES: Final = 100 * 1000 * 1000
# MESH stores chunks as multipart parts: all but the last must exceed 5 MB.
MIN_CHUNK_BYTES: Final = 5 * 1024 * 1024
# NHS England's own AWS MESH client uses 20 MiB: small enough to retry cheaply, well under the cap.
DEFAULT_CHUNK_BYTES: Final = 20 * 1024 * 1024
# Below zlib's 9, level 6 compresses CSV almost as well at a fraction of the CPU time.
GZIP_LEVEL: Final = 6
# Inbox pages: MESH returns at most 500 ids; the sandbox refuses fewer than 10.
MAX_INBOX_PAGE: Final = 500
MIN_INBOX_PAGE: Final = 10

# Longest values the MESH API accepts per header (the sandbox's limits, which mirror Spine's).
_HEADER_LIMITS: Final[Mapping[str, int]] = {
    "mex-to": 100,
    "mex-workflowid": 300,
    "mex-filename": 300,
    "mex-localid": 300,
    "mex-subject": 500,
}
_TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})
_DELIVERED_STATUSES: Final = frozenset({"accepted", "acknowledged"})
_FAILED_STATUSES: Final = frozenset({"undeliverable", "error"})


def _client_version() -> str:
    try:
        return version("vaxflow")
    except PackageNotFoundError:
        return "0"


# --------------------------------------------------------------------------------------------- errors


class MeshError(Exception):
    """Anything that went wrong talking to MESH. `message_id` is set once MESH allocated one."""

    message_id: str | None = None


class MeshTransientError(MeshError):
    """No answer, or an answer that says "try later" (425, 429, 5xx): retry with backoff.

    A transient failure of the *first* POST of a send is ambiguous — MESH may have accepted the
    message before the connection dropped — so retry only after `track_by_local_id` says it did not.
    """

    def __init__(
        self, reason: str, *, status: int | None = None, body: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(reason if status is None else f"{reason}: HTTP {status} {_short(body)}")
        self.status = status
        self.body = body
        # Seconds MESH asked us to wait (its `Retry-After` header on a 429 or 503), if it said.
        self.retry_after = retry_after


class MeshTLSError(MeshTransientError):
    """MESH's server certificate failed verification against our CA bundle (or its name did not match).

    Not a property of any file: a wrong `VAXFLOW_MESH_CA_FILE`, an expired or replaced certificate,
    or someone in the middle. Retrying is right (an operator can fix it without a restart of MESH),
    but counting it against each file's retry bounds would dead-letter every file meanwhile, so the
    uploader holds files instead (workers/uploader/worker.py).
    """


class MeshPermanentError(MeshError):
    """MESH (or the client on its behalf) refused the request; repeating it cannot succeed."""

    def __init__(self, status: int | None, body: str, *, reason: str = "") -> None:
        self.status = status
        self.body = body
        self.code, self.description = _error_details(body)
        what = reason or self.description or "refused"
        super().__init__(f"HTTP {status}: {what}" if status is not None else what)


class MeshValidationError(MeshPermanentError):
    """Rejected before sending because the real MESH would refuse it (status is None)."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, "", reason=reason)


class MeshLocalIdAmbiguousError(MeshPermanentError):
    """More than one sent message carries this local id, so tracking cannot say which one counts."""


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    A date in the past means "now" (0); anything unreadable is ignored (None), so a malformed
    header can only fall back to our own backoff, never stop retries.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT; obsolete forms may parse naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _short(body: str, limit: int = 300) -> str:
    return body if len(body) <= limit else body[:limit] + "…"


class _ErrorV1(msgspec.Struct):
    errorCode: str = ""
    errorDescription: str = ""


class _ErrorV2(msgspec.Struct):
    detail: list[dict[str, object]] = msgspec.field(default_factory=list)


def _error_details(body: str) -> tuple[str, str]:
    """(code, description) from either MESH error shape, so dead letters say why in words."""
    if not body:
        return "", ""
    try:
        v2 = msgspec.json.decode(body, type=_ErrorV2)
        if v2.detail:
            first = v2.detail[0]
            return str(first.get("code", "")), str(first.get("msg", ""))
    except msgspec.DecodeError:
        pass
    try:
        v1 = msgspec.json.decode(body, type=_ErrorV1)
        return v1.errorCode, v1.errorDescription
    except msgspec.DecodeError:
        return "", ""


# -------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Where and how one mailbox talks to MESH. `repr` hides the secrets (see MeshCredentials)."""

    url: str
    credentials: MeshCredentials
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    # Workflow ids are allocated per mailbox at onboarding; the sandbox accepts any, MESH does not.
    allowed_workflows: frozenset[str] | None = None
    chunk_size: int = DEFAULT_CHUNK_BYTES
    total_timeout: float = 600.0
    connect_timeout: float = 30.0
    chunk_retry_attempts: int = 3
    client_name: str = "vaxflow"
    # MESH wants every mailbox to handshake at least daily; a long-running worker would otherwise do
    # it only at start. None: only explicit handshakes (tests of the exact request sequence).
    handshake_every: float | None = None

    def __post_init__(self) -> None:
        url = URL(self.url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"MESH url must be http(s)://host[:port], got {self.url!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a MESH client certificate needs both cert_file and key_file")
        if url.scheme == "http" and (self.cert_file or self.ca_file):
            raise ValueError("TLS files were given for a plain-http MESH url")
        if (problem := _chunk_size_problem(self.chunk_size)) is not None:
            raise ValueError(problem)
        if self.chunk_retry_attempts < 1:
            raise ValueError("chunk_retry_attempts must be >= 1")
        if self.handshake_every is not None and self.handshake_every <= 0:
            raise ValueError("handshake_every must be > 0")


def chunk_count(length: int, chunk_size: int) -> int:
    """How many chunks `send` splits `length` bytes into (1 for anything up to one chunk)."""
    return max(1, (length + chunk_size - 1) // chunk_size)


def _chunk_bodies(data: bytes, size: int, compress: bool) -> Callable[[int], Awaitable[bytes]]:
    """Chunk n's request body: the same bytes every time it is asked for (gzip with mtime 0)."""
    view = memoryview(data)

    async def body(n: int) -> bytes:
        piece = view[(n - 1) * size : n * size]
        if not compress:
            return bytes(piece)
        # A thread, because compressing 20 MiB would hold the event loop for a second.
        return await asyncio.to_thread(gzip.compress, piece, GZIP_LEVEL, mtime=0)

    return body


def _chunk_size_problem(size: int) -> str | None:
    if MIN_CHUNK_BYTES <= size < MAX_REQUEST_BYTES:
        return None
    return f"chunk size {size} outside [{MIN_CHUNK_BYTES}, {MAX_REQUEST_BYTES}) bytes"


def _ssl_context(config: MeshConfig) -> ssl.SSLContext | bool:
    """Mutual TLS for the real MESH; plain HTTP (the sandbox) gets aiohttp's default (`True`)."""
    if URL(config.url).scheme != "https":
        return True
    ctx = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.cert_file is not None and config.key_file is not None:
        ctx.load_cert_chain(str(config.cert_file), str(config.key_file))
    return ctx


# ---------------------------------------------------------------------------------------- answer types


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """What MESH says about a message in our inbox (its `mex-*` headers), without the content."""

    message_id: str
    message_type: str
    sender: str | None
    recipient: str | None
    workflow_id: str | None
    filename: str | None
    local_id: str | None
    subject: str | None
    content_type: str | None
    total_chunks: int
    mex_headers: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class TrackingInfo:
    """The sender's view of a message it sent: enough to decide, after a crash, whether to resend."""

    message_id: str
    local_id: str | None
    workflow_id: str | None
    filename: str | None
    recipient: str | None
    status: str
    success: bool | None
    uploaded_at: str | None
    status_code: str | None = None
    status_description: str | None = None
    total_chunks: int | None = None  # as declared by the first chunk's `mex-chunk-range` (v1 tracking)

    @property
    def complete(self) -> bool:
        """All chunks arrived: the message exists for the recipient (resending would duplicate it)."""
        return self.status not in ("", "uploading")

    @property
    def delivered(self) -> bool:
        return self.status in _DELIVERED_STATUSES

    @property
    def acknowledged(self) -> bool:
        """The recipient downloaded the message and acknowledged it: it has taken it. (`delivered`
        also holds for "accepted", which only means it waits in the recipient's inbox.)"""
        return self.status == "acknowledged"

    @property
    def undeliverable(self) -> bool:
        """MESH gave up on it for good ("undeliverable": not collected in time; "error")."""
        return self.status in _FAILED_STATUSES


class _SendReply(msgspec.Struct):
    message_id: str


class _InboxPage(msgspec.Struct):
    messages: list[str]


class _TrackingV2(msgspec.Struct):
    message_id: str
    local_id: str | None = None
    workflow_id: str | None = None
    filename: str | None = None
    recipient: str | None = None
    status: str | None = None
    status_success: bool | None = None
    upload_timestamp: str | None = None
    status_code: str | None = None
    status_description: str | None = None


class _TrackingV1(msgspec.Struct, rename="camel"):
    """The older shape, which MESH still serves for tracking by local id."""

    message_id: str
    local_id: str | None = None
    workflow_id: str | None = None
    file_name: str | None = None
    recipient: str | None = None
    status: str | None = None
    status_success: str | None = None
    upload_timestamp: str | None = None
    status_code: str | None = None
    status_description: str | None = None
    chunk_count: int | None = None


def _tracking_from_v2(t: _TrackingV2) -> TrackingInfo:
    return TrackingInfo(
        message_id=t.message_id, local_id=t.local_id, workflow_id=t.workflow_id, filename=t.filename,
        recipient=t.recipient, status=(t.status or "").lower(), success=t.status_success,
        uploaded_at=t.upload_timestamp, status_code=t.status_code, status_description=t.status_description,
    )


def _tracking_from_v1(t: _TrackingV1) -> TrackingInfo:
    success = None if not t.status_success else t.status_success.upper() == "SUCCESS"
    return TrackingInfo(
        message_id=t.message_id, local_id=t.local_id, workflow_id=t.workflow_id, filename=t.file_name,
        recipient=t.recipient, status=(t.status or "").lower(), success=success,
        uploaded_at=t.upload_timestamp, status_code=t.status_code, status_description=t.status_description,
        total_chunks=t.chunk_count,
    )


def _decode(body: bytes, kind: type[_T], what: str) -> _T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        # A success status with a body we cannot read: treat as "unknown outcome", not a refusal.
        raise MeshTransientError(f"unreadable {what} answer from MESH: {exc}") from exc


# ---------------------------------------------------------------------------------------- validation


def _check_header(name: str, value: str) -> str:
    """Refuse what MESH refuses, here, so the failure is permanent and names the header."""
    limit = _HEADER_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        raise MeshValidationError(f"{name} is {len(value)} characters; MESH allows {limit}")
    bad = next((c for c in value if not 0x20 <= ord(c) < 0x7F), None)
    if bad is not None:
        raise MeshValidationError(f"{name} contains {bad!r}: header values must be printable ASCII")
    return value


def _required(name: str, value: str) -> str:
    if not value.strip():
        raise MeshValidationError(f"{name} must not be empty")
    return _check_header(name, value)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


# -------------------------------------------------------------------------------------------- client


class MeshClient:
    """One mailbox's session with MESH; use as `async with MeshClient(config) as mesh: ...`.

    One aiohttp session per client keeps TLS connections alive across the handful of calls an
    upload makes; every request still carries a fresh single-use Authorization token.
    """

    def __init__(self, config: MeshConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._handshake_at: float | None = None
        self._base = str(URL(config.url).with_path("").with_query(None)).rstrip("/")
        self._mailbox_path = f"/messageexchange/{quote(config.credentials.mailbox_id, safe='')}"
        self._user_agent = (
            f"{config.client_name};{_client_version()};N/A;{platform.machine()};"
            f"{platform.system()};{platform.release()}"
        )

    def __repr__(self) -> str:
        return f"MeshClient({self._config!r})"

    @property
    def config(self) -> MeshConfig:
        return self._config

    async def __aenter__(self) -> Self:
        cfg = self._config
        timeout = aiohttp.ClientTimeout(total=cfg.total_timeout, connect=cfg.connect_timeout)
        connector = aiohttp.TCPConnector(ssl=_ssl_context(self._config))
        # auto_decompress off: gzip is part of the MESH protocol (chunks), so the client decides.
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ----------------------------------------------------------------------------------- transport

    async def _request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
    ) -> _Reply:
        if self._session is None:
            raise RuntimeError("MeshClient used outside `async with`")
        await self._handshake_if_due()
        if data is not None and len(data) > MAX_REQUEST_BYTES:
            raise MeshValidationError(f"request body of {len(data)} bytes exceeds MESH's {MAX_REQUEST_BYTES}")
        all_headers = {
            "Authorization": authorization_header(self._config.credentials),
            "Accept": MESH_V2_JSON,
            "Accept-Encoding": "gzip",
            "User-Agent": self._user_agent,
            **(headers or {}),
        }
        url = URL(self._base + path, encoded=True)
        try:
            async with self._session.request(
                method, url, headers=all_headers, params=params, data=data
            ) as resp:
                body = await resp.read()
                reply = _Reply(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise MeshTLSError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Only the exception type and text: neither carries the request headers.
            raise MeshTransientError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
        log.debug("mesh %s %s -> %s (%d bytes)", method, path, reply.status, len(body))
        if reply.status in ok:
            return reply
        text = body.decode("utf-8", "replace")
        if reply.status in _TRANSIENT_STATUSES or reply.status >= 500:
            raise MeshTransientError(
                f"{method} {path}", status=reply.status, body=text,
                retry_after=retry_after_seconds(reply.headers.get("Retry-After")),
            )
        raise MeshPermanentError(reply.status, text)

    # ---------------------------------------------------------------------------------- endpoints

    async def _handshake_if_due(self) -> None:
        """Handshake before this request when the last one is `handshake_every` old (or never was)."""
        every = self._config.handshake_every
        if every is None:
            return
        last = self._handshake_at
        if last is not None and time.monotonic() - last < every:
            return
        await self.handshake()

    async def handshake(self) -> None:
        """Validate the mailbox (MESH expects this daily); also the cheapest proof that auth works."""
        previous, self._handshake_at = self._handshake_at, time.monotonic()  # set first: not re-entered
        try:
            await self._handshake()
        except BaseException:
            self._handshake_at = previous  # the next request tries again
            raise

    async def _handshake(self) -> None:
        headers = {
            "mex-ClientVersion": f"{self._config.client_name}=={_client_version()}",
            "mex-OSName": platform.system() or "unknown",
            "mex-OSVersion": platform.release() or "unknown",
            "mex-OSArchitecture": platform.machine() or "unknown",
            "mex-JavaVersion": "N/A",
        }
        await self._request("POST", self._mailbox_path, headers=headers)

    async def send(
        self,
        to: str,
        workflow_id: str,
        data: bytes,
        *,
        filename: str,
        local_id: str,
        subject: str | None = None,
        compress: bool = True,
        chunk_size: int | None = None,
    ) -> str:
        """Upload one message and return MESH's message id.

        Data larger than `chunk_size` goes in N requests: POST /outbox with `mex-chunk-range: 1:N`,
        then POST /outbox/{id}/{n}. Each chunk is compressed on its own, as MESH requires, so the
        recipient can decompress chunk by chunk.
        """
        mex = {
            "mex-to": _required("mex-to", to.strip().upper()),
            "mex-workflowid": _required("mex-workflowid", workflow_id),
            "mex-filename": _required("mex-filename", filename),
            "mex-localid": _required("mex-localid", local_id),
        }
        if subject is not None:
            mex["mex-subject"] = _check_header("mex-subject", subject)
        allowed = self._config.allowed_workflows
        if allowed is not None and workflow_id not in allowed:
            raise MeshValidationError(f"workflow id {workflow_id!r} is not registered for this mailbox")
        if not data:
            raise MeshValidationError("MESH refuses an empty message")
        size = self._chunk_size(chunk_size)
        total = chunk_count(len(data), size)
        body = _chunk_bodies(data, size, compress)
        encoding = {"Content-Encoding": "gzip"} if compress else {}
        first = await self._request(
            "POST",
            f"{self._mailbox_path}/outbox",
            ok=(200, 202),
            headers={"Content-Type": OCTET_STREAM, "mex-chunk-range": f"1:{total}", **encoding, **mex},
            data=await body(1),
        )
        message_id = _decode(first.body, _SendReply, "send").message_id
        await self._send_rest(message_id, total, body, encoding)
        log.info(
            "mesh sent message_id=%s to=%s workflow=%s chunks=%d bytes=%d",
            message_id, mex["mex-to"], workflow_id, total, len(data),
        )
        return message_id

    async def resume(
        self, message_id: str, data: bytes, *, total_chunks: int, compress: bool = True, chunk_size: int | None = None
    ) -> str:
        """Finish a chunked upload that an earlier process started and did not complete.

        The first POST (which created `message_id`) cannot be repeated, but chunks 2..N can: a
        re-posted chunk replaces the one MESH holds, so every chunk after the first is sent again,
        identical bytes (the data, chunk size and gzip settings must be the ones of the first
        attempt: a chunk count that differs from MESH's is refused here rather than corrupting the
        message). MESH completes the message when the last chunk arrives.
        """
        size = self._chunk_size(chunk_size)
        total = chunk_count(len(data), size)
        if total != total_chunks or total < 2:
            raise MeshValidationError(
                f"cannot resume {message_id}: MESH expects {total_chunks} chunks, this data makes {total}"
            )
        encoding = {"Content-Encoding": "gzip"} if compress else {}
        await self._send_rest(message_id, total, _chunk_bodies(data, size, compress), encoding)
        log.info("mesh resumed message_id=%s chunks=2..%d bytes=%d", message_id, total, len(data))
        return message_id

    def _chunk_size(self, chunk_size: int | None) -> int:
        size = chunk_size or self._config.chunk_size
        if (problem := _chunk_size_problem(size)) is not None:
            raise MeshValidationError(problem)
        return size

    async def _send_rest(
        self, message_id: str, total: int, body: Callable[[int], Awaitable[bytes]], encoding: Mapping[str, str]
    ) -> None:
        """Chunks 2..total of a message whose first chunk created it."""
        try:
            for n in range(2, total + 1):
                await self._send_chunk(message_id, n, total, await body(n), encoding)
        except MeshError as exc:
            exc.message_id = message_id
            raise

    async def _send_chunk(
        self, message_id: str, n: int, total: int, data: bytes, encoding: Mapping[str, str]
    ) -> None:
        """Re-posting a chunk only replaces it, so (unlike the first POST) it is safe to retry."""
        path = f"{self._mailbox_path}/outbox/{quote(message_id, safe='')}/{n}"
        headers = {"Content-Type": OCTET_STREAM, "mex-chunk-range": f"{n}:{total}", **encoding}
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._config.chunk_retry_attempts),
            wait=wait_random_exponential(multiplier=0.5, max=10),
            retry=retry_if_exception_type(MeshTransientError),
            reraise=True,
        ):
            with attempt:
                await self._request("POST", path, ok=(200, 202), headers=headers, data=data)

    async def tracking(self, message_id: str) -> TrackingInfo | None:
        """Status of a message this mailbox sent, or None if MESH does not know it."""
        reply = await self._request(
            "GET", f"{self._mailbox_path}/outbox/tracking", ok=(200, 404), params={"messageID": message_id}
        )
        if reply.status == 404:
            return None
        return _tracking_from_v2(_decode(reply.body, _TrackingV2, "tracking"))

    async def track_by_local_id(self, local_id: str) -> TrackingInfo | None:
        """The message this mailbox sent with `mex-localid` = local_id, or None if there is none.

        This is how the uploader learns, after a crash between "sent" and "recorded", whether a
        file already went. MESH serves it on the older path `/outbox/tracking/{local_id}`, so a
        local id must not contain '/'.
        """
        _required("mex-localid", local_id)
        if "/" in local_id:
            raise MeshValidationError("a local id used for tracking must not contain '/'")
        reply = await self._request(
            "GET", f"{self._mailbox_path}/outbox/tracking/{quote(local_id, safe='')}", ok=(200, 300, 404)
        )
        if reply.status == 404:
            return None
        if reply.status == 300:
            raise MeshLocalIdAmbiguousError(300, reply.body.decode("utf-8", "replace"),
                                            reason=f"several messages carry local id {local_id!r}")
        return _tracking_from_v1(_decode(reply.body, _TrackingV1, "tracking"))

    async def inbox(self, max_results: int = MAX_INBOX_PAGE, workflow_filter: str | None = None) -> list[str]:
        """Ids of messages waiting in our inbox (one page, oldest first)."""
        if not MIN_INBOX_PAGE <= max_results <= MAX_INBOX_PAGE:
            raise ValueError(f"max_results must be in [{MIN_INBOX_PAGE}, {MAX_INBOX_PAGE}]")
        params = {"max_results": str(max_results)}
        if workflow_filter:
            params["workflow_filter"] = workflow_filter
        reply = await self._request("GET", f"{self._mailbox_path}/inbox", params=params)
        return _decode(reply.body, _InboxPage, "inbox").messages

    async def download(self, message_id: str, max_bytes: int = MAX_REQUEST_BYTES) -> tuple[InboxMessage, bytes]:
        """A whole message from our inbox, all chunks fetched and gzip undone.

        When every part is gzip the parts are read as one stream: that reads both a sender that
        compressed each chunk on its own (concatenated gzip members) and one that split a single
        gzip stream. Decompression stops past `max_bytes` (default MESH's 100 MB per request; the
        file source's intake passes its own file cap) and the message is refused as permanent:
        a small message may not make us hold hundreds of MiB (gunzip.py, issue 17).
        """
        path = f"{self._mailbox_path}/inbox/{quote(message_id, safe='')}"
        first = await self._request("GET", path, ok=(200, 206))
        meta = _inbox_message(message_id, first.headers)
        parts = [first]
        for n in range(2, meta.total_chunks + 1):
            parts.append(await self._request("GET", f"{path}/{n}", ok=(200, 206)))
        gz = [p.headers.get("Content-Encoding", "").lower() == "gzip" for p in parts]
        def gunzip() -> bytes:
            if all(gz):
                return gunzip_capped((p.body for p in parts), max_bytes)
            out = bytearray()
            for part, zipped in zip(parts, gz, strict=True):
                out += gunzip_capped([part.body], max_bytes - len(out)) if zipped else part.body
                if len(out) > max_bytes:
                    raise TooLarge(f"larger than {max_bytes} bytes")
            return bytes(out)

        try:
            data = await asyncio.to_thread(gunzip)
        except TooLarge as exc:
            raise MeshPermanentError(None, "", reason=f"message {message_id} is {exc}") from exc
        except (OSError, EOFError, zlib.error) as exc:
            reason = f"message {message_id} is not valid gzip: {exc}"
            raise MeshPermanentError(None, "", reason=reason) from exc
        return meta, data

    async def acknowledge(self, message_id: str) -> None:
        """Tell MESH we have the message, which removes it from our inbox."""
        path = f"{self._mailbox_path}/inbox/{quote(message_id, safe='')}/status/acknowledged"
        await self._request("PUT", path)


def _inbox_message(message_id: str, headers: Mapping[str, str]) -> InboxMessage:
    mex = {k.lower(): v for k, v in headers.items() if k.lower().startswith("mex-")}
    declared = mex.get("mex-chunk-range", "").rpartition(":")[2] or mex.get("mex-total-chunks", "")
    declared = declared.strip()
    # isdigit() alone takes '²', which int() refuses: one odd header crash-looped a reader (issue 16)
    total = int(declared) if declared.isascii() and declared.isdigit() and len(declared) <= 6 else 1
    return InboxMessage(
        message_id=mex.get("mex-messageid", message_id),
        message_type=mex.get("mex-messagetype", "DATA"),
        sender=mex.get("mex-from"),
        recipient=mex.get("mex-to"),
        workflow_id=mex.get("mex-workflowid"),
        filename=mex.get("mex-filename"),
        local_id=mex.get("mex-localid"),
        subject=mex.get("mex-subject"),
        content_type=mex.get("mex-content-type") or headers.get("Content-Type"),
        total_chunks=max(total, 1),
        mex_headers=mex,
    )
