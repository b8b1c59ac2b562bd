"""Supplier permissions and known vaccine types, from the packaged copies or custom paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.permissions import default_permissions, dump_summary, load_permissions, parse_permissions

NHS_SAMPLES = Path(__file__).parent / "data" / "nhs_samples"  # public NHS England files, verbatim


def test_packaged_production_config() -> None:
    p = default_permissions()
    assert p.letters("X8E5B", "RSV") == frozenset("CUD")
    assert p.letters("x8e5b", "rsv") == frozenset("CUD")  # the receiver upper-cases names
    assert p.letters("X8E5B", "FLU") == frozenset()
    assert p.letters("8J1100001", "COVID") == frozenset()  # mapped ODS, no permissions in prod
    assert p.allows("YGM41", "3IN1", "new")
    assert p.allows("YGM41", "3IN1", "DELETE")
    assert not p.allows("YGM41", "3IN1", "READ")
    assert p.suppliers["YGA"] == "TPP"
    assert "COVID" in p.vaccine_types
    assert "COVID19" not in p.vaccine_types
    assert len(p.vaccine_types) == 19
    assert p.is_known_type("menacwy")
    assert p.senders_for("RSV") == sorted(["DPSFULL", "DPSREDUCED", "X26", "X8E5B", "YGA", "YGJ", "YGM41", "YGMYW"])


def test_packaged_copies_match_the_spec_samples() -> None:
    data = Path(__file__).resolve().parents[2] / "schemas" / "data"
    assert (data / "permissions_prod.json").read_bytes() == (
        NHS_SAMPLES / "config__prod__permissions_config.json"
    ).read_bytes()
    assert (data / "disease_mapping.json").read_bytes() == (
        NHS_SAMPLES / "config__common__disease_mapping.json"
    ).read_bytes()


def test_custom_paths(tmp_path: Path) -> None:
    config = tmp_path / "perm.json"
    config.write_text(json.dumps([{"supplier": "S", "ods_codes": ["abc"], "permissions": ["flu.crs", "FLU.d"]}]))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps([{"vacc_type": "FLU", "diseases": []}]))
    p = load_permissions(config, mapping)
    assert p.letters("ABC", "FLU") == frozenset("CD")  # R and S do not matter for batch files
    assert p.vaccine_types == frozenset({"FLU"})
    assert json.loads(dump_summary(p)) == {"ABC": {"FLU": "CD"}}
    only_config = load_permissions(config)
    assert "RSV" in only_config.vaccine_types  # default disease mapping


@pytest.mark.parametrize(
    "config",
    [b"{", b'{"supplier": "x"}', b'[{"supplier": "S", "ods_codes": ["A"], "permissions": ["FLU"]}]'],
)
def test_malformed_config_fails_at_load(config: bytes) -> None:
    with pytest.raises(ValueError, match=r"malformed|TYPE\.LETTERS"):
        parse_permissions(config, b"[]")


def test_an_unknown_sender_holds_nothing() -> None:
    p = parse_permissions(b'[{"supplier": "S", "ods_codes": ["ABC"], "permissions": ["FLU.CUD"]}]', b"[]")
    assert p.letters("NOPE", "FLU") == frozenset()
    assert not p.allows("NOPE", "FLU", "NEW")
    assert p.senders_for("FLU") == ["ABC"]
    assert p.senders_for("RSV") == []


def test_each_ods_code_maps_to_its_supplier_upper_cased() -> None:
    config = b"""[{"supplier": "EMIS", "ods_codes": ["ygm41", "YGA"], "permissions": ["RSV.C"]},
                  {"supplier": "TPP", "ods_codes": ["x26"], "permissions": []}]"""
    p = parse_permissions(config, b"[]")
    assert dict(p.suppliers) == {"YGM41": "EMIS", "YGA": "EMIS", "X26": "TPP"}
    assert dict(p.grants) == {"YGM41": {"RSV": frozenset("C")}, "YGA": {"RSV": frozenset("C")}, "X26": {}}


def test_the_packaged_copies_are_the_defaults_path_by_path(tmp_path: Path) -> None:
    # default_permissions() is cached per process: load_permissions() itself reads the packaged files
    p = load_permissions()
    assert p.letters("X8E5B", "RSV") == frozenset("CUD")
    assert p.suppliers["YGA"] == "TPP"
    assert len(p.vaccine_types) == 19
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps([{"vacc_type": "FLU"}]))
    only_mapping = load_permissions(None, mapping)
    assert only_mapping.vaccine_types == frozenset({"FLU"})
    assert only_mapping.letters("X8E5B", "RSV") == frozenset("CUD")  # default permissions


def test_the_summary_is_indented_json_in_sorted_order() -> None:
    config = b"""[{"supplier": "S", "ods_codes": ["ZZZ"], "permissions": ["RSV.DC", "FLU.U"]},
                  {"supplier": "T", "ods_codes": ["AAA"], "permissions": ["FLU.C"]}]"""
    summary = dump_summary(parse_permissions(config, b"[]"))
    assert json.loads(summary) == {"AAA": {"FLU": "C"}, "ZZZ": {"FLU": "U", "RSV": "CD"}}
    # for operators reading it: one entry a line, two spaces an indent level, ODS codes and types sorted
    assert summary.splitlines() == [
        "{",
        '  "AAA": {',
        '    "FLU": "C"',
        "  },",
        '  "ZZZ": {',
        '    "FLU": "U",',
        '    "RSV": "CD"',
        "  }",
        "}",
    ]
