"""The scaling benchmark's own arithmetic: synthetic senders, traffic and resized topics.

Its figures are only as good as these helpers: keys that are really permitted (else the run
measures rejections), ingestion times that really span the window range, and topic resizing
that keeps each state topic aligned with the topic it guards.
"""

from __future__ import annotations

import orjson

from benchmarks.bench_scaling import Point, corpus, points, specs_with, synthetic_senders, window_costs
from schemas.permissions import parse_permissions
from schemas.validate import validate_event
from topics.catalogue import BATCHER_STATE, CATALOGUE, RAW, VALID, VALIDATOR_STATE

_DISEASES = orjson.dumps(
    [{"vacc_type": t} for t in ("COVID", "FLU", "MMR", "RSV", "HPV", "PERTUSSIS", "MENACWY", "3IN1")]
)


def test_synthetic_senders_hold_every_key_they_are_given() -> None:
    config, pairs = synthetic_senders(20)
    permissions = parse_permissions(config, _DISEASES)
    assert len(pairs) == len(set(pairs)) == 20
    assert {ods for _, ods in pairs} == set(permissions.grants)  # 20 keys over 8 types: 3 senders
    assert len(permissions.grants) == 3
    assert all(permissions.allows(ods, vt, action) for vt, ods in pairs for action in ("NEW", "UPDATE", "DELETE"))


def test_corpus_spreads_valid_events_over_the_keys_and_the_span() -> None:
    config, pairs = synthetic_senders(16)
    permissions = parse_permissions(config, _DISEASES)
    load = corpus(400, pairs, permissions, span_s=600, seed=1)
    assert load.timestamps_ms == sorted(load.timestamps_ms)
    assert 590_000 <= load.timestamps_ms[-1] - load.timestamps_ms[0] < 600_000
    outcomes = [validate_event(p, permissions=permissions) for p in load.payloads]
    valid = [o for o in outcomes if not isinstance(o, list)]
    assert 0.90 * 400 <= len(valid) < 400  # 5% made invalid on purpose, the rest accepted
    assert {f"{v.vaccine_type}|{v.sender_ods}".encode() for v in valid} <= set(load.keys)
    assert len({k for k in load.keys}) == 16


def test_resizing_keeps_state_topics_beside_their_topics() -> None:
    specs = {s.name: s for s in specs_with(12)}
    assert [specs[s.name].partitions for s in (RAW, VALID, VALIDATOR_STATE, BATCHER_STATE)] == [12] * 4
    others = [s for s in CATALOGUE if s.name not in {RAW.name, VALID.name, VALIDATOR_STATE.name, BATCHER_STATE.name}]
    assert all(specs[s.name] == s for s in others)


def test_each_point_varies_one_factor_from_the_base() -> None:
    base = Point("base", partitions=6, keys=480, window_seconds=60)
    for point in points(base)[1:]:
        differing = [f for f in ("partitions", "keys", "window_seconds") if getattr(point, f) != getattr(base, f)]
        assert len(differing) == 1
        assert differing[0].startswith(point.factor)


def test_window_and_key_costs_are_positive_and_per_unit() -> None:
    per_window, per_key = window_costs(2000)
    assert 100 < per_window < 5000  # a Window, its list and its dict slot; not the rows
    assert 10 < per_key < 40  # '"COVID|B00001":985000001,' is 25 bytes
