"""Extended attributes end to end (issue 18, decision 0020), against the real broker and sandbox.

COVID and FLU events of one sender (YGA, so both keys share the extended-attribute name space),
COVID events of another (YGMYW) and RSV events without attributes go raw -> validator -> batcher ->
uploader -> MESH -> simulated NHS England, with the ack reader running; small caps cut each
window into parts, each with its own extended-attribute file. Events NHS England would refuse
attributes for (a FLU-only sender, an RSV vaccination, a blank ATTRIBUTE_ID) are refused with
their rule. Judged from what MESH delivered, row by row: every accepted event's attributes are
rows of exactly one extended-attribute file, beside the vaccination file holding the event, named
by the spec (every name unique, none for an event without attributes), in the Immunisation
mailbox even for FLU; and the ack reader links a Delivered outcome to every extended-attribute
file, whose origins are the events that carried the attributes. Then `vaxflow resend
--with-extended` sends a FLU pair again: MESH receives the same bytes under two new names of one
free slot of the window, and nothing else.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from fixtures_kafka import KafkaHandle
from fixtures_mesh import MeshSandboxHandle
from mesh_pipeline_support import empty_recipient_inboxes, pipeline_settings, reading_back
from support.topics import ensure
from support.workers import running_all

from schemas.batchkey import encode_key
from schemas.columns import COLUMNS
from schemas.delimited import read_table
from schemas.extended import extended_name_second, is_extended_file_name, parse_extended_file_name, read_extended
from schemas.filenames import parse_batch_file_name
from schemas.permissions import default_permissions
from schemas.pipeline import AckOutcome, SentReceipt
from topics import headers as h
from topics.catalogue import ACKS, REJECTED, SENT
from vaxflow.dev.demo import settled_outcome
from vaxflow.dev.loadgen import produce
from vaxflow.dev.nhs_sim.worker import FORWARDED
from vaxflow.dev.samples import make_event
from vaxflow.ops.replay import execute_replay, plan_replay
from vaxflow.ops.resend import ResendError, ResendPlan, resend, slot_names
from workers.ackreader import worker as ackreader
from workers.base.settings import Settings
from workers.base.topic_reader import read_to_end
from workers.batcher import worker as batcher
from workers.uploader import worker as uploader
from workers.validator import worker as validator

pytestmark = pytest.mark.integration

IMMUNISATION = "X26OT303"
_UID = COLUMNS.index("UNIQUE_ID")
_URI = COLUMNS.index("UNIQUE_ID_URI")


def attributes(rng: random.Random, event: dict[str, Any]) -> list[dict[str, str]]:
    """0 to 3 attributes; a DELETE's carry their own RECORDED_DATE (its record need not have one)."""
    today = datetime.now(UTC).strftime("%Y%m%d")
    out = []
    for n in range(rng.choice([0, 1, 1, 2, 3])):
        attribute = {"ATTRIBUTE_ID": f"13246810000001{n:02d}", "ATTRIBUTE_DISPLAYED_TEXT": f'Group "{n}" | at risk',
                     "ATTRIBUTE_VALUE": rng.choice(["Y", "N", "clinical risk"])}  # fmt: skip
        if event["record"].get("ACTION_FLAG", "").upper() == "DELETE" or rng.random() < 0.3:
            attribute["RECORDED_DATE"] = today
        out.append(attribute)
    return out


