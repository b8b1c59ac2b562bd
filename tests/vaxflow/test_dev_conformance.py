"""The differential harness's pure parts: mutations, vaxflow's side, the table. No NHS repo needed."""

from __future__ import annotations

import json
import random
import sys
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.columns import COLUMNS
from schemas.permissions import default_permissions
from vaxflow.dev.conformance import nhs_side
from vaxflow.dev.conformance.__main__ import _safe_example, _scrub, judge_vaxflow, name_cases
from vaxflow.dev.conformance.explain import explain
from vaxflow.dev.conformance.mutations import (
    IDEOGRAPHIC_SPACE,
    NBSP,
    all_mutations,
    clock_mutations,
    column_mutations,
    mutated_records,
)
from vaxflow.dev.conformance.nhs import _read
from vaxflow.dev.conformance.tally import (
    BEGIN_MARKER,
    END_MARKER,
    Case,
    Outcome,
    Tally,
    outcome,
    write_between_markers,
)
from vaxflow.dev.samples import make_event

NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)


def _mutation(column: str, name: str) -> object:
    return next(m for m in column_mutations(column) if m.name == name).mutate


def test_every_column_gets_the_generic_whitespace_and_length_mutations() -> None:
    names_by_column: dict[str, set[str]] = {}
    for m in all_mutations():
        names_by_column.setdefault(m.column, set()).add(m.name)
    assert set(names_by_column) == set(COLUMNS)
    for names in names_by_column.values():
        assert {"empty", "space-only", "leading-space", "trailing-space", "double-space-inside"} <= names
        assert {"nbsp-inside", "ideographic-space-inside", "length-256", "fullwidth-digits"} <= names


@pytest.mark.parametrize(
    ("column", "name", "value", "expected"),
    [
        ("SITE_OF_VACCINATION_CODE", "double-space-inside", "61396006", "6139  6006"),
        ("SITE_OF_VACCINATION_TERM", "double-space-inside", "Left arm", "Left  arm"),
        ("SITE_OF_VACCINATION_TERM", "nbsp-inside", "Left arm", f"Left{NBSP}arm"),
        ("DOSE_UNIT_CODE", "ideographic-space-inside", "2587", f"25{IDEOGRAPHIC_SPACE}87"),
        ("PERSON_DOB", "iso-form", "20240115", "2024-01-15"),
        ("PERSON_DOB", "iso-form", "2024-01-15", None),  # already ISO: no change, skipped
        ("RECORDED_DATE", "year-0999", "20240115", "09990101"),
        ("EXPIRY_DATE", "two-digit-year", "20240115", "240115"),
        ("DOSE_SEQUENCE", "fullwidth-digits", "1", "１"),
        ("DOSE_SEQUENCE", "value '01'", "1", "01"),
        ("DOSE_AMOUNT", "value '1e-1'", "0.5", "1e-1"),
        ("UNIQUE_ID", "length-256", "abc", "abc" + "X" * 253),
        ("UNIQUE_ID", "empty", "", None),
        ("VACCINE_PRODUCT_CODE", "check-digit-flipped", "39114911000001105", "39114911000001106"),
    ],
)
def test_a_mutation_gives_the_value_it_names(column: str, name: str, value: str, expected: str | None) -> None:
    assert _mutation(column, name)(value) == expected  # type: ignore[operator]


def test_mutated_records_change_exactly_one_column_and_skip_no_ops() -> None:
    record = dict.fromkeys(COLUMNS, "")
    record["BATCH_NUMBER"] = "AB12"
    mutations = column_mutations("BATCH_NUMBER")
    produced = list(mutated_records(record, mutations))
    assert {m.name for m, _ in produced} == {m.name for m in mutations} - {"uppercase"}
    for _, new in produced:
        changed = [c for c in COLUMNS if new[c] != record[c]]
        assert changed == ["BATCH_NUMBER"]


def test_mutations_are_deterministic() -> None:
    first = [(m.column, m.name, m.mutate("20240115")) for m in all_mutations()]
    again = [(m.column, m.name, m.mutate("20240115")) for m in all_mutations()]
    assert first == again


