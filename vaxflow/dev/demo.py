"""The main job's load and report: a realistic mix of events through the gateway, followed until
every event is in a file MESH accepted (and acknowledged) or in a dead-letter topic.

It follows its own events by origin (the gateway returns each event's raw partition and offset),
so it gives the same answer on a stack that already holds earlier runs.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import orjson

from schemas.extended import is_extended_file_name
from schemas.pipeline import AckOutcome, SentReceipt, UploadFailure, decode_origin
from topics import headers as h
from topics.catalogue import ACKS, DEADLETTER, REJECTED, SENT
from vaxflow.dev.samples import add_extended_attributes, corrupt, make_event
from vaxflow.ops.lag import group_lag
from workers.base.settings import GatewaySettings, Settings
from workers.base.topic_reader import read_to_end

CHUNK = 500
# Of the COVID and FLU events from senders NHS England takes them from, those sent with extended
# attributes (decision 0020), so the main job shows that family end to end too.
EXTENDED_SHARE = 0.3


@dataclass
class Submitted:
    origins: set[tuple[int, int]] = field(default_factory=set)
    refused: Counter[str] = field(default_factory=Counter)
    generated: int = 0


async def submit(settings: GatewaySettings, n: int, invalid_fraction: float, seed: int) -> Submitted:
    """POST the events as NDJSON, like a source system would; lines the gateway refuses (400) are
    counted by rule and the rest of the chunk is sent again without them."""
    rng = random.Random(seed)
    attributes_rng = random.Random(seed + 1)  # its own stream: the rest of the load is as before
    out = Submitted(generated=n)
    url = f"http://127.0.0.1:{settings.gateway_port}/v1/events"
    token = settings.gateway_dev_token.get_secret_value()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    async with aiohttp.ClientSession() as session:
        for start in range(0, n, CHUNK):
            lines = []
            for _ in range(min(CHUNK, n - start)):
                event = add_extended_attributes(attributes_rng, make_event(rng), share=EXTENDED_SHARE)
                if rng.random() < invalid_fraction:
                    event = corrupt(rng, event)
                lines.append(orjson.dumps(event))
            while lines:
                async with session.post(url, data=b"\n".join(lines), headers=headers) as resp:
                    body = await resp.json()
                    if resp.status == 429:  # this token's fair share (decision 0019): wait as told
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    if resp.status == 202:
                        out.origins.update((e["partition"], e["offset"]) for e in body["events"])
                        break
                    if resp.status != 400:
                        raise RuntimeError(f"gateway answered {resp.status}: {body.get('message')}")
                    bad = {item["line"] for item in body["lines"]}
                    for item in body["lines"]:
                        out.refused[item["rule"]] += 1
                    lines = [line for i, line in enumerate(lines, 1) if i not in bad]
    return out


async def outcome(settings: Settings, origins: set[tuple[int, int]]) -> dict[str, Any]:
    """Where each of our events ended, read from the topics themselves."""
    receipts = [
        msgspec.json.decode(r.value, type=SentReceipt)
        for r in await read_to_end(settings, settings.topic(SENT.name))
        if r.value
    ]
    ours = [  # vaccination files: an extended-attribute file repeats its vaccination file's origins
        rc for rc in receipts
        if not is_extended_file_name(rc.file_name) and any(tuple(o) in origins for o in rc.origins)
    ]
    in_files = Counter(tuple(o) for rc in ours for o in rc.origins if tuple(o) in origins)
    extended = [
        rc for rc in receipts if is_extended_file_name(rc.file_name) and any(tuple(o) in origins for o in rc.origins)
    ]
    rejected_by: Counter[str] = Counter()
    rejected: set[tuple[int, int]] = set()
    for rec in await read_to_end(settings, settings.topic(REJECTED.name)):
        origin_bytes = h.header(rec.headers, h.ORIGIN)
        if origin_bytes and decode_origin(origin_bytes) in origins:
            rejected.add(decode_origin(origin_bytes))
            for reason in orjson.loads(h.header(rec.headers, h.DLQ_REASONS) or b"[]"):
                rejected_by[reason["rule"]] += 1
    dead_files = [
        msgspec.json.decode(r.value, type=UploadFailure)
        for r in await read_to_end(settings, settings.topic(DEADLETTER.name))
        if r.value
    ]
    dead = {
        tuple(o) for f in dead_files if not is_extended_file_name(f.file.file_name)
        for o in f.file.origins if tuple(o) in origins
    }  # fmt: skip
    names = {rc.file_name for rc in ours}
    acks = [
        msgspec.json.decode(r.value, type=AckOutcome)
        for r in await read_to_end(settings, settings.topic(ACKS.name))
        if r.value
    ]
    infacks = {a.file_name: a.accepted for a in acks if a.kind == "InfAck" and a.file_name in names}
    extended_names = {rc.file_name for rc in extended}
    # An accepted extended-attribute file gets no acknowledgement: MESH tracking's Delivered, or
    # an InfAck failure, is its outcome (decision 0020).
    extended_outcomes = {
        a.file_name: a.accepted for a in acks if a.kind in ("Delivered", "InfAck") and a.file_name in extended_names
    }
    failed_rows = {
        (a.file_name, row.row) for a in acks if a.kind == "BusAck" and a.file_name in names for row in a.failed_rows
    }
    return {
        "in_files": in_files,
        "rejected": rejected,
        "rejected_by": rejected_by,
        "dead_lettered": dead,
        "files": ours,
        "infacks": infacks,
        "busack_failed_rows": len(failed_rows),
        "extended_files": extended,
        "extended_outcomes": extended_outcomes,
    }


async def settled_outcome(
    settings: Settings, origins: set[tuple[int, int]], timeout: float, *, progress: bool = False
) -> dict[str, Any]:
    """`outcome` once every origin is placed (in a sent file, rejected or dead-lettered) and every
    sent file has its InfAck (an extended-attribute file: Delivered or an InfAck), read again every
    2 s; TimeoutError naming what is missing after `timeout` s. The demo and the end-to-end test
    wait for the same thing; with `progress`, each wait is reported on stderr."""
    deadline = time.monotonic() + timeout
    while True:
        result = await outcome(settings, origins)
        placed = set(result["in_files"]) | result["rejected"] | result["dead_lettered"]
        unacked = sum(rc.file_name not in result["infacks"] for rc in result["files"])
        unacked += sum(rc.file_name not in result["extended_outcomes"] for rc in result["extended_files"])
        if placed >= origins and not unacked:
            return result
        if progress:
            print(
                f"waiting: {len(placed & origins)}/{len(origins)} events placed, "
                f"{len(result['files']) - unacked}/{len(result['files'])} files acknowledged",
                file=sys.stderr,
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"after {timeout:.0f}s: {len(origins - placed)} events not yet placed, {unacked} files not acknowledged"
            )
        await asyncio.sleep(2)


async def run_demo(
    settings: Settings, events: int, invalid_fraction: float, timeout: float, seed: int
) -> dict[str, Any]:
    started = time.monotonic()
    submitted = await submit(settings, events, invalid_fraction, seed)
    submit_seconds = time.monotonic() - started
    origins = submitted.origins
    result = await settled_outcome(settings, origins, timeout, progress=True)
    lag = await group_lag(settings)
    duplicates = sum(1 for n in result["in_files"].values() if n > 1)
    per_recipient = Counter(rc.mailbox_to for rc in result["files"])
    return {
        "events_generated": submitted.generated,
        "refused_by_gateway_400": sum(submitted.refused.values()),
        "refused_by_rule": dict(submitted.refused.most_common()),
        "accepted_by_gateway": len(origins),
        "rejected_by_validator": len(result["rejected"]),
        "rejected_by_reason": dict(result["rejected_by"].most_common()),
        "in_files_sent": len(result["in_files"]),
        "dead_lettered_in_files": len(result["dead_lettered"]),
        "origins_in_more_than_one_file": duplicates,
        "files_sent_per_recipient": dict(per_recipient),
        "files_sent": len(result["files"]),
        "files_acknowledged": len(result["infacks"]),
        "files_infack_success": sum(result["infacks"].values()),
        "rows_acknowledged": sum(rc.rows for rc in result["files"] if rc.file_name in result["infacks"]),
        "busack_failed_rows": result["busack_failed_rows"],
        "extended_attribute_files_sent": len(result["extended_files"]),
        "extended_attribute_rows_sent": sum(rc.rows for rc in result["extended_files"]),
        "extended_attribute_files_delivered": sum(result["extended_outcomes"].values()),
        "lag": {f"{p.group}/{p.partition}": p.lag for p in lag},
        "total_lag": sum(p.lag for p in lag),
        # Lag counts offsets as Kafka's own tools do: a drained partition of a transactional topic
        # still shows the commit markers after its last record (docs/decisions/0008). Whether any
        # record is really still waiting is this:
        "partitions_with_records_waiting": sum(p.pending for p in lag),
        "seconds_to_submit": round(submit_seconds, 1),
        "seconds_total": round(time.monotonic() - started, 1),
    }