def build_load(rng: random.Random) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The events, and the rule each event meant to be refused must be refused with."""
    permissions = default_permissions()
    events: list[dict[str, Any]] = []
    refused: dict[int, str] = {}
    for vaccine_type, ods, count in (("COVID", "YGA", 150), ("FLU", "YGA", 150), ("COVID", "YGMYW", 60)):
        for _ in range(count):
            event = make_event(rng, vaccine_type, ods, permissions=permissions)
            attrs = attributes(rng, event)
            if attrs:
                event["extended_attributes"] = attrs
            events.append(event)
    events += [make_event(rng, "RSV", "X8E5B", permissions=permissions) for _ in range(40)]
    bad = [
        (make_event(rng, "FLU", "V0V8L", permissions=permissions), [{"ATTRIBUTE_ID": "1"}],
         "extended_attributes.permission"),
        (make_event(rng, "RSV", "YGA", permissions=permissions), [{"ATTRIBUTE_ID": "1"}],
         "extended_attributes.vaccine_type"),
        (make_event(rng, "COVID", "YGA", permissions=permissions), [{"ATTRIBUTE_ID": " "}],
         "extended_attributes.ATTRIBUTE_ID.mandatory"),
    ]  # fmt: skip
    for event, attrs, rule in bad * 5:
        refused[len(events)] = rule
        events.append({**event, "record": dict(event["record"]), "extended_attributes": attrs})
    for i, event in enumerate(events):  # distinct identities: a copy would be a repeat, not a test
        event["record"]["UNIQUE_ID"] = f"EA-{i:05d}"
    return events, refused


async def acks_of(settings: Any) -> list[AckOutcome]:
    return [
        msgspec.json.decode(r.value, type=AckOutcome)
        for r in await read_to_end(settings, settings.topic(ACKS.name))
        if r.value
    ]


async def test_extended_attributes_travel_beside_their_vaccinations_to_nhs_england(
    kafka: KafkaHandle, namespace: str, mesh_sandbox: MeshSandboxHandle, tmp_path: Path
) -> None:
    settings = pipeline_settings(
        kafka, namespace, mesh_sandbox, window_seconds=10, grace_seconds=1, max_rows_per_file=40,
        archive_dir=tmp_path / "archive", dev_home=tmp_path, nhs_sim_files_dir=tmp_path / "received",
    )  # fmt: skip
    await ensure(settings)
    await empty_recipient_inboxes(mesh_sandbox)
    events, refused = build_load(random.Random(18))
    payloads = [orjson.dumps(e) for e in events]
    keys = [encode_key(e["vaccine_type"], e["sender_ods"]) for e in events]
    async with (
        reading_back(settings) as sim,
        running_all(settings, validator.run, batcher.run, uploader.run, ackreader.run),
    ):
        origins = await produce(settings, payloads, keys)
        by_origin = dict(zip(origins, range(len(events)), strict=True))
        result = await settled_outcome(settings, set(origins), 300)
        receipts = [
            msgspec.json.decode(r.value, type=SentReceipt)
            for r in await read_to_end(settings, settings.topic(SENT.name))
            if r.value
        ]
        extended_receipts = {rc.file_name: rc for rc in receipts if is_extended_file_name(rc.file_name)}
        assert extended_receipts, "no extended-attribute file was sent"
        for _ in range(120):  # every extended-attribute file delivered and its outcome published
            delivered = {a.file_name: a for a in await acks_of(settings) if a.kind == "Delivered"}
            received = {r.file_name for r in sim if r.outcome == FORWARDED}
            if set(extended_receipts) <= set(delivered) and set(extended_receipts) <= received:
                break
            await asyncio.sleep(1)
        else:
            pytest.fail(f"{len(set(extended_receipts) - set(delivered))} extended-attribute files without outcome")

    # --- refused where NHS England would refuse the attributes, with the rule -----------------------
    rejected_rules: dict[int, list[str]] = {}
    for rec in await read_to_end(settings, settings.topic(REJECTED.name)):
        origin = h.header(rec.headers, h.ORIGIN)
        if origin is not None:
            partition, _, offset = origin.decode().partition(":")
            index = by_origin[(int(partition), int(offset))]
            rejected_rules[index] = [r["rule"] for r in orjson.loads(h.header(rec.headers, h.DLQ_REASONS) or b"[]")]
    assert rejected_rules == {i: [rule] for i, rule in refused.items()}

    # --- what MESH delivered, row by row ---------------------------------------------------------------
    vaccination_rows: dict[str, tuple[str, str]] = {}  # UNIQUE_ID -> (file key, mailbox)
    extended_rows: list[tuple[str, str, str, str, str]] = []  # (uid, attribute id, value, file, mailbox)
    names = Counter()
    for key, data in sim.downloaded.items():
        mailbox, _, file_name = key.split("/", 2)
        names[file_name] += 1
        if is_extended_file_name(file_name):
            parse_extended_file_name(file_name, ods_codes=default_permissions().grants)  # the receiver's check
            for row in read_extended(data):
                assert row.attribute is not None, f"{file_name} row {row.number}: {row.reasons}"
                a = row.attribute
                extended_rows.append((a.VACCINATION_UNIQUE_ID, a.ATTRIBUTE_ID, a.ATTRIBUTE_VALUE, file_name, mailbox))
        else:
            for row in read_table(data, COLUMNS).rows:
                assert row.fields[_UID] not in vaccination_rows
                vaccination_rows[row.fields[_UID]] = (file_name, mailbox)
    assert max(names.values()) == 1, "a file name reached NHS England twice"

    expected_vaccinations = {e["record"]["UNIQUE_ID"] for i, e in enumerate(events) if i not in refused}
    assert set(vaccination_rows) == expected_vaccinations
    expected_attributes = Counter(
        (e["record"]["UNIQUE_ID"], a["ATTRIBUTE_ID"], a["ATTRIBUTE_VALUE"])
        for i, e in enumerate(events) if i not in refused for a in e.get("extended_attributes", [])
    )  # fmt: skip
    got_attributes = Counter((uid, attribute, value) for uid, attribute, value, _, _ in extended_rows)
    assert got_attributes == expected_attributes, "an attribute is missing, doubled or invented"
    assert all(mailbox == IMMUNISATION for *_, mailbox in extended_rows), "NHS England files EA as COVID"

    # each extended-attribute file sits beside one vaccination file holding all its events (same part)
    partner: dict[str, set[str]] = defaultdict(set)
    for uid, _, _, file_name, _ in extended_rows:
        partner[file_name].add(vaccination_rows[uid][0])
    assert all(len(files) == 1 for files in partner.values()), partner
    flu_partners = sum(next(iter(files)).upper().startswith("FLU_") for files in partner.values())
    covid_partners = len(partner) - flu_partners
    assert flu_partners  # both keys of YGA wrote extended-attribute files
    assert covid_partners

    # --- outcomes linked back: every EA file's Delivered outcome, its origins the events that sent it --
    for name, receipt in extended_receipts.items():
        outcome = delivered[name]
        assert outcome.accepted
        assert outcome.total_rows == receipt.rows
        carried = {by_origin[(p, o)] for p, o in receipt.origins}
        assert all(events[i].get("extended_attributes") for i in carried)
        assert receipt.rows == sum(len(events[i]["extended_attributes"]) for i in carried)
    assert all(result["infacks"].values())  # and every vaccination file was accepted as before
    print(
        f"\n[extended] {len(expected_vaccinations)} vaccinations in {len(set(f for f, _ in vaccination_rows.values()))}"
        f" files; {sum(expected_attributes.values())} attributes in {len(partner)} extended-attribute files"
        f" ({covid_partners} COVID, {flu_partners} FLU); {len(refused)} refused with their rule"
    )

    # --- NHS England asks for a FLU file again: re-sent with its extended-attribute file ---------------
    downloaded = {key.split("/", 2)[2]: data for key, data in sim.downloaded.items()}
    # from the FLU window with the fewest parts: a 10 s window has five slots (attribute names take
    # every other second), and the re-sends need free ones
    flu = [(e, v) for e, (v,) in partner.items() if v.startswith("FLU_")]
    parts = Counter(window_of(v) for _, v in flu)
    ea_name, vaccination_name = min(flu, key=lambda pair: (parts[window_of(pair[1])], pair))
    await resend_pair(settings, ea_name, vaccination_name, downloaded)
    await replay_uploader_with_resend(settings, partner, downloaded)


def window_of(vaccination_name: str) -> int:
    """The 10 s window a vaccination file's name falls in (names are window start + part)."""
    return int(parse_batch_file_name(vaccination_name).instant.timestamp()) // 10