@pytest.mark.parametrize(
    ("vaxflow", "nhs", "expected"),
    [
        (True, True, Outcome.AGREE_ACCEPT),
        (False, False, Outcome.AGREE_REJECT),
        (True, False, Outcome.VAXFLOW_ONLY_ACCEPTS),
        (False, True, Outcome.VAXFLOW_ONLY_REJECTS),
    ],
)
def test_outcome_is_the_four_way_split(vaxflow: bool, nhs: bool, expected: Outcome) -> None:
    assert outcome(vaxflow, nhs) is expected


def test_tally_counts_per_source_and_groups_disagreements_by_column_and_mutation() -> None:
    tally = Tally()
    tally.add(Case("generated events", "(event)", "generated", True, True))
    tally.add(Case("mutations", "DOSE_SEQUENCE", "value '01'", False, True, "DOSE_SEQUENCE.format", "", "'01'"))
    tally.add(Case("mutations", "DOSE_SEQUENCE", "value '01'", False, True, "DOSE_SEQUENCE.format", "", "'01'"))
    tally.add(Case("mutations", "PERSON_DOB", "year-0999", True, False, "", "validator: bad date", "year-0999"))
    tally.add(Case("mutations", "PERSON_DOB", "far-future", False, False, "PERSON_DOB.future"))
    rows = {row[0]: row[1:] for row in tally.rows()}
    assert rows["generated events"] == (1, 1, 0, 0, 0)
    assert rows["mutations"] == (4, 0, 1, 1, 2)
    assert rows["all"] == (5, 1, 1, 1, 2)
    assert tally.classes[Outcome.VAXFLOW_ONLY_REJECTS]["DOSE_SEQUENCE", "value '01'"].count == 2
    markdown = tally.markdown()
    for result in Outcome:
        assert result.value in markdown
    assert "| PERSON_DOB | year-0999 | 1 | validator: bad date | year-0999 |" in markdown
    assert "value '01'" in tally.text()


def test_refusals_are_grouped_by_mutation_and_rule_with_an_explanation() -> None:
    tally = Tally()
    for column in ("SITE_CODE", "BATCH_NUMBER"):
        tally.add(Case("m", column, "trailing-space", False, True, f"{column}.whitespace", "", "'x '"))
    tally.add(Case("m", "PERSON_DOB", "iso-unpadded", False, True, "PERSON_DOB.format", "", "iso-unpadded"))
    markdown = tally.markdown(explain)
    assert "| trailing-space | *.whitespace | BATCH_NUMBER, SITE_CODE | 2 | 'x ' | 0003 " in markdown
    assert (
        "| iso-unpadded | PERSON_DOB.format | PERSON_DOB | 1 | iso-unpadded | 0003 Dates in a date column are YYYYMMDD"
        " or zero-padded YYYY-MM-DD |"
        in (markdown)
    )


def test_explanations_point_at_decision_0003_and_flag_the_unexplained() -> None:
    assert explain("DOSE_SEQUENCE.format").startswith("0003 Stricter than the receiver")
    assert explain("UNIQUE_ID.max_length") == "0003 Length caps"
    assert explain("PERSON_DOB.year").startswith("0003 Years before 1000")
    assert explain("RECORDED_DATE.format").startswith("0003 Dates in a date column")
    assert explain("UNIQUE_ID.format") == "NOT EXPLAINED (UNIQUE_ID.format)"


def test_an_empty_disagreement_column_says_none() -> None:
    tally = Tally()
    tally.add(Case("generated events", "(event)", "generated", True, True))
    assert tally.markdown().count("None.") == 2


def test_write_between_markers_replaces_only_the_marked_part(tmp_path: Path) -> None:
    doc = tmp_path / "conformance.md"
    doc.write_text(f"before\n{BEGIN_MARKER}\nold table\n{END_MARKER}\nafter\n", encoding="utf-8")
    write_between_markers(doc, "new table")
    assert doc.read_text(encoding="utf-8") == f"before\n{BEGIN_MARKER}\nnew table\n{END_MARKER}\nafter\n"
    doc.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs exactly one"):
        write_between_markers(doc, "x")


def test_examples_never_show_a_patient_column_value() -> None:
    assert _safe_example("PERSON_SURNAME", "leading-space", " Smith") == "leading-space"
    assert _safe_example("NHS_NUMBER", "value '999 123 4567'", "999 123 4567") == "value '999 123 4567'"
    assert _safe_example("BATCH_NUMBER", "trailing-space", "AB1 ") == "'AB1 '"
    record = {"PERSON_SURNAME": "Okafor", "NHS_NUMBER": "9990000018"}
    assert (
        _scrub("family Okafor too long; 9990000018 bad", record) == "family <PERSON_SURNAME> too long; <NHS_NUMBER> bad"
    )


