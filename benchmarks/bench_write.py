"""Rows per second of `render_file` against the standard-library way of writing the same bytes.

The baseline is what one would write without thinking: `csv.DictWriter(delimiter='|',
quoting=csv.QUOTE_ALL)` into a StringIO, then `.encode()`. Both produce identical bytes (checked
below), so the ratio is purely the cost of the method. Run: `python -m benchmarks.bench_write`.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from benchmarks.report import DOCS, cpu_name, write_section
from schemas.batchfile import render_file
from schemas.columns import COLUMNS
from schemas.permissions import default_permissions
from schemas.record import Record
from vaxflow.dev.samples import make_valid_record

SECTION = "## File writing"


def make_records(n: int, seed: int = 0) -> list[Record]:
    """Valid records over every vaccine type the receiver knows; 1 in 100 carries a `"` so the
    escaping path is in the measurement at a plausible rate (terms and batch numbers rarely have one)."""
    rng = random.Random(seed)
    now = datetime(2025, 7, 30, 12, tzinfo=UTC)
    types = sorted(default_permissions().vaccine_types)
    records = []
    for index in range(n):
        values = make_valid_record(rng, types[index % len(types)], now=now)
        if rng.random() < 0.01:
            values["VACCINE_PRODUCT_TERM"] = 'Vaccine "special" 0.5ml'
        records.append(Record(**values))
    return records


def baseline(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, delimiter="|", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def rows_per_second(run: Callable[[], bytes], n: int, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return n / statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    records = make_records(args.rows)
    dicts = [msgspec.structs.asdict(record) for record in records]
    ours_bytes = render_file(records)
    if ours_bytes != baseline(dicts):
        raise SystemExit("render_file and csv.DictWriter disagree: the comparison would be meaningless")
    ours = rows_per_second(lambda: render_file(records), args.rows, args.repeats)
    base = rows_per_second(lambda: baseline(dicts), args.rows, args.repeats)
    ratio = ours / base
    size = len(ours_bytes) / args.rows
    print(f"render_file          {ours:>12,.0f} rows/s")
    print(f"csv.DictWriter       {base:>12,.0f} rows/s")
    print(
        f"ratio                {ratio:>12.2f}x   ({size:.0f} bytes/row, {args.rows:,} rows, median of {args.repeats})"
    )
    if args.no_docs:
        return
    write_section(
        f"{SECTION}\n\n"
        f"`python -m benchmarks.bench_write` — {args.rows:,} valid rows over all "
        f'{len(default_permissions().vaccine_types)} vaccine types (1% with a `"` to escape), '
        f"~{size:.0f} bytes/row, UTF-8, CRLF; median of {args.repeats} runs on one core. "
        "Both writers produce identical bytes.\n\n"
        "| Writer | rows/s |\n|---|---:|\n"
        f"| `schemas.batchfile.render_file` | {ours:,.0f} |\n"
        f"| `csv.DictWriter(QUOTE_ALL)` + `StringIO` + `encode` | {base:,.0f} |\n"
        f"| **ratio** | **{ratio:.2f}×** |\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.python_implementation()} "
        f"{platform.python_version()}, {cpu_name()}. Target: ≥ 200,000 rows/s.\n"
    )
    print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
