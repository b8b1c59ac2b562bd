"""The Prometheus metric names vaxflow's code registers, read from its source, for the tests that
check that the alerting rules and the Grafana dashboard query only metrics that exist.

Read from the source rather than from a registry so that every worker counts without starting it:
each metric name is a string literal (`Counter("vaxflow_…")`, `GaugeMetricFamily("vaxflow_…")`,
workers/batcher/gauges.py's constants). A counter is exposed with `_total`, a histogram with
`_bucket`, `_sum` and `_count`.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_LITERAL = re.compile(r"""["'](vaxflow_[a-z0-9_]+)["']""")
QUERIED = re.compile(r"\b(vaxflow_[a-z0-9_]+)\b")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")

# Metrics the rules or the dashboard may name before the change adding them is merged (none now).
PENDING: frozenset[str] = frozenset()


def registered() -> set[str]:
    names: set[str] = set()
    for package in ("workers", "vaxflow"):
        for source in (ROOT / package).rglob("*.py"):
            names.update(_LITERAL.findall(source.read_text()))
    return names


def missing(queried: set[str], known: set[str]) -> set[str]:
    """The queried names no code exposes (allowing the exposition suffixes)."""

    def exists(name: str) -> bool:
        return name in known or name in PENDING or any(
            name.endswith(s) and name.removesuffix(s) in known for s in _SUFFIXES
        )

    return {name for name in queried if not exists(name)}