def test_vaxflow_side_sends_the_canonical_row_for_an_accepted_event_and_the_raw_values_otherwise() -> None:
    permissions = default_permissions()
    event = make_event(random.Random(3), "FLU", permissions=permissions, now=NOW, lenient=0.0)
    event["record"]["DOSE_AMOUNT"] = ".5"
    accepted = judge_vaxflow(event, permissions, NOW)
    assert accepted.accepted
    assert accepted.data is not None
    assert b'"0.5"' in accepted.data  # rewritten, as vaxflow would write it
    assert accepted.data.startswith(b'"NHS_NUMBER"|')
    event["record"]["BATCH_NUMBER"] = " AB12"
    refused = judge_vaxflow(event, permissions, NOW)
    assert not refused.accepted
    assert refused.reasons == "BATCH_NUMBER.whitespace"
    assert refused.data is not None
    assert b'"0.5"' not in refused.data  # the raw values, untouched
    assert b'" AB12"' in refused.data


def test_vaxflow_file_names_pass_vaxflow_own_name_check() -> None:
    cases = name_cases(random.Random(1), default_permissions(), 40)
    assert [ok for label, _, ok in cases if label == "vaxflow name"] == [True] * 40
    assert not any(ok for label, _, ok in cases if label in {"ext .txt", "suffix 02", "unknown ODS", "in a folder"})


def test_nhs_side_lookup_tables_are_built_from_the_repository_config(tmp_path: Path) -> None:
    (tmp_path / "config" / "common").mkdir(parents=True)
    (tmp_path / "config" / "prod").mkdir(parents=True)
    diseases = [{"code": "6142004", "term": "Influenza"}]
    mapping: list[dict[str, object]] = [{"vacc_type": "FLU", "diseases": diseases}, {"note": "skipped"}]
    permissions = [{"supplier": "S1", "permissions": ["FLU.CRUD"], "ods_codes": ["A1", "B2"]}, {"supplier": "S2"}]
    (tmp_path / "config" / "common" / "disease_mapping.json").write_text(json.dumps(mapping))
    (tmp_path / "config" / "prod" / "permissions_config.json").write_text(json.dumps(permissions))
    redis = nhs_side._MemoryRedis(nhs_side._hashes(tmp_path, "prod"))
    assert redis.hkeys("vacc_to_diseases") == ["FLU"]
    assert json.loads(redis.hget("vacc_to_diseases", "FLU") or "") == diseases
    assert redis.hget("diseases_to_vacc", "6142004") == "FLU"
    assert redis.hget("ods_code_to_supplier", "B2") == "S1"
    assert json.loads(redis.hget("supplier_permissions", "S1") or "") == ["FLU.CRUD"]
    assert redis.hget("supplier_permissions", "S2") is None


def test_runner_replies_are_read_by_id() -> None:
    lines = ['{"id": 2, "accept": false, "stage": "validator", "reason": "x"}\n']
    assert dict(_read(lines))[2].reason == "x"


def test_clock_mutations_straddle_the_bst_hour() -> None:
    found = {(m.column, m.name): m.mutate("") for m in clock_mutations(datetime(2025, 7, 15, 23, 30, tzinfo=UTC))}
    assert found["RECORDED_DATE", "today-london"] == "20250716"
    assert found["PERSON_DOB", "today-utc"] == "20250715"
    assert found["DATE_AND_TIME", "now-plus-60s"] == "20250715T23310000"


def test_the_nhs_clock_is_frozen_without_breaking_isinstance(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("common.models.utils.pre_validator_utils")
    fake.datetime = datetime  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "common.models.utils.pre_validator_utils", fake)
    instant = datetime(2025, 7, 15, 23, 30, tzinfo=UTC)
    nhs_side._freeze_clock(instant)
    frozen = fake.datetime
    assert frozen.now() == datetime(2025, 7, 15, 23, 30)  # naive: the host's UTC, as on their Lambda
    assert frozen.now(UTC) == instant
    assert isinstance(datetime(2020, 1, 1), frozen)