async def resend_pair(settings: Settings, ea_name: str, vaccination_name: str, before: dict[str, bytes]) -> None:
    """Re-send a vaccination file and the attribute file beside it; judged from what MESH received."""
    async with reading_back(settings) as sim, running_all(settings, uploader.run):
        alone = await resend(settings, vaccination_name, execute=False)  # the attribute file is named, not sent
        assert alone.found_in == "ready topic"
        assert (alone.extended, alone.extended_sent) == (None, ea_name)
        plan = await resend(settings, vaccination_name, with_extended=True)
        assert plan.extended is not None
        new = {plan.new_file.file_name: vaccination_name, plan.extended.file_name: ea_name}
        for _ in range(60):
            received = {key.split("/", 2)[2]: data for key, data in sim.downloaded.items()}
            if set(new) <= set(received):
                break
            await asyncio.sleep(1)
        else:
            pytest.fail(f"the re-sent files never reached MESH: {sorted(set(new) - set(received))}")
        try:  # an attribute file alone: the next free slot down, if the window has one
            again: ResendPlan | str = await resend(settings, ea_name, execute=False)
        except ResendError as exc:
            again = str(exc)
        rsv = next(n for n in before if n.startswith("RSV_"))
        with pytest.raises(ResendError, match="no extended-attribute file was sent beside"):
            await resend(settings, rsv, with_extended=True, execute=False)
        await asyncio.sleep(3)  # anything else would have arrived by now
        received = {key.split("/", 2)[2]: data for key, data in sim.downloaded.items()}
    assert set(received) == set(new), "MESH received something besides the re-sent pair"
    assert all(received[name] == before[original] for name, original in new.items()), "re-sent bytes differ"
    assert not set(new) & set(before), "a re-sent name had been used"
    # one slot names both: the vaccination file at window start + slot, its attributes at the FLU second
    start = int(datetime.fromisoformat(plan.new_file.window_start).timestamp())
    assert parse_batch_file_name(plan.new_file.file_name).instant.timestamp() == start + plan.new_file.part
    ea_second = parse_extended_file_name(plan.extended.file_name).instant.timestamp()
    assert ea_second == extended_name_second("FLU", start, plan.new_file.part)
    assert plan.extended.part == plan.new_file.part > plan.original.part
    # judged from the names MESH received: the highest slot of the window none of whose names it saw
    used = set(before) | set(received)
    free = [s for s in range(plan.new_file.part) if not used & set(filter(None, slot_names(plan.original, s)))]
    if free:
        assert isinstance(again, ResendPlan), again
        assert again.new_file.part == max(free)
    else:
        assert again == f"every name of the window of {ea_name} is in use"
    sent = {
        r.key.decode(): msgspec.json.decode(r.value, type=SentReceipt)
        for r in await read_to_end(settings, settings.topic(SENT.name))
        if r.key and r.value
    }
    assert {name: sent[name].resend_of for name in new} == new
    print(f"[resend] {vaccination_name} -> {plan.new_file.file_name}; {ea_name} -> {plan.extended.file_name}")


