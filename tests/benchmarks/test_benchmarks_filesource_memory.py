"""The file source's memory does not grow with the file (issue 17): a small run of
benchmarks/bench_filesource_memory.py, in the test command.

Each size runs in a fresh process (peak resident set, VmHWM). The whole-file read this replaced
grew by about 10 MiB per MiB of input (280 MiB more for 32 MiB than for 4 MiB); the streamed read
grows by a constant (about 11 MiB for any size, docs/benchmarks.md). The bound is generous: a
memory bound, not a timing.
"""

from __future__ import annotations

import sys

import pytest

from benchmarks.bench_filesource_memory import measure

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is read from /proc")


def test_peak_memory_does_not_grow_with_the_file() -> None:
    small, large = measure(4), measure(32)
    assert "published" in small["outcome"]
    assert "published" in large["outcome"]
    assert large["sent"] > 7 * small["sent"]  # the large file really was read to its end
    growth_mib = (large["peak_kib"] - small["peak_kib"]) / 1024
    assert growth_mib < 16, f"peak grew by {growth_mib:.0f} MiB for 28 MiB more input"
