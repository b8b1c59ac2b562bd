"""The synthetic event generator: valid by construction, and each corruption really breaks it."""

from __future__ import annotations

import importlib.util
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from schemas.event import ValidEvent
from schemas.permissions import Permissions, default_permissions
from schemas.validate import validate_event
from vaxflow.dev.samples import CORRUPTIONS, SEED_VACCINE_TYPES, corrupt, make_event, make_valid_record

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
P = default_permissions()


def load_script(name: str) -> ModuleType:
    """benchmarks/ is not an installed package; load its modules from their files."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(f"benchmarks.{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def granted(ods: str, vaccine_type: str) -> Permissions:
    """The production permissions, plus C, U and D of `vaccine_type` for `ods`."""
    grants = {**P.grants, ods: {**P.grants[ods], vaccine_type: frozenset("CUD")}}
    return Permissions(grants=grants, vaccine_types=P.vaccine_types, suppliers=P.suppliers)


@pytest.mark.parametrize("vaccine_type", sorted(P.vaccine_types))
def test_every_vaccine_type_makes_valid_records(vaccine_type: str) -> None:
    """Every known type's records validate. Where the production permissions let nobody send a type
    (e.g. BCG), its records validate for a sender granted it, the production config refuses them for
    the permission alone, and make_event says there is no sender rather than inventing one."""
    rng = random.Random(vaccine_type)
    senders = P.senders_for(vaccine_type)
    sender = senders[0] if senders else P.senders_for("FLU")[0]
    permissions = P if senders else granted(sender, vaccine_type)
    for _ in range(30):
        record = make_valid_record(rng, vaccine_type, now=NOW, lenient=0.5)
        raw = msgspec.json.encode({"vaccine_type": vaccine_type, "sender_ods": sender, "source_system": "t",
                                   "record": record})
        assert isinstance(validate_event(raw, permissions=permissions, now=NOW), ValidEvent)
        if not senders:
            refused = validate_event(raw, permissions=P, now=NOW)
            assert isinstance(refused, list)
            assert [r.rule for r in refused] == ["sender_ods.permission"]
    if not senders:
        with pytest.raises(ValueError, match=f"no sender may send NEW for {vaccine_type}"):
            make_event(rng, vaccine_type, now=NOW)


def test_events_are_valid_and_varied() -> None:
    rng = random.Random(3)
    events = [make_event(rng, now=NOW) for _ in range(500)]
    results = [validate_event(msgspec.json.encode(e), permissions=P, now=NOW) for e in events]
    assert all(isinstance(r, ValidEvent) for r in results), [r for r in results if not isinstance(r, ValidEvent)][:3]
    assert {e["vaccine_type"] for e in events} == set(SEED_VACCINE_TYPES)
    assert len({e["sender_ods"] for e in events}) >= 5
    assert {e["record"]["ACTION_FLAG"].upper() for e in events} == {"NEW", "UPDATE", "DELETE"}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_corruption_is_rejected(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(40):
        broken = corrupt(rng, make_event(rng, now=NOW), kind)
        result = validate_event(msgspec.json.encode(broken), permissions=P, now=NOW)
        assert isinstance(result, list), (kind, broken)


def test_corpus_is_deterministic_and_about_ten_percent_invalid() -> None:
    corpus = load_script("corpus")
    first = corpus.make_events(2000, seed=5, now=NOW)
    assert first == corpus.make_events(2000, seed=5, now=NOW)
    rejected = sum(not isinstance(validate_event(raw, permissions=P, now=NOW), ValidEvent) for raw in first)
    assert 140 <= rejected <= 260
    assert corpus.make_events(10, invalid_fraction=0.0, seed=1, now=NOW) != first[:10]


def test_benchmark_section_is_replaced_and_others_kept(tmp_path: Path) -> None:
    bench = load_script("bench_validate")
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## File writing\n\nfast\n\n## Validation\n\nold\n\n## Later\n\nkeep\n")
    bench.write_section("## Validation\n\nnew\n", doc)
    assert doc.read_text() == "# Benchmarks\n\n## File writing\n\nfast\n\n## Validation\n\nnew\n\n## Later\n\nkeep\n"
    fresh = tmp_path / "fresh.md"
    fresh.write_text("# Benchmarks\n\n## File writing\n\nfast\n")
    bench.write_section("## Validation\n\nnew\n", fresh)
    assert fresh.read_text() == "# Benchmarks\n\n## File writing\n\nfast\n\n## Validation\n\nnew\n"
