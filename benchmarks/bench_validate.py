"""Events per second of validate_event on one core, against json.loads of the same bytes.

Also the validator's own call, validate_event_row, with the Python rules alone and with the
compiled fast path (native/fastrow, decision 0014), interleaved with the others.

json.loads is the floor any Python validator pays just to read the event, so the ratio says how
much the contract costs on top of reading it; both are measured in the same process and run so
that machine load affects them alike. Writes the "## Validation" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_validate.py [--events 20000] [--runs 7] [--no-write]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from benchmarks.corpus import make_events  # noqa: E402
from benchmarks.report import DOCS as DOC  # noqa: E402
from benchmarks.report import cpu_name, write_section  # noqa: E402
from schemas.event import ValidEvent  # noqa: E402
from schemas.fastpath import FAST_ROWS  # noqa: E402
from schemas.permissions import default_permissions  # noqa: E402
from schemas.validate import validate_event, validate_event_row  # noqa: E402

SECTION = "## Validation"


def _rate(events: list[bytes], step: Callable[[bytes], object]) -> tuple[float, float]:
    """(events per CPU second, events per wall second) of one run.

    CPU time is the figure that answers "per core": on a shared machine wall time also counts
    the moments another process held our core. GC is off while timing so that a collection
    lands on neither side.
    """
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for raw in events:
            step(raw)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        gc.enable()
    return len(events) / cpu, len(events) / wall


def _json_loads(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:  # the corpus holds broken JSON on purpose; the validator handles it too
        return None


def _load() -> str:
    try:
        one_minute = Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "load unknown"
    return f"load average {one_minute} over {os.cpu_count()} CPUs"


def run(n: int, runs: int) -> dict[str, object]:
    now = datetime.now(UTC)
    events = make_events(n, invalid_fraction=0.1, seed=0, now=now)
    permissions = default_permissions()

    def ours(raw: bytes) -> object:
        return validate_event(raw, permissions=permissions)

    def row_python(raw: bytes) -> object:
        return validate_event_row(raw, permissions=permissions, native=False)

    def row_native(raw: bytes) -> object:
        return validate_event_row(raw, permissions=permissions, native=True)

    outcomes = [ours(raw) for raw in events]  # warm caches as a long-running worker has them
    for raw in events:
        assert row_native(raw) == row_python(raw)  # and warm the fast path's callers alike
    accepted = sum(isinstance(o, ValidEvent) for o in outcomes)
    rules = Counter(r.rule.split(".", 1)[1] for o in outcomes if isinstance(o, list) for r in o)
    ours_runs, base_runs, py_rows, native_rows = [], [], [], []
    for _ in range(runs):  # interleaved, so a burst of load on the machine hits all alike
        ours_runs.append(_rate(events, ours))
        base_runs.append(_rate(events, _json_loads))
        py_rows.append(_rate(events, row_python)[0])
        if FAST_ROWS is not None:
            native_rows.append(_rate(events, row_native)[0])
    our_rates, base_rates = [r[0] for r in ours_runs], [r[0] for r in base_runs]
    ours_median, base_median = statistics.median(our_rates), statistics.median(base_rates)
    pair_ratio = statistics.median(o / b for o, b in zip(our_rates, base_rates, strict=True))
    return {
        "row_python": statistics.median(py_rows),
        "row_python_spread": (min(py_rows), max(py_rows)),
        "row_native": statistics.median(native_rows) if native_rows else None,
        "row_native_spread": (min(native_rows), max(native_rows)) if native_rows else None,
        "row_ratio": statistics.median(nr / pr for nr, pr in zip(native_rows, py_rows, strict=True))
        if native_rows
        else None,
        "events": n,
        "runs": runs,
        "mean_bytes": sum(map(len, events)) / n,
        "accepted": accepted,
        "rejected": n - accepted,
        "top_rules": rules.most_common(8),
        "ours": ours_median,
        "ours_spread": (min(our_rates), max(our_rates)),
        "baseline": base_median,
        "baseline_spread": (min(base_rates), max(base_rates)),
        "ratio": pair_ratio,
        "ours_wall": statistics.median(r[1] for r in ours_runs),
        "baseline_wall": statistics.median(r[1] for r in base_runs),
        "python": platform.python_version(),
        "msgspec": msgspec.__version__,
        "cpu": cpu_name(),
        "date": now.strftime("%Y-%m-%d"),
        "load": _load(),
    }


def _row_lines(r: dict[str, object]) -> str:
    plo, phi = cast(tuple[float, float], r["row_python_spread"])
    lines = (
        f"| `validate_event_row`, Python rules only (the validator with `VAXFLOW_NATIVE_VALIDATION=false`) "
        f"| {r['row_python']:,.0f} | {plo:,.0f} – {phi:,.0f} | |\n"
    )
    if r["row_native"] is not None:
        nlo, nhi = cast(tuple[float, float], r["row_native_spread"])
        lines += (
            f"| `validate_event_row` with the compiled fast path (the validator's default; decision 0014) "
            f"| {r['row_native']:,.0f} | {nlo:,.0f} – {nhi:,.0f} | |\n"
            f"| ratio fast path / Python rules (median of per-run pairs) | {r['row_ratio']:.2f} | | |\n"
        )
    else:
        lines += "| compiled fast path | not installed (./scripts/setup builds it) | | |\n"
    return lines


def render(r: dict[str, object]) -> str:
    lo, hi = cast(tuple[float, float], r["ours_spread"])
    blo, bhi = cast(tuple[float, float], r["baseline_spread"])
    return f"""{SECTION}

