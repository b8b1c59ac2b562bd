"""The gateway's OpenAPI 3.1 description, generated from the Structs the code really uses.

`python -m workers.gateway.openapi` writes docs/openapi/gateway.json (the copy reviewers and
callers read) and workers/gateway/openapi.json (the package-data copy the gateway serves, so an
installed wheel needs no repository). Tests fail when either differs from `build()`, so a change to
RawEvent or to a response shape cannot ship without its published contract.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Final

import msgspec

from schemas.event import RawEvent
from schemas.validate import MAX_EVENT_BYTES
from workers.gateway.api import Accepted, Problem

REF_TEMPLATE: Final = "#/components/schemas/{name}"
PACKAGE_COPY: Final = "openapi.json"
REPO_COPY: Final = Path("docs") / "openapi" / "gateway.json"

_DESCRIPTION: Final = f"""\
HTTP intake for vaccination events, for point-of-care systems that cannot produce to Kafka.

Each accepted event is written, byte for byte as sent, to the Kafka topic `vaccination.events.raw`
with key `VACCINE_TYPE|SENDER_ODS`. The gateway checks only the event's shape (UTF-8 JSON, an
object with the envelope and record keys of the event contract (docs/event-contract.md) and
string values, at most
{MAX_EVENT_BYTES} bytes per event). Content rules (NHS number, dates, codes, supplier permissions)
are applied later by the validator, which sends refused events with reasons to
`vaccination.events.rejected`.

Event contract version 2 adds `extended_attributes`: a list of `ATTRIBUTE_ID`,
`ATTRIBUTE_DISPLAYED_TEXT`, `ATTRIBUTE_VALUE` and optional `RECORDED_DATE` objects, for COVID and
FLU vaccinations only, from senders NHS England lets send COVID files. They travel to NHS England
in the extended-attribute file written beside the vaccination file of the same window.

A request is all-or-nothing before Kafka: if any line is malformed (400) or names a sender the
token may not submit for (403), nothing of the request is written, so a caller can fix and resend
the whole request without creating duplicates of the good lines. 202 is answered only after Kafka
acknowledged every event on all in-sync replicas; the body gives each event's origin (partition,
offset), its identity through the pipeline. A 503 means Kafka did not acknowledge every event in
time: some events of that request may have been written. Retry it: vaxflow remembers every event
it has taken (UNIQUE_ID_URI, UNIQUE_ID, ACTION_FLAG and content, for at least 30 days) and refuses
a second copy as `duplicate.submission` on `vaccination.events.rejected`, so NHS England receives
one row. Send an `Idempotency-Key` header to have a retry answered with the first 202 (same
coordinates) when it reaches the same gateway instance while the key is remembered (24 hours).

Authentication: `Authorization: Bearer <token>`. Each token is configured with the sender ODS codes
it may submit for. The development token of the local stack may submit for every sender and is
accepted only in development mode.

Fair use: each token may have a few requests in flight at once and send a bounded number of
requests per second; beyond either the answer is 429 with Retry-After, and nothing is written.
"""


def _problem(description: str, problem_ref: dict[str, Any], **headers: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": problem_ref}}}
    if headers:
        out["headers"] = headers
    return out


def build() -> dict[str, Any]:
    """The whole document as a JSON-ready dict (deterministic: same code, same bytes)."""
    (event_ref, accepted_ref, problem_ref), components = msgspec.json.schema_components(
        (RawEvent, Accepted, Problem), ref_template=REF_TEMPLATE
    )
    retry_after = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
    request_id = {
        "X-Request-Id": {
            "description": "Id of this request, also in the vaxflow.gateway.request header of each record",
            "schema": {"type": "string"},
        }
    }
    post_events = {
        "operationId": "postEvents",
        "summary": "Submit one event (JSON) or many (NDJSON)",
        "security": [{"bearer": []}],
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Optional, 1-255 visible ASCII characters, unique per request body (a UUID). "
                "A retry with the same key and body is answered with the first 202 (header "
                "Idempotent-Replayed: true) and publishes nothing; the same key with another body is 422; "
                "while the first request is still in progress, 409. Only 202 answers are remembered, per "
                "gateway instance, for gateway_idempotency_ttl_seconds (default 24 h).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": event_ref},
                "application/x-ndjson": {
                    "schema": {
                        "type": "string",
                        "description": "One RawEvent JSON object per line (LF or CRLF); blank lines are "
                        "ignored but counted, so error line numbers match the caller's file.",
                    }
                },
            },
        },
        "responses": {
            "202": {
                "description": "Every event is on vaccination.events.raw, acknowledged by Kafka (acks=all)",
                "headers": {
                    **request_id,
                    "Idempotent-Replayed": {
                        "description": "`true` when this is the remembered answer to an earlier request with "
                        "the same Idempotency-Key",
                        "schema": {"type": "string"},
                    },
                },
                "content": {"application/json": {"schema": accepted_ref}},
            },
            "400": _problem(
                "Malformed input; `lines` says which line, field and rule (or the Idempotency-Key is "
                "malformed). Nothing written.",
                problem_ref,
            ),
            "401": _problem(
                "No bearer token, or an unknown one",
                problem_ref,
                **{"WWW-Authenticate": {"schema": {"type": "string"}}},
            ),
            "403": _problem("A line names a sender_ods this token may not submit for. Nothing written.", problem_ref),
            "408": _problem("The body did not arrive in time. Nothing written.", problem_ref),
            "409": _problem("A request with this Idempotency-Key is still in progress. Nothing written.", problem_ref),
            "413": _problem("The body is larger than the configured limit. Nothing written.", problem_ref),
            "415": _problem("Content-Type is not application/json or application/x-ndjson (UTF-8)", problem_ref),
            "422": _problem("This Idempotency-Key was used with a different body. Nothing written.", problem_ref),
            "429": _problem(
                "This token has its share of requests in flight, or sent more requests per second than it may. "
                "Nothing written.",
                problem_ref,
                **retry_after,
            ),
            "503": _problem(
                "Kafka is unavailable or did not acknowledge in time, or the gateway is at capacity",
                problem_ref,
                **retry_after,
            ),
        },
    }

    def plain(summary: str, media: str, schema: dict[str, Any], *extra: tuple[str, str]) -> dict[str, Any]:
        responses: dict[str, Any] = {"200": {"description": summary, "content": {media: {"schema": schema}}}}
        for status, text in extra:
            responses[status] = {"description": text}
        return {"get": {"summary": summary, "responses": responses}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "vaxflow gateway", "version": "1", "description": _DESCRIPTION},
        "paths": {
            "/v1/events": {"post": post_events},
            "/healthz": plain("Liveness: the process serves requests", "application/json", {"type": "object"}),
            "/readyz": plain(
                "Readiness: the Kafka producer is connected",
                "application/json",
                {"type": "object"},
                ("503", "Not ready (Kafka not connected yet)"),
            ),
            "/metrics": plain("Prometheus metrics", "text/plain", {"type": "string"}),
            "/openapi.json": plain("This document", "application/json", {"type": "object"}),
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> bytes:
    return (json.dumps(build(), indent=2, ensure_ascii=False) + "\n").encode()


def packaged() -> bytes:
    """The document the gateway serves (package data)."""
    return resources.files("workers.gateway").joinpath(PACKAGE_COPY).read_bytes()


def write(repo_root: Path) -> list[Path]:
    content = render()
    targets = [repo_root / REPO_COPY, Path(__file__).with_name(PACKAGE_COPY)]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return targets


if __name__ == "__main__":
    from workers.base.paths import REPO_ROOT

    for written in write(REPO_ROOT):
        print(written, file=sys.stderr)
