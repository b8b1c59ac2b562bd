"""The HTTP gateway: POST /v1/events -> vaccination.events.raw, answered only once Kafka has it.

Why it is shaped this way:
- **Shape here, content in the validator.** The gateway refuses only what can never be an event
  (not UTF-8, not JSON, not an object, unknown keys, wrong types, larger than an event may be), with
  the validator's own rule ids. Content rules live in one place, the validator, which dead-letters
  with reasons; the gateway forwards each line's original bytes so the validator judges exactly
  what the caller sent.
- **All-or-nothing per request before Kafka.** Every line is decoded and authorised before the
  first write. A request with one bad line is refused whole (400/403) and nothing of it is
  written, so the caller can fix and resend the same request without duplicating its good lines;
  a partial success would leave the caller to work out which lines to resend.
- **202 means stored.** Records go to an idempotent producer with acks=all and the answer waits
  for every delivery; the body returns each event's origin (partition, offset), its identity
  through the pipeline (docs/architecture.md, "Identity"). Kafka being down or slow is a 503 with
  Retry-After. A 503 after some deliveries succeeded cannot be undone (the gateway does not use a
  transaction per request, which would serialise all requests through one producer), so a retried
  request publishes some events twice; the batcher remembers every event it has taken and refuses
  the second copy as `duplicate.submission` (docs/decisions/0018), so NHS England gets one row. An
  `Idempotency-Key` header lets this process answer a retry with the first 202 instead
  (workers/gateway/idempotency.py).
- **Bounded memory.** The body limit is checked against Content-Length and again while reading,
  and at most `gateway_max_inflight_requests` bodies are buffered at once (503 beyond that).
- **No client can starve the others** (docs/decisions/0019): each token (client) may hold at most
  `gateway_max_inflight_per_client` of those slots and send `gateway_rate_per_client` requests a
  second (burst `gateway_rate_burst`); beyond either it gets 429 with Retry-After, so one busy or
  hostile feed cannot take the slots every other provider needs. A connection that has not sent
  its headers within `gateway_header_timeout_seconds` is closed, a body gets
  `gateway_read_timeout_seconds`, and connections beyond `gateway_max_connections` are closed on
  accept, so idle sockets cannot exhaust descriptors and take /healthz down with them.
- **The loop never waits on a parse.** Bodies over 64 KiB are decoded in a worker thread: 8 MiB
  of blank lines took 3-14 s of pure Python, during which nothing else (not even /healthz) ran.
- **TLS** when `gateway_tls_cert_file`/`_key_file` are set (TLS 1.2 or later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from prometheus_client import Counter, Histogram

from topics import headers as h
from topics.catalogue import RAW
from topics.headers import Headers
from workers.base.kafka import idempotent_producer
from workers.base.kafka_access import explain
from workers.base.runtime import Health, health_app
from workers.base.settings import GatewaySettings, Settings
from workers.gateway import openapi
from workers.gateway.api import Accepted, Coordinate, LineError, Problem
from workers.gateway.idempotency import IdempotencyCache, KeyInUse, KeyReused, body_digest, valid_key
from workers.gateway.intake import MAX_LISTED, Line, Parsed, parse_body
from workers.gateway.tokens import Grant, Tokens, TokenStore, load_tokens

log = logging.getLogger("vaxflow.gateway")

REQUESTS = Counter("vaxflow_gateway_requests_total", "POST /v1/events requests by response status", ["status"])
EVENTS_ACCEPTED = Counter("vaxflow_gateway_events_accepted_total", "Events acknowledged by Kafka and answered 202")
LINES_REFUSED = Counter("vaxflow_gateway_lines_refused_total", "Lines refused with 400 or 403, by rule", ["rule"])
PUBLISH_SECONDS = Histogram("vaxflow_gateway_publish_seconds", "First send to last Kafka acknowledgement")
LIMITED = Counter("vaxflow_gateway_limited_total", "Requests answered 429, by cause", ["cause"])
CONNECTIONS_REFUSED = Counter(
    "vaxflow_gateway_connections_refused_total", "Connections closed on accept: gateway_max_connections reached"
)

JSON: Final = "application/json"
NDJSON: Final = "application/x-ndjson"
_UTF8: Final = frozenset({"utf-8", "utf8"})
_ENCODER: Final = msgspec.json.Encoder()
_MAX_CONNECT_BACKOFF: Final = 30.0
IDEMPOTENCY_KEY: Final = "Idempotency-Key"
PARSE_INLINE_BYTES: Final = 64 * 1024
"""Bodies up to this are decoded on the loop (well under a few ms); larger ones in a thread."""

Outgoing = tuple[bytes, bytes, Headers]
"""(key, value, headers) of one record."""


class SinkUnavailable(Exception):
    """Kafka did not take every record in time; the message is a cause for logs, not for callers."""


class Sink(Protocol):
    """Where accepted events go: Kafka in production, a fake in unit tests."""

    @property
    def ready(self) -> bool: ...

    async def publish(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        """(partition, offset) per record, in order, once all are acknowledged; else SinkUnavailable."""
        ...


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a delivery outcome as seen, so a request given up on does not log 'never retrieved'."""
    if not future.cancelled():
        future.exception()


