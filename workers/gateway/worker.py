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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
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
from workers.base.settings import Settings
from workers.gateway import openapi
from workers.gateway.api import Accepted, Coordinate, LineError, Problem
from workers.gateway.idempotency import IdempotencyCache, KeyInUse, KeyReused, body_digest, valid_key
from workers.gateway.intake import MAX_LISTED, Line, parse_body
from workers.gateway.tokens import Grant, TokenTable, load_tokens

log = logging.getLogger("vaxflow.gateway")

REQUESTS = Counter("vaxflow_gateway_requests_total", "POST /v1/events requests by response status", ["status"])
EVENTS_ACCEPTED = Counter("vaxflow_gateway_events_accepted_total", "Events acknowledged by Kafka and answered 202")
LINES_REFUSED = Counter("vaxflow_gateway_lines_refused_total", "Lines refused with 400 or 403, by rule", ["rule"])
PUBLISH_SECONDS = Histogram("vaxflow_gateway_publish_seconds", "First send to last Kafka acknowledgement")

JSON: Final = "application/json"
NDJSON: Final = "application/x-ndjson"
_UTF8: Final = frozenset({"utf-8", "utf8"})
_ENCODER: Final = msgspec.json.Encoder()
_MAX_CONNECT_BACKOFF: Final = 30.0
IDEMPOTENCY_KEY: Final = "Idempotency-Key"

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


class Gateway:
    """The POST /v1/events handler and what it needs; one per application."""

    def __init__(self, settings: Settings, sink: Sink, tokens: TokenTable) -> None:
        self._sink = sink
        self._tokens = tokens
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
        if self._inflight >= self._slots:
            return self._problem(503, "unavailable", "the gateway is at capacity; retry later")
        self._inflight += 1
        try:
            return await self._accept(request, request_id, grant)
        finally:
            self._inflight -= 1

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

    async def _decide(self, request: web.Request, body: bytes, request_id: str, grant: Grant) -> web.Response:
        parsed = parse_body(body, ndjson=request.content_type == NDJSON)
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
        body = Accepted(accepted=len(coordinates), events=[Coordinate(partition=p, offset=o) for p, o in coordinates])
        return web.Response(status=202, body=_ENCODER.encode(body), content_type=JSON)


GATEWAY: Final = web.AppKey("gateway", Gateway)
"""The application's Gateway, for tests and operators' introspection."""


def create_app(
    settings: Settings,
    *,
    sink: Sink | None = None,
    tokens: TokenTable | None = None,
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
    document = openapi.packaged()

    async def openapi_json(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type=JSON)

    app.router.add_post("/v1/events", gateway.post_events)
    app.router.add_get("/openapi.json", openapi_json)
    for resource in health_app(health, "gateway").router.resources():
        for route in resource:
            app.router.add_route(route.method, resource.canonical, route.handler)
    return app


async def run(settings: Settings, stop: asyncio.Event, health: Health) -> None:
    """Serve until `stop`; on the way out stop accepting, let requests in flight finish, flush Kafka."""
    app = create_app(settings, health=health)
    # In-flight requests wait at most the send timeout for Kafka; leave them that long and a bit.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.gateway_send_timeout_seconds + 5)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.gateway_host, settings.gateway_port).start()
        log.info("gateway listening", extra={"host": settings.gateway_host, "port": settings.gateway_port})
        await stop.wait()
    finally:
        health.ready = False
        await runner.cleanup()