async def replay_uploader_with_resend(
    settings: Settings, partner: dict[str, set[str]], before: dict[str, bytes]
) -> None:
    """`vaxflow replay --group uploader --to-offset 0 --resend`: every sent file is re-sent under a
    new name where its window has a free slot (10 s windows are small: the rest are named in the
    plan's notes), and an attribute file re-sent with its vaccination file shares its slot."""
    receipts = {
        r.key.decode(): msgspec.json.decode(r.value, type=SentReceipt)
        for r in await read_to_end(settings, settings.topic(SENT.name))
        if r.key and r.value
    }
    plan = await plan_replay(settings, "uploader", to_offset=0, resend=True)
    assert sum(len(p.resend_files) for p in plan.partitions) == len(receipts), "the plan missed sent files"
    await execute_replay(settings, plan)
    unsent = [n for n in plan.notes if "not re-sent" in n]
    assert all("every name of the window" in n for n in unsent), unsent
    assert len(plan.resent) + len(unsent) == len(receipts)
    async with reading_back(settings) as sim, running_all(settings, uploader.run):
        for _ in range(90):
            received = {key.split("/", 2)[2]: data for key, data in sim.downloaded.items()}
            if set(plan.resent) <= set(received):
                break
            await asyncio.sleep(1)
        else:
            pytest.fail(f"{len(set(plan.resent) - set(received))} re-sent files never reached MESH")
    assert set(received) == set(plan.resent)
    sent = {
        r.key.decode(): msgspec.json.decode(r.value, type=SentReceipt)
        for r in await read_to_end(settings, settings.topic(SENT.name))
        if r.key and r.value
    }
    copy_of = {name: str(r.resend_of) for name, r in sent.items() if r.resend_of}
    assert set(received) <= set(copy_of), "MESH received a file that is no re-send"
    original = {name: copy_of[name] for name in received}
    while any(o in copy_of for o in original.values()):  # a re-send of resend_pair's re-sends
        original = {name: copy_of.get(o, o) for name, o in original.items()}
    assert all(received[name] == before[original[name]] for name in received), "re-sent bytes differ"
    new_of = {copy_of[name]: name for name in received}
    pairs = 0
    for ea, (vaccination,) in partner.items():
        if ea in new_of and vaccination in new_of:  # both re-sent by this replay: one slot
            vaccination_second = int(parse_batch_file_name(new_of[vaccination]).instant.timestamp())
            start = vaccination_second // 10 * 10
            ea_second = parse_extended_file_name(new_of[ea]).instant.timestamp()
            vaccine_type = vaccination.split("_", 1)[0]
            assert ea_second == extended_name_second(vaccine_type, start, vaccination_second - start)
            pairs += 1
    print(f"[replay --resend] {len(plan.resent)} files re-sent ({pairs} attribute files with their pair),"
          f" {len(unsent)} without a free name")  # fmt: skip