class KafkaSink:
    """An idempotent acks=all producer with a deadline on every publish.

    The producer is connected in the background (`connect`), so the gateway serves /healthz and
    answers 503 instead of failing to start while Kafka is down.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.gateway_send_timeout_seconds
        self._topic = settings.topic(RAW.name)
        self._producer: AIOKafkaProducer | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def _new_producer(self) -> AIOKafkaProducer:
        # request_timeout_ms bounds metadata waits and deliveries, so a dead broker costs a caller
        # the send timeout, not aiokafka's default of 40 s.
        return idempotent_producer(
            self._settings,
            client_id="vaxflow-gateway",
            request_timeout_ms=int(self._timeout * 1000),
            linger_ms=2,
        )

    async def start(self) -> None:
        """One attempt to connect; raises KafkaError (or OSError) when the broker is unreachable."""
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        # Warm the topic's metadata so the first request does not pay for it; best effort, because a
        # missing topic is reported per request (503) rather than by refusing to start. A topic this
        # principal may not write is not best effort: it is why every request would fail.
        try:
            await producer.partitions_for(self._topic)
        except TopicAuthorizationFailedError:
            await producer.stop()
            raise
        except KafkaError:
            pass
        self._producer = producer

    async def connect(self, health: Health) -> None:
        """Retry `start` with capped exponential backoff until connected (or cancelled)."""
        delay = 0.5
        while self._producer is None:
            try:
                await self.start()
            except (KafkaError, OSError) as exc:
                refused = await explain(self._settings, exc)
                if refused is not None:  # no retry can fix it: say why on /readyz and in the log
                    health.detail["kafka"] = health.detail["reason"] = str(refused)
                    log.error("Kafka refused the gateway; not retrying: %s", refused)
                    return
                health.detail["kafka"] = f"unavailable ({type(exc).__name__})"
                log.warning("Kafka not reachable; retrying", extra={"error": type(exc).__name__, "in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_CONNECT_BACKOFF)
        health.detail["kafka"] = "connected"
        health.ready = True
        log.info("Kafka producer connected")

    async def publish(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        producer = self._producer
        if producer is None:
            raise SinkUnavailable("producer not connected")
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self._timeout):
                for key, value, headers in records:
                    future = await producer.send(topic, value, key=key, headers=headers)
                    future.add_done_callback(_retrieve)
                    futures.append(future)
                outcomes = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            raise SinkUnavailable("no acknowledgement within the send timeout") from None
        except KafkaError as exc:
            raise SinkUnavailable(type(exc).__name__) from None
        coordinates: list[tuple[int, int]] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise SinkUnavailable(type(outcome).__name__)
            coordinates.append((outcome.partition, outcome.offset))
        return coordinates

    async def close(self) -> None:
        """Flush and close, bounded: with the cluster unable to take writes (two of three brokers
        down), aiokafka would retry the pending records for as long as it took, and SIGTERM
        would never end the process. Every record still pending by then was answered 503, so its
        sender still has it; nothing answered 202 is pending."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), self._timeout + 5)
        except TimeoutError:
            log.warning("Kafka producer not flushed on close; its pending records were answered 503")


