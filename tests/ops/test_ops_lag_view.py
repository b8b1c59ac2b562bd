"""`vaxflow lag` at 80 and 200 columns: nothing cut at 80 (one block per group), the full table at
200 where it fits whole, and `--wide` for the table anywhere."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console, RenderableType

from vaxflow.cli.lag_view import fits, full_width, lag_table, lag_view

NS = "prod-tenant-a"
STOP_REASON = "no live member of the group owns the partition"
STALL_REASON = "committed offset unchanged over 12 samples with lag"


def _partition(n: int, status: str = "OK", reason: str = "caught up", **over: Any) -> dict[str, Any]:
    row = {"partition": n, "committed": 1_234_567 + n, "log_start": 0, "log_end": 1_234_567 + n, "lag": 0,
           "lag_seconds": 0.0, "pending": False, "owner": f"{NS}.vaxflow-validator-{n}@10.20.30.40",
           "held": None, "open_windows": None, "status": status, "reason": reason, "complete": 1.0}
    return row | over


def snapshot() -> dict[str, Any]:
    return {
        "at": 1_765_000_000.0,
        "source": "http://127.0.0.1:8090/lag",
        "groups": [
            {"group": f"{NS}.vaxflow-validator", "topic": f"{NS}.vaccination.events.raw", "status": "ERR",
             "state": "Empty", "members": 0, "total_lag": 5000, "max_lag_seconds": 312.5,
             "partitions": [_partition(0, "STOP", STOP_REASON, lag=2500, lag_seconds=312.5, owner=None),
                            _partition(1, "STOP", STOP_REASON, lag=2500, lag_seconds=300.0, owner=None)]},
            {"group": f"{NS}.vaxflow-batcher", "topic": f"{NS}.vaccination.events.valid", "status": "OK",
             "state": "Stable", "members": 2, "total_lag": 30, "max_lag_seconds": 1200.0,
             "partitions": [_partition(0, "OK", "holding: oldest record 1200s old <= 3690s", lag=30, held=30,
                                       lag_seconds=1200.0),
                            _partition(1, held=0)]},
            {"group": f"{NS}.vaxflow-uploader", "topic": f"{NS}.vaccination.files.ready", "status": "ERR",
             "state": "Stable", "members": 1, "total_lag": 4, "max_lag_seconds": 900.0,
             "partitions": [_partition(0, "STALL", STALL_REASON, lag=4, lag_seconds=900.0), _partition(1)]},
        ],
        "batcher": None,
    }


def render(renderable: RenderableType, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_full_table_cannot_be_read_at_80_columns() -> None:
    """What the issue reports: squeezed into 80 columns the table cuts its cells (so blocks exist)."""
    assert not fits(lag_table(snapshot()), 80)
    text = render(lag_table(snapshot()), 80)
    assert not all(g["group"] in text and g["topic"] in text for g in snapshot()["groups"])
    assert fits(lag_table(snapshot()), 200)


def test_at_80_columns_every_group_topic_status_and_reason_is_whole() -> None:
    text = render(lag_view(snapshot(), 80), 80)
    print(f"\n{text}")
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    lines = text.splitlines()
    for group in snapshot()["groups"]:
        # group, status and topic on the group's header line, none of them cut or wrapped
        assert any(group["group"] in line and group["status"] in line and group["topic"] in line for line in lines)
        for p in group["partitions"]:
            assert re.search(rf"^\s*{p['partition']}\s.*\b{p['status']}\s*$", text, re.MULTILINE)
    flat = _flat(text)
    assert f"partition 0 STOP: {STOP_REASON}; owner -" in flat
    assert f"partition 0 STALL: {STALL_REASON}; owner {NS}.vaxflow-validator-0@10.20.30.40" in flat
    assert "1234567" in flat  # committed offsets whole
    assert "312.5" in flat
    assert "held" in flat  # the batcher's block has its held column


def test_at_200_columns_the_full_table_fits_whole() -> None:
    text = render(lag_view(snapshot(), 200), 200)
    print(f"\n{text}")
    assert "…" not in text
    assert "partition status" in text  # the table's header, not the blocks
    assert f"{NS}.vaxflow-validator-1@10.20.30.40" in text
    for group in snapshot()["groups"]:
        assert f"│ {group['group']} " in text
        assert f"│ {group['status']} " in text
    # a reason may wrap at a word boundary inside its cell, never be cut
    assert "│ STOP no live member of the group" in text
    assert "│ STALL committed offset unchanged" in text
    cells = " ".join(line.split("│")[-2].strip() for line in text.splitlines() if line.startswith("│"))
    assert STOP_REASON in cells
    assert STALL_REASON in cells


def test_wide_prints_the_whole_table_at_its_full_width() -> None:
    """`vaxflow lag --wide` prints at full_width(snapshot) columns: every cell whole, reasons on one line."""
    width = full_width(snapshot())
    assert width > 80
    text = render(lag_view(snapshot(), 80, wide=True), width)
    assert "partition status" in text
    assert "…" not in text
    assert f"STALL {STALL_REASON}" in text
