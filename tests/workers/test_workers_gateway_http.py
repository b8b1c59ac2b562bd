"""The gateway's HTTP behaviour without Kafka: auth, limits, per-line reasons, and what it forwards.

A fake sink stands in for Kafka here; tests/workers/test_workers_gateway_kafka.py proves the same
paths against the real broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas.event import RawEvent
from schemas.validate import MAX_EVENT_BYTES
from topics import headers as h
from vaxflow.dev.samples import make_event
from workers.base.paths import REPO_ROOT
from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.gateway import openapi
from workers.gateway.tokens import TokensFileError, TokenTable, hash_token, load_tokens
from workers.gateway.worker import (
    GATEWAY,
    KafkaSink,
    Outgoing,
    SinkUnavailable,
    create_app,
)

TOKEN_A = "token-for-x8e5b-only"
TOKEN_ALL = "token-for-everyone"
LIMIT = 256 * 1024


@dataclass
class FakeSink:
    """Records what would go to Kafka; `fail` makes it behave like an unreachable broker."""

    fail: bool = False
    gate: asyncio.Event | None = None
    published: list[tuple[str, list[Outgoing]]] = field(default_factory=list)
    next_offset: int = 0
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ready(self) -> bool:
        return not self.fail

    async def publish(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise SinkUnavailable("fake broker down")
        self.published.append((topic, list(records)))
        first, self.next_offset = self.next_offset, self.next_offset + len(records)
        return [(0, first + i) for i in range(len(records))]

    @property
    def values(self) -> list[bytes]:
        return [value for _, records in self.published for _, value, _ in records]


def tokens() -> TokenTable:
    return TokenTable.from_json(
        orjson.dumps(
            {
                "tokens": [
                    {"client": "x8e5b-feed", "token_sha256": hash_token(TOKEN_A), "senders": ["x8e5b"]},
                    {
                        "client": "everyone",
                        "token_sha256": hashlib.sha256(TOKEN_ALL.encode()).hexdigest(),
                        "senders": ["*"],
                    },
                ]
            }
        )
    )


def settings(**overrides: Any) -> Settings:
    return Settings(topic_namespace="unit", gateway_max_body_bytes=LIMIT, **overrides)


def auth(token: str = TOKEN_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def event(seed: int = 1, sender: str = "X8E5B", vaccine_type: str = "MMR") -> dict[str, Any]:
    return make_event(random.Random(seed), vaccine_type, sender)


def ndjson(*events: dict[str, Any] | bytes) -> bytes:
    return b"\n".join(e if isinstance(e, bytes) else orjson.dumps(e) for e in events) + b"\n"


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
async def client(sink: FakeSink) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings(), sink=sink, tokens=tokens(), health=Health(ready=True))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def post(
    client: TestClient[Any, Any], body: bytes, *, content_type: str = "application/x-ndjson", token: str = TOKEN_A
) -> tuple[int, Any, Any]:
    response = await client.post("/v1/events", data=body, headers={**auth(token), "Content-Type": content_type})
    raw = await response.read()
    return response.status, (json.loads(raw) if raw else None), response.headers


# --- 401 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {TOKEN_A}"}, {"Authorization": "Bearer nope"}],
    ids=["missing", "empty", "wrong-scheme", "unknown"],
)
async def test_no_or_unknown_token_is_401(
    client: TestClient[Any, Any], sink: FakeSink, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/events", data=orjson.dumps(event()), headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"] == "unauthorized"
    assert sink.published == []


async def test_token_never_logged(client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await post(client, ndjson(event(sender="YGM17")))  # 403: logged
    await post(client, b"not json\n")  # 400: logged
    await post(client, ndjson(event()), token="Bearer wrong")
    assert TOKEN_A not in caplog.text
    assert "wrong" not in caplog.text


# --- 403 ---------------------------------------------------------------------------------------


async def test_sender_not_allowed_is_403_naming_the_line(client: TestClient[Any, Any], sink: FakeSink) -> None:
    body = ndjson(event(1), event(2, sender="YGM17"), event(3), event(4, sender="DPSFULL"))
    status, answer, _ = await post(client, body)
    assert status == 403
    assert answer["error"] == "forbidden"
    assert [(line["line"], line["field"], line["rule"]) for line in answer["lines"]] == [
        (2, "sender_ods", "sender_ods.not_allowed"),
        (4, "sender_ods", "sender_ods.not_allowed"),
    ]
    assert sink.published == []


async def test_sender_check_ignores_case_and_wildcard_allows_all(client: TestClient[Any, Any], sink: FakeSink) -> None:
    lower = event(1)
    lower["sender_ods"] = "x8e5b"
    status, _, _ = await post(client, ndjson(lower))
    assert status == 202
    status, answer, _ = await post(client, ndjson(event(2, sender="YGM17"), event(3)), token=TOKEN_ALL)
    assert status == 202
    assert answer["accepted"] == 2


# --- 413 ---------------------------------------------------------------------------------------


async def test_content_length_over_limit_is_413_before_reading(client: TestClient[Any, Any], sink: FakeSink) -> None:
    status, answer, _ = await post(client, b"x" * (LIMIT + 1))
    assert status == 413
    assert answer["error"] == "payload_too_large"
    assert sink.published == []


async def test_chunked_body_over_limit_is_413_while_reading(client: TestClient[Any, Any], sink: FakeSink) -> None:
    line = orjson.dumps(event()) + b"\n"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while reading
        for _ in range(LIMIT // len(line) + 2):
            yield line

    response = await client.post(
        "/v1/events", data=chunks(), headers={**auth(), "Content-Type": "application/x-ndjson"}
    )
    assert response.status == 413
    assert sink.published == []


async def test_body_exactly_at_limit_is_read(client: TestClient[Any, Any], sink: FakeSink) -> None:
    body = ndjson(*(event(i) for i in range(100)))
    body += b" " * (LIMIT - len(body))  # a whitespace-only last line, skipped
    assert len(body) == LIMIT
    status, answer, _ = await post(client, body)
    assert status == 202
    assert answer["accepted"] == 100


# --- 400: per-line reasons ---------------------------------------------------------------------


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in changes.items():
        if key.startswith("record__"):
            copy["record"][key[8:]] = value
        else:
            copy[key] = value
    return copy


async def test_malformed_lines_each_get_a_reason_and_nothing_is_written(
    client: TestClient[Any, Any], sink: FakeSink
) -> None:
    good = event()
    no_record = {k: v for k, v in good.items() if k != "record"}
    typo = _with(good)
    typo["record"]["NHS_NUMBR"] = typo["record"].pop("NHS_NUMBER")
    body = b"\n".join(
        [
            orjson.dumps(good),  # 1
            b"{not json",  # 2
            b"[1, 2]",  # 3
            orjson.dumps(typo),  # 4
            orjson.dumps(_with(good, record__DOSE_SEQUENCE=1)),  # 5
            orjson.dumps(no_record),  # 6
            orjson.dumps(_with(good, priority="high")),  # 7
            b'{"vaccine_type": "MMR\xff"}',  # 8: not UTF-8
            b"",  # 9: blank, skipped but counted
            orjson.dumps(_with(good, received_at="yesterday")),  # 10
            orjson.dumps(_with(good, record__PERSON_SURNAME="x" * MAX_EVENT_BYTES)),  # 11
            orjson.dumps(_with(good, schema_version="1")),  # 12
            orjson.dumps(_with(good, record=["a"])),  # 13
            orjson.dumps(_with(good, sender_ods=None)),  # 14
        ]
    )
    status, answer, _ = await post(client, body)
    assert status == 400
    assert answer["error"] == "invalid_events"
    found = {line["line"]: (line["field"], line["rule"]) for line in answer["lines"]}
    assert found == {
        2: ("event", "event.json"),
        3: ("event", "event.type"),
        4: ("record", "record.unknown_field"),
        5: ("DOSE_SEQUENCE", "DOSE_SEQUENCE.type"),
        6: ("record", "record.missing"),
        7: ("event", "event.unknown_field"),
        8: ("event", "event.json"),
        10: ("received_at", "received_at.type"),
        11: ("event", "event.too_large"),
        12: ("schema_version", "schema_version.type"),
        13: ("record", "record.type"),
        14: ("sender_ods", "sender_ods.type"),
    }
    typo_message = next(line["message"] for line in answer["lines"] if line["line"] == 4)
    assert typo_message.endswith(": NHS_NUMBR")  # the key is named, to find the typo
    assert answer["errors"] == 12
    assert answer["truncated"] is False
    assert sink.published == []


async def test_messages_never_quote_values(client: TestClient[Any, Any]) -> None:
    secret = "9434765919"
    body = orjson.dumps(_with(event(), record__NHS_NUMBER=int(secret)))
    status, answer, _ = await post(client, body, content_type="application/json")
    assert status == 400
    assert secret not in json.dumps(answer)


async def test_many_bad_lines_are_truncated_at_100(client: TestClient[Any, Any]) -> None:
    status, answer, _ = await post(client, b"{}\n" * 5000)
    assert status == 400
    assert len(answer["lines"]) == 100
    assert answer["truncated"] is True


async def test_json_body_is_one_event_and_forwarded_as_sent(client: TestClient[Any, Any], sink: FakeSink) -> None:
    body = b'  {"vaccine_type":"MMR",\n "sender_ods":"X8E5B","source_system":"s","record":{}}  '
    status, answer, headers = await post(client, body, content_type="application/json; charset=utf-8")
    assert status == 202
    assert answer == {"accepted": 1, "events": [{"partition": 0, "offset": 0}]}
    assert headers["X-Request-Id"]
    assert sink.values == [body]


async def test_two_json_objects_in_a_json_body_are_400(client: TestClient[Any, Any], sink: FakeSink) -> None:
    body = orjson.dumps(event(1)) + orjson.dumps(event(2))
    status, answer, _ = await post(client, body, content_type="application/json")
    assert status == 400
    assert answer["lines"][0]["rule"] == "event.json"


@pytest.mark.parametrize("body", [b"", b"\n\n  \r\n"], ids=["empty", "blank-lines"])
async def test_empty_body_is_400(client: TestClient[Any, Any], body: bytes) -> None:
    status, answer, _ = await post(client, body)
    assert status == 400
    assert answer["lines"][0]["rule"] == "body.empty"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json; charset=latin-1", "multipart/form-data; boundary=x"]
)
async def test_other_media_types_are_415(client: TestClient[Any, Any], content_type: str) -> None:
    status, answer, _ = await post(client, orjson.dumps(event()), content_type=content_type)
    assert status == 415
    assert answer["error"] == "unsupported_media_type"


# --- what is forwarded --------------------------------------------------------------------------


async def test_ndjson_forwards_original_line_bytes_with_key_and_headers(
    client: TestClient[Any, Any], sink: FakeSink
) -> None:
    events = [event(i, vaccine_type=vt) for i, vt in enumerate(("MMR", "RSV", "HPV"))]
    lines = [orjson.dumps(e) for e in events]
    lines[1] = json.dumps(events[1], indent=None, separators=(", ", ": "), ensure_ascii=True).encode()
    body = lines[0] + b"\r\n\n" + lines[1] + b"\n" + lines[2]  # CRLF, a blank line, no final newline
    status, answer, _ = await post(client, body)
    assert status == 202
    assert answer["accepted"] == 3
    [(topic, records)] = sink.published
    assert topic == "unit.vaccination.events.raw"
    assert [value for _, value, _ in records] == lines
    assert [key for key, _, _ in records] == [b"MMR|X8E5B", b"RSV|X8E5B", b"HPV|X8E5B"]
    headers = [dict(hs) for _, _, hs in records]
    assert [hs[h.GATEWAY_LINE] for hs in headers] == [b"1", b"3", b"4"]
    assert {hs[h.GATEWAY_CLIENT] for hs in headers} == {b"x8e5b-feed"}


async def test_content_rules_are_left_to_the_validator(client: TestClient[Any, Any], sink: FakeSink) -> None:
    bad = _with(event(), record__NHS_NUMBER="1234567890", record__PERSON_DOB="not a date", vaccine_type="NOPE")
    status, _, _ = await post(client, ndjson(bad))
    assert status == 202
    assert sink.values == [orjson.dumps(bad)]


@pytest.mark.parametrize(
    "value",
    ['pipe|in "quotes" and ¬ not', "line\nbreak\r\n", "tab\tnul\u0000 del\x7f", "\u2028sep\u2029", "é" * 50],
    ids=["delimiters", "newlines", "controls", "separators", "non-ascii"],
)
async def test_poison_values_escaped_in_json_are_forwarded_unchanged(
    client: TestClient[Any, Any], sink: FakeSink, value: str
) -> None:
    line = orjson.dumps(_with(event(), record__PERSON_SURNAME=value))
    status, _, _ = await post(client, ndjson(line))
    assert status == 202
    assert sink.values == [line]
    decoded = msgspec.json.decode(sink.values[0], type=RawEvent)
    assert value == decoded.record.PERSON_SURNAME


@pytest.mark.parametrize("raw", [b"\n", b"\x01", b"\t", b"\x00"], ids=["newline", "soh", "tab", "nul"])
async def test_raw_control_characters_inside_json_strings_are_400(client: TestClient[Any, Any], raw: bytes) -> None:
    body = orjson.dumps(event()).replace(b'"MMR"', b'"MM' + raw + b'R"', 1)
    status, answer, _ = await post(client, body, content_type="application/json")
    assert status == 400
    assert answer["lines"][0]["rule"] == "event.json"


# --- 503 ---------------------------------------------------------------------------------------


async def test_sink_failure_is_503_with_retry_after(client: TestClient[Any, Any], sink: FakeSink) -> None:
    sink.fail = True
    status, answer, headers = await post(client, ndjson(event()))
    assert status == 503
    assert answer["error"] == "unavailable"
    assert headers["Retry-After"] == "5"


async def test_producer_not_started_is_503() -> None:
    unconnected = KafkaSink(settings(kafka_bootstrap="127.0.0.1:9"))
    app = create_app(settings(), sink=unconnected, tokens=tokens())
    async with TestClient(TestServer(app)) as test_client:
        status, _, headers = await post(test_client, ndjson(event()))
        assert status == 503
        assert "Retry-After" in headers
        assert (await test_client.get("/readyz")).status == 503


async def test_requests_beyond_capacity_are_503() -> None:
    gate = asyncio.Event()
    sink = FakeSink(gate=gate)
    app = create_app(settings(gateway_max_inflight_requests=1), sink=sink, tokens=tokens())
    async with TestClient(TestServer(app)) as test_client:
        first = asyncio.create_task(post(test_client, ndjson(event(1))))
        await sink.entered.wait()  # the first request holds the only slot
        assert app[GATEWAY].inflight == 1
        status, _, headers = await post(test_client, ndjson(event(2)))
        assert status == 503
        assert "Retry-After" in headers
        gate.set()
        assert (await first)[0] == 202


# --- health, metrics, OpenAPI -----------------------------------------------------------------


async def test_health_routes_and_metrics_are_served(client: TestClient[Any, Any]) -> None:
    await post(client, ndjson(event()))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'vaxflow_gateway_requests_total{status="202"}' in metrics
    assert "vaxflow_gateway_events_accepted_total" in metrics


REPO_DOC = REPO_ROOT / openapi.REPO_COPY


async def test_served_openapi_equals_the_repository_file(client: TestClient[Any, Any]) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == REPO_DOC.read_bytes()


def test_openapi_files_are_generated_from_the_code() -> None:
    """Fails after a change to RawEvent or a response Struct: run `python -m workers.gateway.openapi`."""
    assert REPO_DOC.read_bytes() == openapi.render()
    assert openapi.packaged() == REPO_DOC.read_bytes()
    assert json.loads(REPO_DOC.read_bytes())["openapi"].startswith("3.1")


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" else _rewrite_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def test_openapi_event_schema_is_msgspec_schema_of_raw_event() -> None:
    document = json.loads(REPO_DOC.read_bytes())
    schema = json.loads(msgspec.json.encode(msgspec.json.schema(RawEvent)))  # as JSON: a tuple default is []
    assert schema["$ref"] == "#/$defs/RawEvent"
    for name, definition in schema["$defs"].items():
        assert document["components"]["schemas"][name] == _rewrite_refs(definition), name
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/RawEvent"}


# --- tokens ------------------------------------------------------------------------------------


def test_token_lookup() -> None:
    table = tokens()
    grant = table.lookup(TOKEN_A)
    assert grant is not None
    assert grant.client == "x8e5b-feed"
    assert grant.allows("X8E5B")
    assert not grant.allows("YGM17")
    everyone = table.lookup(TOKEN_ALL)
    assert everyone is not None
    assert everyone.allows("ANYTHING")
    assert table.lookup(TOKEN_A + "x") is None
    assert table.lookup("") is None
    assert table.lookup("\ud800") is None  # unencodable: refused, not an exception


DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ({"tokens": [{"client": "a", "senders": ["X"]}]}, "is required"),
        ({"tokens": [{"client": "a", "token": "t", "token_sha256": "00", "senders": ["X"]}]}, "plain 'token'"),
        ({"tokens": [{"client": "a", "token": "t", "senders": ["X"]}]}, "plain 'token' entries are refused"),
        ({"tokens": [{"client": "a", "token_sha256": "abc", "senders": ["X"]}]}, "64 hex"),
        ({"tokens": [{"client": "a", "token_sha256": DIGEST, "senders": []}]}, "senders"),
        ({"tokens": [{"client": "a", "token_sha256": DIGEST, "senders": ["X"]}] * 2}, "twice"),
        ({"tokens": [{"client": "a", "token_sha256": DIGEST, "senders": ["X"], "admin": True}]}, "not valid"),
    ],
)
def test_bad_tokens_files_are_refused_without_quoting_tokens(content: dict[str, Any], complaint: str) -> None:
    with pytest.raises(TokensFileError, match=complaint) as caught:
        TokenTable.from_json(orjson.dumps(content))
    assert "'t'" not in str(caught.value)


def test_development_token_only_without_a_tokens_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    table = load_tokens(Settings())
    grant = table.lookup("vaxflow-dev-token")
    assert grant is not None
    assert grant.allows("X8E5B")
    assert "development only" in caplog.text
    path = tmp_path / "tokens.json"
    path.write_bytes(
        orjson.dumps({"tokens": [{"client": "c", "token_sha256": hash_token("prod-token"), "senders": ["X8E5B"]}]})
    )
    path.chmod(0o600)
    configured = load_tokens(Settings(gateway_tokens_file=path))
    assert configured.lookup("vaxflow-dev-token") is None
    assert configured.lookup("prod-token") is not None


@pytest.fixture(autouse=True)
def _no_real_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never reach a broker: an accidental KafkaSink.start fails fast."""

    async def refuse(self: KafkaSink) -> None:
        raise OSError("unit tests do not connect to Kafka")

    monkeypatch.setattr(KafkaSink, "start", refuse)


async def test_slow_body_is_408() -> None:
    sink = FakeSink()
    app = create_app(settings(gateway_read_timeout_seconds=0.3), sink=sink, tokens=tokens())

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"vaccine_type": '
        await asyncio.sleep(2)
        yield b'"MMR"}'

    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.post(
            "/v1/events", data=trickle(), headers={**auth(), "Content-Type": "application/json"}
        )
        assert response.status == 408
    assert sink.published == []
