"""`vaxflow redrive` after a permissions fix: the rejected events go into files exactly once, keep
their origin, and a second redrive submits nothing."""

from __future__ import annotations

import json
import random
from collections import Counter
from functools import partial
from importlib import resources
from pathlib import Path

import msgspec
import orjson
import pytest
from ops_support import caught_up, ops_settings
from pipeline_support import read_all
from support.topics import ensure
from support.workers import running, wait_for

from schemas.pipeline import ReadyFile, decode_origin
from topics import headers as h
from topics.catalogue import RAW, READY, REJECTED
from vaxflow.dev.loadgen import produce
from vaxflow.dev.samples import make_event
from vaxflow.ops.ledger import read_ledger
from vaxflow.ops.redrive import RedriveError, RedriveFilter, redrive
from workers.base.settings import Settings
from workers.batcher import worker as batcher
from workers.validator import worker as validator

pytestmark = pytest.mark.integration

_READY = msgspec.json.Decoder(ReadyFile)
SENDER, VACCINE = "DPSFULL", "FLU"


def write_permissions(path: Path, *, without: tuple[str, str] | None) -> None:
    """The production permissions, optionally with one sender's grant for one vaccine type removed."""
    entries = json.loads((resources.files("schemas") / "data" / "permissions_prod.json").read_bytes())
    if without is not None:
        ods, vaccine = without
        for entry in entries:
            if ods in entry["ods_codes"]:
                entry["permissions"] = [g for g in entry["permissions"] if not g.upper().startswith(vaccine + ".")]
    path.write_text(json.dumps(entries))


async def in_files(settings: Settings) -> Counter[tuple[int, int]]:
    files = [_READY.decode(r.value or b"") for r in await read_all(settings, settings.topic(READY.name))]
    return Counter((o[0], o[1]) for f in files for o in f.origins)


async def all_in_files(settings: Settings, wanted: set[tuple[int, int]]) -> bool:
    return wanted <= set(await in_files(settings))


async def test_redrive_rejected_after_permissions_fix(kafka_settings: Settings, tmp_path: Path) -> None:
    permissions = tmp_path / "permissions.json"
    write_permissions(permissions, without=(SENDER, VACCINE))
    settings = ops_settings(kafka_settings, tmp_path, permissions_file=permissions)
    await ensure(settings)
    rng = random.Random(31)
    events = [make_event(rng, VACCINE, SENDER) for _ in range(40)] + [make_event(rng) for _ in range(160)]
    rng.shuffle(events)
    payloads = [orjson.dumps(e) for e in events]
    keys = [f"{e['vaccine_type']}|{e['sender_ods']}".encode() for e in events]
    coords = await produce(settings, payloads, keys)
    blocked = {
        c for c, e in zip(coords, events, strict=True) if (e["sender_ods"], e["vaccine_type"]) == (SENDER, VACCINE)
    }
    others = set(coords) - blocked
    raw, vgroup = settings.topic(RAW.name), settings.group(settings.validator_group)

    async with running(validator.run, settings), running(batcher.run, settings):
        await wait_for(partial(all_in_files, settings, others), 120, "the permitted events in files")
    rejected = await read_all(settings, settings.topic(REJECTED.name))
    assert {decode_origin(h.header(r.headers, h.ORIGIN) or b"") for r in rejected} == blocked

    # dry run with a filter: counts, writes nothing
    with pytest.raises(RedriveError):
        RedriveFilter.parse(["colour=blue"])
    dry = await redrive(settings, "rejected", RedriveFilter.parse([f"sender={SENDER}", "reason=permission"]))
    print(f"\n[redrive] dry run: {dry.to_json()}")
    assert dry.matched == len(blocked) == len(dry.candidates)
    assert dry.submitted == 0
    assert await read_ledger(settings) == {}

    # the fix: the sender gets its permission back; then redrive for real
    write_permissions(permissions, without=None)
    report = await redrive(settings, "rejected", RedriveFilter.parse([f"sender={SENDER}"]), execute=True)
    assert report.submitted == len(blocked)
    raw_records = await read_all(settings, raw)
    redriven = [r for r in raw_records if h.header(r.headers, h.REDRIVE_COUNT)]
    assert len(redriven) == len(blocked)
    assert {decode_origin(h.header(r.headers, h.ORIGIN) or b"") for r in redriven} == blocked
    assert {h.header(r.headers, h.REDRIVE_COUNT) for r in redriven} == {b"1"}

    async with running(validator.run, settings), running(batcher.run, settings):
        await wait_for(partial(all_in_files, settings, set(coords)), 120, "the redriven events in files")
        await wait_for(partial(caught_up, settings, vgroup, raw), 60, "validator caught up")
        # a second redrive finds everything recorded in the ledger and submits nothing
        again = await redrive(settings, "rejected", RedriveFilter.parse([f"sender={SENDER}"]), execute=True)
        assert again.submitted == 0
        assert again.already_redriven == len(blocked)
        await wait_for(partial(caught_up, settings, vgroup, raw), 60, "validator caught up again")

    counts = await in_files(settings)
    assert set(counts) == set(coords), "every event, redriven or not, is in a file"
    assert set(counts.values()) == {1}, "an event is in more than one file"
    assert len(await read_all(settings, settings.topic(REJECTED.name))) == len(blocked), "nothing new was rejected"
    assert len(await read_ledger(settings)) == len(blocked)