Measured by `benchmarks/bench_validate.py` on {r["date"]}: one process, one core, Python {r["python"]},
msgspec {r["msgspec"]}, {r["cpu"]}. Corpus: {r["events"]} events from `benchmarks/corpus.py`
(seed 0; all eight seed vaccine types; permitted senders; about 20% of values in lenient forms
that get rewritten; 10% broken in varied ways), mean {r["mean_bytes"]:.0f} bytes; {r["accepted"]}
accepted, {r["rejected"]} rejected. Median of {r["runs"]} interleaved runs, caches warm.

| Over the same bytes | events per CPU second (median) | slowest – fastest run | events per wall second (median) |
|---|---:|---:|---:|
| `validate_event` (decode, validate, canonicalise) | {r["ours"]:,.0f} | {lo:,.0f} – {hi:,.0f} | {r["ours_wall"]:,.0f} |
| `json.loads` only (baseline) | {r["baseline"]:,.0f} | {blo:,.0f} – {bhi:,.0f} | {r["baseline_wall"]:,.0f} |
| ratio ours / baseline (median of per-run pairs) | {r["ratio"]:.2f} | | |
{_row_lines(r)}
Target: at least 50,000 events/s on one core. The machine ({r["load"]}) was shared with other
work while measuring, so rates are per CPU second of this process (wall-clock rates, which also
count time another process held the core, are shown for reference); each run of ours is paired
with a baseline run right after it, and the ratio of those pairs is the steadier figure.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    args = parser.parse_args()
    result = run(args.events, args.runs)
    print(f"validate_event: {result['ours']:,.0f} events per CPU second (median of {args.runs})")
    print(f"json.loads:     {result['baseline']:,.0f} events per CPU second (median of {args.runs})")
    print(f"ratio:          {result['ratio']:.2f}")
    native = result["row_native"]
    print(
        f"validate_event_row, Python rules: {result['row_python']:,.0f}; with the fast path: "
        + (f"{native:,.0f}" if isinstance(native, float) else "not installed")
    )
    print(f"accepted {result['accepted']}, rejected {result['rejected']}; top rules {result['top_rules']}")
    if not args.no_write:
        write_section(render(result))
        print(f"wrote {SECTION!r} in {DOC}")


if __name__ == "__main__":
    main()