class _TooLarge(Exception):
    pass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ClientLimits:
    """Per-client (per-token) fairness: in-flight requests and a token-bucket request rate.

    `admit` answers None (go ahead; the caller must `release`) or the seconds to wait, for 429's
    Retry-After. A client's share is fixed rather than "whatever is free" so that a client that
    arrives after another has filled the gateway still finds room.
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self._max_inflight = settings.gateway_max_inflight_per_client
        self._rate = settings.gateway_rate_per_client
        self._burst = float(settings.gateway_rate_burst)
        self._inflight: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, client: str) -> tuple[str, int] | None:
        """None when admitted, else (cause, Retry-After seconds)."""
        if self._inflight.get(client, 0) >= self._max_inflight:
            return "inflight", 1
        now = time.monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(tokens=self._burst, updated=now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return "rate", max(1, math.ceil((1.0 - bucket.tokens) / self._rate))
        bucket.tokens -= 1.0
        self._inflight[client] = self._inflight.get(client, 0) + 1
        return None

    def release(self, client: str) -> None:
        left = self._inflight.get(client, 0) - 1
        if left > 0:
            self._inflight[client] = left
        else:
            self._inflight.pop(client, None)

    def inflight(self, client: str) -> int:
        return self._inflight.get(client, 0)


class Gateway:
    """The POST /v1/events handler and what it needs; one per application."""

    def __init__(self, settings: Settings, sink: Sink, tokens: Tokens) -> None:
        self._sink = sink
        self._tokens = tokens
        self._limits = ClientLimits(settings)
        # Decoding is CPU-bound and holds the GIL between lines, so more threads would not decode
        # faster; two let a small request's parse overlap a large one's.
        self._parser = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gateway-parse")
        self._topic = settings.topic(RAW.name)
        self._limit = settings.gateway_max_body_bytes
        self._read_timeout = settings.gateway_read_timeout_seconds
        self._retry_after = str(settings.gateway_retry_after_seconds)
        self._slots = settings.gateway_max_inflight_requests
        self._inflight = 0
        self._answers = IdempotencyCache(
            ttl_seconds=settings.gateway_idempotency_ttl_seconds, max_bytes=settings.gateway_idempotency_max_bytes
        )

    @property
    def inflight(self) -> int:
        """Requests currently holding a body slot."""
        return self._inflight

    @property
    def tokens(self) -> Tokens:
        return self._tokens

    def close(self) -> None:
        self._parser.shutdown(wait=False, cancel_futures=True)

    async def post_events(self, request: web.Request) -> web.Response:
        request_id = uuid.uuid4().hex
        response = await self._handle(request, request_id)
        response.headers["X-Request-Id"] = request_id
        REQUESTS.labels(str(response.status)).inc()
        return response

    def _authenticate(self, request: web.Request) -> Grant | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        return self._tokens.lookup(token)

    def _problem(self, status: int, error: str, message: str, **extra: Any) -> web.Response:
        body = _ENCODER.encode(Problem(error=error, message=message, **extra))
        response = web.Response(status=status, body=body, content_type=JSON)
        if status == 503:
            response.headers["Retry-After"] = self._retry_after
        return response

    async def _handle(self, request: web.Request, request_id: str) -> web.Response:
        grant = self._authenticate(request)
        if grant is None:
            response = self._problem(401, "unauthorized", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="vaxflow"'
            return response
        if request.content_type not in (JSON, NDJSON) or (request.charset or "utf-8").lower() not in _UTF8:
            return self._problem(415, "unsupported_media_type", f"send {JSON} or {NDJSON}, UTF-8")
        if request.content_length is not None and request.content_length > self._limit:
            return self._too_large()
        key = request.headers.get(IDEMPOTENCY_KEY)
        if key is not None and not valid_key(key):
            message = "Idempotency-Key must be 1-255 visible ASCII characters"
            return self._problem(400, "invalid_idempotency_key", message)
        limited = self._limits.admit(grant.client)
        if limited is not None:
            cause, wait = limited
            LIMITED.labels(cause).inc()
            what = "requests in flight" if cause == "inflight" else "requests per second"
            response = self._problem(429, "too_many_requests", f"this token is at its limit of {what}; retry later")
            response.headers["Retry-After"] = str(wait)
            return response
        try:
            if self._inflight >= self._slots:
                return self._problem(503, "unavailable", "the gateway is at capacity; retry later")
            self._inflight += 1
            try:
                return await self._accept(request, request_id, grant)
            finally:
                self._inflight -= 1
        finally:
            self._limits.release(grant.client)

    def _too_large(self) -> web.Response:
        response = self._problem(413, "payload_too_large", f"the body may be at most {self._limit} bytes")
        # The rest of the body is not read: do not offer the connection for another request.
        response.force_close()
        return response

    async def _read_body(self, request: web.Request) -> bytes:
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self._limit:
                raise _TooLarge
        return bytes(body)

    async def _accept(self, request: web.Request, request_id: str, grant: Grant) -> web.Response:
        try:
            async with asyncio.timeout(self._read_timeout):
                body = await self._read_body(request)
        except _TooLarge:
            return self._too_large()
        except TimeoutError:
            response = self._problem(408, "request_timeout", "the body did not arrive in time")
            response.force_close()
            return response
        key = request.headers.get(IDEMPOTENCY_KEY)
        if key is None:
            return await self._decide(request, body, request_id, grant)
        try:
            first = self._answers.begin(grant.client, key, body_digest(body))
        except KeyReused:
            return self._problem(422, "idempotency_key_reused", "this Idempotency-Key was used with another body")
        except KeyInUse:
            return self._problem(409, "idempotency_key_in_use", "a request with this Idempotency-Key is in progress")
        if first is not None:
            log.info("answered again for its Idempotency-Key", extra={"client": grant.client, "request_id": request_id})
            response = web.Response(status=202, body=first, content_type=JSON)
            response.headers["Idempotent-Replayed"] = "true"
            return response
        try:
            response = await self._decide(request, body, request_id, grant)
        except BaseException:
            self._answers.abandon(grant.client, key)
            raise
        if response.status == 202 and isinstance(response.body, bytes):
            self._answers.finish(grant.client, key, response.body)
        else:
            self._answers.abandon(grant.client, key)
        return response

    async def _parse(self, body: bytes, ndjson: bool) -> Parsed:
        if len(body) <= PARSE_INLINE_BYTES:
            return parse_body(body, ndjson=ndjson)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._parser, lambda: parse_body(body, ndjson=ndjson))

    async def _decide(self, request: web.Request, body: bytes, request_id: str, grant: Grant) -> web.Response:
        parsed = await self._parse(body, request.content_type == NDJSON)
        if parsed.errors:
            return self._refused(400, "invalid_events", parsed.errors, parsed.truncated, grant, request_id)
        forbidden = [
            LineError(
                line=line.number,
                field="sender_ods",
                rule="sender_ods.not_allowed",
                message="sender_ods is not a sender this token may submit events for",
            )
            for line in parsed.lines
            if not grant.allows(line.event.sender_ods)
        ]
        if forbidden:
            truncated = len(forbidden) > MAX_LISTED
            return self._refused(403, "forbidden", forbidden[:MAX_LISTED], truncated, grant, request_id)
        return await self._publish(parsed.lines, grant, request_id)

    def _refused(
        self, status: int, error: str, lines: list[LineError], truncated: bool, grant: Grant, request_id: str
    ) -> web.Response:
        for line in lines:
            LINES_REFUSED.labels(line.rule).inc()
        log.info(
            "request refused",
            extra={"status": status, "client": grant.client, "request_id": request_id, "lines": len(lines)},
        )
        count = "s" if len(lines) != 1 else ""
        message = f"{len(lines)}{'+' if truncated else ''} line{count} refused; nothing was written"
        return self._problem(status, error, message, lines=lines, errors=len(lines), truncated=truncated)

    async def _publish(self, lines: list[Line], grant: Grant, request_id: str) -> web.Response:
        client, request = grant.client.encode(), request_id.encode()
        records = [
            (
                line.key,
                line.raw,
                [(h.GATEWAY_CLIENT, client), (h.GATEWAY_REQUEST, request), (h.GATEWAY_LINE, b"%d" % line.number)],
            )
            for line in lines
        ]
        started = time.monotonic()
        try:
            coordinates = await self._sink.publish(self._topic, records)
        except SinkUnavailable as exc:
            log.warning(
                "Kafka did not acknowledge; answering 503",
                extra={"client": grant.client, "request_id": request_id, "events": len(lines), "cause": str(exc)},
            )
            return self._problem(503, "unavailable", "Kafka did not acknowledge the events in time; retry later")
        PUBLISH_SECONDS.observe(time.monotonic() - started)
        EVENTS_ACCEPTED.inc(len(coordinates))
        # Who sent how much, for audit and support; ODS codes are organisations, never patients.
        senders = sorted({line.event.sender_ods.upper() for line in lines})
        log.info(
            "request accepted",
            extra={
                "request_id": request_id,
                "client": grant.client,
                "senders": ",".join(senders),
                "events": len(coordinates),
            },
        )
        body = Accepted(accepted=len(coordinates), events=[Coordinate(partition=p, offset=o) for p, o in coordinates])
        return web.Response(status=202, body=_ENCODER.encode(body), content_type=JSON)


GATEWAY: Final = web.AppKey("gateway", Gateway)
"""The application's Gateway, for tests and operators' introspection."""


def create_app(
    settings: Settings,
    *,
    sink: Sink | None = None,
    tokens: Tokens | None = None,
    health: Health | None = None,
) -> web.Application:
    """The gateway application: events, OpenAPI document, and the runtime's health routes.

    Without `sink` the application owns a KafkaSink: it connects in the background on start-up and
    is flushed and closed on clean-up. A given sink (a fake in unit tests) is the caller's to manage.
    """
    health = health if health is not None else Health()
    app = web.Application(client_max_size=settings.gateway_max_body_bytes)
    if sink is None:
        kafka = sink = KafkaSink(settings)

        async def kafka_lifecycle(_: web.Application) -> AsyncIterator[None]:
            connecting = asyncio.create_task(kafka.connect(health))
            yield
            health.ready = False
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            await kafka.close()

        app.cleanup_ctx.append(kafka_lifecycle)
    gateway = Gateway(settings, sink, tokens if tokens is not None else load_tokens(settings))
    app[GATEWAY] = gateway

    async def close_gateway(_: web.Application) -> None:
        gateway.close()

    app.on_cleanup.append(close_gateway)
    document = openapi.packaged()

    async def openapi_json(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type=JSON)

    app.router.add_post("/v1/events", gateway.post_events)
    app.router.add_get("/openapi.json", openapi_json)
    for resource in health_app(health, "gateway").router.resources():
        for route in resource:
            app.router.add_route(route.method, resource.canonical, route.handler)
    return app


def tls_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    """The server TLS context when a certificate is configured (TLS 1.2 or later), else None."""
    if settings.gateway_tls_cert_file is None or settings.gateway_tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.gateway_tls_cert_file, settings.gateway_tls_key_file)
    return context


class _Refused(asyncio.Protocol):
    """A connection over gateway_max_connections: closed at once, before a byte is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        CONNECTIONS_REFUSED.inc()
        transport.close()


