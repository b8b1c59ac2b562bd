"""Peak memory of the file source per MiB of a handed-in file (issue 17: bounded by a constant).

Each size runs in a fresh subprocess: the parent writes a valid batch file of that size (rows of
tests/workers/data repeated), the child imports the file source, notes its VmHWM (peak resident
set), runs `FileSource.process` on the file with a producer that accepts and drops every record
(the measurement is the file source's, not the broker client's buffers), and reports VmHWM again.
The growth between sizes is what a file costs; it must not grow with the file.

Run: `python -m benchmarks.bench_filesource_memory` (default 8, 32, 128 MiB); `--code DIR` runs
the child against another checkout (e.g. the code before issue 17) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "workers" / "data" / "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"
NAME = "MMR_Vaccinations_v5_X8E5B_20250730T11525001.csv"
SECTION = "## File source memory"


def write_file(path: Path, mib: int) -> int:
    """A valid batch file of about `mib` MiB; its row count."""
    header, *rows = [line for line in SAMPLE.read_bytes().replace(b"\r\n", b"\n").split(b"\n") if line]
    block = b"\n".join(rows) + b"\n"
    target = mib * 1024 * 1024
    written = count = 0
    with path.open("wb") as handle:
        handle.write(header + b"\n")
        while written < target:
            handle.write(block)
            written += len(block)
            count += len(rows)
    return count


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class _DroppingProducer:
    """What Checkpoint needs of an AIOKafkaProducer: every record accepted and dropped."""

    class _Txn:
        @staticmethod
        def is_fatal_error() -> bool:
            return False

    _txn_manager = _Txn()

    def __init__(self) -> None:
        self.sent = 0

    async def begin_transaction(self) -> None:
        return None

    async def commit_transaction(self) -> None:
        return None

    async def abort_transaction(self) -> None:
        return None

    async def send(self, topic: str, value: bytes | None, **_: Any) -> asyncio.Future[object]:
        self.sent += 1
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def child(path: Path) -> None:
    from workers.base.settings import Settings
    from workers.filesource.worker import FileSource

    settings = Settings(topic_namespace="bench", filesource_settle_seconds=0, filesource_max_file_bytes=1 << 40)
    source = FileSource(settings, path.parent)
    producer = _DroppingProducer()
    source._producer = producer  # type: ignore[assignment]
    before = vm_hwm_kib()
    outcome = asyncio.run(source.process(path))
    after = vm_hwm_kib()
    print(json.dumps({"before_kib": before, "peak_kib": after, "sent": producer.sent, "outcome": str(outcome)}))


def measure(mib: int, code: Path = REPO) -> dict[str, Any]:
    """One size in a fresh interpreter: the peak resident set before and after processing."""
    with tempfile.TemporaryDirectory(prefix="vaxflow-bench-mem-") as folder:
        path = Path(folder) / NAME
        rows = write_file(path, mib)
        env = {**os.environ, "PYTHONPATH": str(code)}
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],  # the checkout's code via PYTHONPATH only
            env=env, capture_output=True, text=True, check=True, cwd=code,
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result |= {"mib": mib, "rows": rows}
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[8, 32, 128], help="input sizes in MiB")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose file source is measured")
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--compare", type=Path, help="also measure this checkout (e.g. main before issue 17)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    lines = []
    for label, code in [("this", args.code), *([("compared", args.compare)] if args.compare else [])]:
        for mib in args.sizes:
            r = measure(mib, code)
            growth = (r["peak_kib"] - r["before_kib"]) / 1024
            line = (f"| {label} | {r['mib']} | {r['rows']:,} | {r['before_kib'] / 1024:.0f} "
                    f"| {r['peak_kib'] / 1024:.0f} | {growth:.0f} | {growth / r['mib']:.2f} |")
            print(line, r["outcome"], flush=True)
            lines.append(line)
    if args.no_docs:
        return
    from benchmarks.report import DOCS, cpu_name, write_section

    write_section(
        f"{SECTION}\n\n"
        "`python -m benchmarks.bench_filesource_memory` — peak resident set (VmHWM) of a fresh process "
        "running `FileSource.process` on one valid batch file of each size, records dropped by a "
        "stand-in producer. The target (issue 17) is a peak bounded by a constant, not by the file.\n\n"
        "`this` is the streamed file source; `compared` (`--compare DIR`) the whole-file read it "
        "replaced (bytes, decoded text, every parsed row and the split lines held at once).\n\n"
        "| code | input MiB | rows | RSS before MiB | peak RSS MiB | growth MiB | growth per input MiB |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.python_implementation()} "
        f"{platform.python_version()}, {cpu_name()}.\n"
    )
    print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
