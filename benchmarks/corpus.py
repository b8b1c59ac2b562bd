"""A reproducible mixed corpus of encoded raw events, for benchmarks and load generation.

Thin on purpose: the realistic records come from vaxflow.dev.samples, which the product's own load
generator uses too, so benchmarks and load tests measure the same traffic. This module only
mixes vaccine types and senders, breaks a fraction of events, and encodes them as producers do.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec

from vaxflow.dev.samples import SEED_VACCINE_TYPES, corrupt, make_event

# Byte-level breakage that cannot be expressed as a dict: the validator must survive it too.
_BYTE_BREAKS = (
    lambda raw: raw[: len(raw) // 2],  # truncated
    lambda raw: raw.replace(b'"record"', b'"record" x', 1),  # not JSON
    lambda raw: b"\xff\xfe" + raw,  # not UTF-8
    lambda raw: b"[" + raw + b"]",  # not an object
)


def make_events(n: int, invalid_fraction: float = 0.1, seed: int = 0, *, now: datetime | None = None) -> list[bytes]:
    """`n` JSON events over the seed vaccine types and permitted senders, ~`invalid_fraction` bad.

    Deterministic for a given `seed` and `now`; `now` defaults to the current time so that the
    events are recent enough to be valid when validated straight away.
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    encoder = msgspec.json.Encoder()
    events: list[bytes] = []
    for _ in range(n):
        event = make_event(rng, rng.choice(SEED_VACCINE_TYPES), now=now)
        if rng.random() >= invalid_fraction:
            events.append(encoder.encode(event))
        elif rng.random() < 0.05:
            events.append(rng.choice(_BYTE_BREAKS)(encoder.encode(event)))
        else:
            events.append(encoder.encode(corrupt(rng, event)))
    return events