@contextlib.asynccontextmanager
async def serving(app: web.Application, settings: Settings, *, port: int | None = None) -> AsyncIterator[int]:
    """Serve `app` on the gateway's address (or `port`; 0 picks one) and yield the port.

    aiohttp closes a connection still waiting for a request's headers after its keep-alive
    timeout, counted from the connection's start or its last response: that is the header timeout
    here. It has no connection limit, so the protocol factory closes connections beyond
    `gateway_max_connections` on accept. A TLS handshake is bounded by the same timeout.
    """
    # In-flight requests wait at most the send timeout for Kafka; leave them that long and a bit.
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=settings.gateway_send_timeout_seconds + 5,
        keepalive_timeout=settings.gateway_header_timeout_seconds,
    )
    await runner.setup()
    server = runner.server
    assert server is not None
    cap = settings.gateway_max_connections

    def factory() -> asyncio.BaseProtocol:
        if len(server.connections) >= cap:
            return _Refused()
        return server()

    context = tls_context(settings)
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(
            factory,
            settings.gateway_host,
            settings.gateway_port if port is None else port,
            ssl=context,
            ssl_handshake_timeout=settings.gateway_header_timeout_seconds if context is not None else None,
            reuse_address=True,
        )
    except BaseException:
        await runner.cleanup()
        raise
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await runner.cleanup()


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Serve until `stop`; on the way out stop accepting, let requests in flight finish, flush Kafka.

    SIGHUP re-reads the tokens file (so does a change to it, noticed on the next request).
    """
    app = create_app(settings, health=health)
    tokens = app[GATEWAY].tokens
    loop = asyncio.get_running_loop()
    reloadable = isinstance(tokens, TokenStore)
    if reloadable:
        assert isinstance(tokens, TokenStore)
        loop.add_signal_handler(signal.SIGHUP, tokens.reload)
    try:
        async with serving(app, settings) as port:
            scheme = "https" if settings.gateway_tls_cert_file is not None else "http"
            log.info("gateway listening", extra={"host": settings.gateway_host, "port": port, "scheme": scheme})
            await stop.wait()
    finally:
        health.ready = False
        if reloadable:
            loop.remove_signal_handler(signal.SIGHUP)
