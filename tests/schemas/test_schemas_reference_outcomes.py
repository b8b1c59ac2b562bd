"""Every verified outcome of NHS England's own validator, replayed against ours.

Each line of data/reference_outcomes.txt is one mutation of the valid RSV sample row and what the
reference implementation said. A FAIL must be rejected by us, with reasons only on the mutated
columns. An OK must be accepted, unless it is listed in DELIBERATELY_STRICTER with the reason.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from schemas.columns import COLUMNS
from schemas.event import ValidEvent
from schemas.fields import COLUMN_RULES, Mandate
from schemas.permissions import default_permissions
from schemas.record import Record
from schemas.validate import validate_event, validate_record

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # the day the outcomes were recorded
PERMISSIONS = default_permissions()

# Outcome lines the reference accepts and we refuse on purpose: {description: why}. Empty today,
# because every lenient form it accepts is one we can canonicalise (ADR 0003).
DELIBERATELY_STRICTER: dict[str, str] = {}

ALIASES = {
    "GENDER": "PERSON_GENDER_CODE",
    "SITE_OF_VACC_CODE": "SITE_OF_VACCINATION_CODE",
    "ROUTE_CODE": "ROUTE_OF_VACCINATION_CODE",
}
OPTIONAL = [r.name for r in COLUMN_RULES if r.mandate is Mandate.OPTIONAL]

Row = dict[str, str]
NAMED: dict[str, Callable[[Row], Row]] = {
    "baseline": lambda row: row,
    "PROC code+term empty": lambda row: {
        **row, "VACCINATION_PROCEDURE_CODE": "", "VACCINATION_PROCEDURE_TERM": ""
    },
    "PROC term empty": lambda row: {**row, "VACCINATION_PROCEDURE_TERM": ""},
    "product code+term empty": lambda row: {**row, "VACCINE_PRODUCT_CODE": "", "VACCINE_PRODUCT_TERM": ""},
    "PERSON_SURNAME 36 chars": lambda row: {**row, "PERSON_SURNAME": "A" * 36},
    "PERSON_SURNAME 35 chars": lambda row: {**row, "PERSON_SURNAME": "A" * 35},
    "PERSON_FORENAME 181 chars": lambda row: {**row, "PERSON_FORENAME": "B" * 181},
    "PERF prof names empty": lambda row: {
        **row, "PERFORMING_PROFESSIONAL_FORENAME": "", "PERFORMING_PROFESSIONAL_SURNAME": ""
    },
    "PERF forename only": lambda row: {**row, "PERFORMING_PROFESSIONAL_SURNAME": ""},
    "LOCATION urn-school": lambda row: {
        **row, "LOCATION_CODE": "123456", "LOCATION_CODE_TYPE_URI": "https://fhir.hl7.org.uk/Id/urn-school-number"
    },
    "DOSE_UNIT_CODE='' unit term present": lambda row: {**row, "DOSE_UNIT_CODE": ""},
    "DELETE minimal": lambda row: {
        **dict.fromkeys(COLUMNS, ""),
        "ACTION_FLAG": "DELETE",
        "UNIQUE_ID": row["UNIQUE_ID"],
        "UNIQUE_ID_URI": row["UNIQUE_ID_URI"],
    },
    "all optional empty": lambda row: {**row, **dict.fromkeys(OPTIONAL, "")},
}  # fmt: skip

_ASSIGN = re.compile(r"(?P<field>[A-Z_]+)=(?:'(?P<quoted>[^']*)'|(?P<bare>\S*))")


def baseline() -> Row:
    with (DATA / "sample_valid_rsv.csv").open(newline="", encoding="utf-8") as handle:
        return dict(next(csv.DictReader(handle, delimiter="|")))


def outcome_lines() -> list[tuple[str, str]]:
    """(description, OK|FAIL) from the fixed-width block: description, then the outcome word."""
    text = (DATA / "reference_outcomes.txt").read_text(encoding="utf-8")
    block = text.split("## Row mutations", 1)[1].split("```", 2)[1]
    lines = []
    for line in block.strip("\n").splitlines():
        description, verdict = line[:46].rstrip(), line[46:]
        assert line[45] == " ", f"unexpected layout: {line!r}"
        assert verdict[:1] in ("O", "F"), f"unexpected layout: {line!r}"
        lines.append((description, "OK" if verdict.startswith("OK") else "FAIL"))
    return lines


def mutate(description: str) -> tuple[Row, set[str]]:
    """The mutated row and the columns the mutation touched."""
    row = baseline()
    if description in NAMED:
        mutated = NAMED[description](row)
        return mutated, {k for k in COLUMNS if mutated.get(k) != row.get(k)}
    m = _ASSIGN.fullmatch(description)
    assert m, f"no mutation known for {description!r}: add it to NAMED"
    field = ALIASES.get(m["field"], m["field"])
    assert field in COLUMNS, field
    value = m["quoted"] if m["quoted"] is not None else m["bare"]
    return {**row, field: value}, {field}


CASES = outcome_lines()


def test_every_outcome_line_was_parsed() -> None:
    assert len(CASES) >= 100
    assert {verdict for _, verdict in CASES} == {"OK", "FAIL"}
    assert set(DELIBERATELY_STRICTER) <= {d for d, v in CASES if v == "OK"}


@pytest.mark.parametrize(("description", "verdict"), CASES, ids=[d for d, _ in CASES])
def test_record_matches_reference(description: str, verdict: str) -> None:
    row, touched = mutate(description)
    result = validate_record("RSV", "X8E5B", row, permissions=PERMISSIONS, now=NOW)
    if verdict == "FAIL" or description in DELIBERATELY_STRICTER:
        assert isinstance(result, list), f"accepted what the reference rejects: {description}"
        assert result, "a rejection carries at least one reason"
        assert {r.field for r in result} <= touched, result
    else:
        assert isinstance(result, Record), result
        again = validate_record("RSV", "X8E5B", msgspec.structs.asdict(result), permissions=PERMISSIONS, now=NOW)
        assert again == result, "canonical output must validate to itself"


@pytest.mark.parametrize(("description", "verdict"), CASES, ids=[d for d, _ in CASES])
def test_event_matches_reference(description: str, verdict: str) -> None:
    row, _ = mutate(description)
    raw = msgspec.json.encode(
        {"vaccine_type": "RSV", "sender_ods": "X8E5B", "source_system": "reference", "record": row}
    )
    result = validate_event(raw, permissions=PERMISSIONS, now=NOW)
    accepted = isinstance(result, ValidEvent)
    assert accepted == (verdict == "OK" and description not in DELIBERATELY_STRICTER), result
    if isinstance(result, ValidEvent):
        assert result.record == validate_record("RSV", "X8E5B", row, permissions=PERMISSIONS, now=NOW)
