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
