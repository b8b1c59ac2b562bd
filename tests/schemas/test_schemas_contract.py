"""The checked-in contract documents are exactly what the code generates."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from schemas.contract import BEGIN, END, render_rules, render_schema, schema, splice_rules
from schemas.event import ValidEvent
from schemas.fields import all_rule_ids
from schemas.permissions import default_permissions
from schemas.validate import validate_event

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_checked_in_schema_matches_the_code() -> None:
    assert (DOCS / "event-contract.schema.json").read_text(encoding="utf-8") == render_schema(), (
        "run: python -m schemas.contract (and bump EVENT_SCHEMA_VERSION if the contract changed)"
    )


def test_checked_in_rule_table_matches_the_code() -> None:
    doc = (DOCS / "event-contract.md").read_text(encoding="utf-8")
    assert splice_rules(doc) == doc, "run: python -m schemas.contract"
    assert doc.count(BEGIN) == doc.count(END) == 1


def test_schema_forbids_unknown_keys_everywhere() -> None:
    defs = schema()["$defs"]
    assert defs["RawEvent"]["additionalProperties"] is False
    assert defs["Record"]["additionalProperties"] is False
    assert len(defs["Record"]["properties"]) == 34
    assert set(defs["RawEvent"]["required"]) == {"vaccine_type", "sender_ods", "source_system", "record"}


def test_documented_example_is_valid() -> None:
    doc = (DOCS / "event-contract.md").read_text(encoding="utf-8")
    example = re.search(r"```json\n(.*?)```", doc, re.S)
    assert example
    raw = example.group(1).encode()
    json.loads(raw)
    result = validate_event(raw, permissions=default_permissions(), now=datetime(2026, 11, 25, tzinfo=UTC))
    assert isinstance(result, ValidEvent), result


def test_every_rule_id_is_documented() -> None:
    table = render_rules()
    for rule_id in all_rule_ids():
        _field, suffix = rule_id.split(".", 1)
        assert f"`{suffix}`" in table or f"`{rule_id}`" in table or suffix in ("type", "missing"), rule_id
