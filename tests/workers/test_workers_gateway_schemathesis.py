"""Fuzz the gateway's HTTP API from its own OpenAPI document with schemathesis (issue 17).

Every operation of workers/gateway/openapi.json is called with generated requests, valid and
invalid, with a token that may submit for every sender; every answer must be no 5xx and match the
document: a documented status, its content type, its headers and its body schema. The gateway runs
in a thread with its own event loop and a sink that takes everything (Kafka's behaviour is the
subject of test_workers_gateway_kafka.py). Bounded: MAX_EXAMPLES per operation, no deadline.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from support.ports import free_port

from workers.base.runtime import Health
from workers.base.settings import Settings
from workers.gateway import openapi
from workers.gateway.tokens import TokenTable, hash_token
from workers.gateway.worker import Outgoing, create_app, serving

if os.environ.get("CI") != "true":  # a locked dev package: ./scripts/setup installs it; CI must have it
    pytest.importorskip("schemathesis", reason="schemathesis is not installed: run ./scripts/setup")
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

TOKEN = "schemathesis-token-0123456789abcdef"
MAX_EXAMPLES = 60
STATUSES: Counter[str] = Counter()


class TakeAll:
    offset = 0

    @property
    def ready(self) -> bool:
        return True

    async def publish(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        first, self.offset = self.offset, self.offset + len(records)
        return [(0, first + i) for i in range(len(records))]


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """The gateway served from a thread of its own, for schemathesis's blocking HTTP client."""
    port = free_port()
    config = Settings(
        topic_namespace="fuzz",
        gateway_port=port,
        gateway_rate_per_client=100_000.0,
        gateway_rate_burst=100_000,
        gateway_max_body_bytes=1024 * 1024,
    )
    table = TokenTable.from_json(
        orjson.dumps({"tokens": [{"client": "fuzz", "token_sha256": hash_token(TOKEN), "senders": ["*"]}]})
    )
    started = threading.Event()
    loop = asyncio.new_event_loop()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        app = create_app(config, sink=TakeAll(), tokens=table, health=Health(ready=True))
        async with serving(app, config):
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30), "the gateway did not start"
    try:
        yield f"http://127.0.0.1:{port}"
        print(f"schemathesis answers: {dict(sorted(STATUSES.items()))}")
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


# A schema-valid request may still be refused for the state it meets, never for its shape: an
# Idempotency-Key the fuzzer reuses with another body (422) or while in use (409). 400 stays an error:
# a body the document allows but the gateway refuses is a document that is wrong.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "409", "422", "429"]}}}
)
# The NDJSON body is documented as a string of lines: send the generated string as it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schema = schemathesis.openapi.from_dict(orjson.loads(openapi.packaged()), config=CONFIG)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_openapi_document_and_none_is_5xx(case: Any, gateway_url: str) -> None:
    # An NDJSON body is documented as a string: JSON Schema cannot say "lines of RawEvent", so a
    # string the schema allows may rightly be 400; every other check applies to it as to JSON.
    excluded = [positive_data_acceptance] if case.media_type == "application/x-ndjson" else []
    response = case.call_and_validate(
        base_url=gateway_url, headers={"Authorization": f"Bearer {TOKEN}"}, excluded_checks=excluded
    )
    STATUSES[f"{case.method} {case.path} {response.status_code}"] += 1
