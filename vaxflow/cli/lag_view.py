"""`vaxflow lag` laid out for the terminal it prints to.

The full table (one row per partition, ten columns) needs about 150 columns. Squeezed into an
80-column SSH session, rich cut every cell to a few characters ("vaxf…", "stat…"), so the
operator could read nothing. Now the table is printed only where it fits whole (reasons may wrap
at word boundaries), or with `--wide` at its full width (for a wide terminal or `less -S`);
otherwise each group is a block: a header with the group, its status, topic, members and totals,
a narrow table of the partitions' figures, and a line for each partition that is not OK saying
why and who owns it. Text wraps; nothing is cut.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"OK": "green", "WARN": "yellow", "ERR": "red", "STOP": "red", "STALL": "magenta", "REWIND": "cyan"}


def _title(snapshot: dict[str, Any]) -> str:
    return f"consumer lag ({snapshot.get('source', 'sampled here')})"


def lag_table(snapshot: dict[str, Any]) -> Table:
    """Every column as a table: one row per partition, group status on the group's first row."""
    table = Table(title=_title(snapshot), title_justify="left")
    for column, justify in (
        ("group", "left"), ("status", "left"), ("partition", "right"), ("committed", "right"), ("log end", "right"),
        ("lag", "right"), ("lag s", "right"), ("held", "right"), ("owner", "left"), ("partition status", "left"),
    ):
        # figures, names and owners are never wrapped; only the reason may wrap, at word boundaries
        reason = column == "partition status"
        table.add_column(column, justify=justify, no_wrap=not reason, overflow="fold")  # type: ignore[arg-type]
    for group in snapshot["groups"]:
        first = True
        for p in group["partitions"]:
            style = STATUS_STYLE.get(p["status"], "white")
            gstyle = STATUS_STYLE.get(group["status"], "white")
            table.add_row(
                group["group"] if first else "",
                f"[{gstyle}]{group['status']}[/]" if first else "",
                str(p["partition"]),
                "-" if p["committed"] is None else str(p["committed"]),
                str(p["log_end"]),
                str(p["lag"]),
                f"{p['lag_seconds']:.1f}",
                "" if p["held"] is None else str(p["held"]),
                p["owner"] or "-",
                f"[{style}]{p['status']}[/] {p['reason']}",
            )
            first = False
    return table


def _measure(renderable: RenderableType) -> Measurement:
    # on an unbounded console: a measurement is clamped to the console's own width
    console = Console(width=100_000)
    return Measurement.get(console, console.options, renderable)


def fits(table: Table, width: int) -> bool:
    """Whether the table prints at `width` columns with no cell cut: every column but the reasons
    (which may wrap at word boundaries) keeps its full width."""
    return _measure(table).minimum <= width


def full_width(snapshot: dict[str, Any]) -> int:
    """Columns the full table needs with every reason on one line (`--wide` prints at this width)."""
    return _measure(lag_table(snapshot)).maximum


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, "white"))


def group_block(group: dict[str, Any]) -> Group:
    """One group: header lines, the partitions' figures, and why each partition not OK is not."""
    header = Text.assemble((group["group"], "bold"), "  ", _status(group["status"]), "  ", group["topic"])
    members = group.get("members")
    state = f" ({group['state']})" if group.get("state") else ""
    totals = Text(
        f"  members {'-' if members is None else members}{state}   lag {group.get('total_lag', 0)} offsets, "
        f"{group.get('max_lag_seconds', 0.0):.1f} s"
    )
    partitions = group["partitions"]
    held = any(p["held"] is not None for p in partitions)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for column in ("partition", "committed", "log end", "lag", "lag s", *(["held"] if held else [])):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for p in partitions:
        table.add_row(
            str(p["partition"]),
            "-" if p["committed"] is None else str(p["committed"]),
            str(p["log_end"]),
            str(p["lag"]),
            f"{p['lag_seconds']:.1f}",
            *(["-" if p["held"] is None else str(p["held"])] if held else []),
            _status(p["status"]),
        )
    notes = [
        Text.assemble(
            f"  partition {p['partition']} ", _status(p["status"]), f": {p['reason']}; owner {p['owner'] or '-'}"
        )
        for p in partitions
        if p["status"] != "OK"
    ]
    return Group(header, totals, table, *notes, Text(""))


def lag_blocks(snapshot: dict[str, Any]) -> Group:
    return Group(Text(_title(snapshot), style="italic"), Text(""), *(group_block(g) for g in snapshot["groups"]))


def lag_view(snapshot: dict[str, Any], width: int, *, wide: bool = False) -> RenderableType:
    """The full table if it fits `width` (or `wide`), else one block per group."""
    table = lag_table(snapshot)
    return table if wide or fits(table, width) else lag_blocks(snapshot)
