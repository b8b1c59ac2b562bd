"""Synthetic lag histories for the lag-rule tests (tests/ops/test_ops_burrow*.py).

Both rule test files build histories the same way; one copy here keeps their samples identical.
"""

from __future__ import annotations

from vaxflow.ops.burrow import PartitionHistory, Sample


def history(samples: list[Sample], window: int = 5) -> PartitionHistory:
    """A partition's sliding window holding `samples`, oldest first (older ones fall out past `window`)."""
    h = PartitionHistory(window)
    for sample in samples:
        h.add(sample)
    return h


def s(at: float, committed: int, end: int, *, owned: bool | None = True, pending: bool = True,
      lag_seconds: float | None = None) -> Sample:
    """One sample at `at` with the lag kafka-consumer-groups would show (log end - committed)."""
    return Sample(at=at, committed=committed, log_end=end, lag=end - committed, pending=pending,
                  lag_seconds=lag_seconds, owned=owned)
