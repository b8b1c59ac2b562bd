"""Operator commands: `vaxflow lag`, `replay`, `redrive`, `resend`.

Thin shells over vaxflow.ops modules, which hold the logic and the tests; each imports its module
inside the command so that `vaxflow --help` stays quick.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import aiohttp
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from vaxflow.cli.lag_view import full_width, lag_view
from vaxflow.cli.support import print_json, settings_or_exit
from workers.base.settings import OpsSettings

app = typer.Typer()

_settings = settings_or_exit
_print_json = print_json


async def _from_service(settings: OpsSettings) -> dict[str, Any] | None:
    """The running ops service's evaluation (it has a full window of samples), if it answers."""
    url = f"http://{settings.ops_host}:{settings.ops_port}/lag"
    try:
        async with aiohttp.ClientSession() as session, session.get(
            url, timeout=aiohttp.ClientTimeout(total=2)
        ) as response:
            if response.status != 200:
                return None
            body: dict[str, Any] = await response.json()
            body["source"] = url
            return body
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


@app.command("lag")
def lag(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 5.0,
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column as one table, however wide the terminal.")
    ] = False,
) -> None:
    """Lag per group and partition (offsets, seconds, held in windows) with Burrow-style status.

    Asks the ops service when it runs (its statuses rest on a full window of samples);
    otherwise samples here, and statuses firm up as --watch collects samples. Laid out for the
    terminal: the full table where it fits (or with --wide), else one block per group.
    """
    from vaxflow.ops.lag import LagMonitor

    settings = _settings()

    async def main() -> None:
        monitor: LagMonitor | None = None
        console = Console()
        live: Live | None = None
        try:
            while True:
                snapshot = await _from_service(settings)
                if snapshot is None:
                    if monitor is None:
                        monitor = LagMonitor(settings)
                        await monitor.start()
                    snapshot = (await monitor.sample()).to_json()
                    snapshot["source"] = "sampled here; statuses need several samples"
                if as_json:
                    _print_json(snapshot)
                elif watch:
                    if wide:
                        console.width = max(console.width, full_width(snapshot))
                    view = lag_view(snapshot, console.width, wide=wide)
                    if live is None:
                        live = Live(view, console=console, auto_refresh=False)
                        live.start()
                    live.update(view, refresh=True)
                else:
                    if wide:  # every column whole, however wide: the terminal or `less -S` copes
                        console.width = max(console.width, full_width(snapshot))
                    console.print(lag_view(snapshot, console.width, wide=wide))
                if not watch:
                    return
                await asyncio.sleep(interval)
        finally:
            if live is not None:
                live.stop()
            if monitor is not None:
                await monitor.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())

@app.command("replay")
def replay(
    group: Annotated[str, typer.Option("--group", help="validator, batcher, uploader, or a group id.")],
    to_datetime: Annotated[
        str | None, typer.Option("--to-datetime", help="ISO 8601 with a zone, e.g. 2025-01-31T09:00:00Z.")
    ] = None,
    to_offset: Annotated[int | None, typer.Option("--to-offset", help="Same offset on every partition.")] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="Topic (only for groups outside vaxflow).")] = None,
    execute: Annotated[bool, typer.Option("--execute", help="Apply it (default: dry run).")] = False,
    resend_: Annotated[bool, typer.Option("--resend", help="Process and SEND AGAIN what was sent.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reset a group's offsets; dry run by default; refused while the group has live members.

    Without --resend the replay guards skip what was already processed, so nothing is sent twice.
    """
    from vaxflow.ops.replay import ReplayRefused, execute_replay, plan_replay
    from vaxflow.ops.scan import RichMeter

    settings = _settings()
    meter = RichMeter()

    async def main() -> dict[str, Any]:
        plan = await plan_replay(settings, group, to_datetime=to_datetime, to_offset=to_offset, topic=topic,
                                 resend=resend_, meter=meter)
        if execute:
            await execute_replay(settings, plan, meter=meter)
        return plan.to_json()

    try:
        report = asyncio.run(main())
    except ReplayRefused as exc:
        typer.echo(f"vaxflow replay: refused: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        _print_json(report)
        return
    _print_replay(report)

@app.command("redrive")
def redrive_cmd(
    source: Annotated[str, typer.Option("--from", help="rejected or deadletter.")],
    filters: Annotated[
        list[str] | None, typer.Option("--filter", help="reason=…, vaccine=…, sender=… (repeatable).")
    ] = None,
    execute: Annotated[bool, typer.Option("--execute", help="Re-submit (default: dry run).")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-submit dead letters after a fix, keeping their origin; each one at most once."""
    from vaxflow.ops.redrive import RedriveError, RedriveFilter, redrive
    from vaxflow.ops.scan import RichMeter

    settings = _settings()
    try:
        parsed = RedriveFilter.parse(filters or [])
        report = asyncio.run(redrive(settings, source, parsed, execute=execute, meter=RichMeter()))
    except RedriveError as exc:
        typer.echo(f"vaxflow redrive: {exc}", err=True)
        raise typer.Exit(2) from None
    body = report.to_json()
    if as_json:
        _print_json(body)
        return
    console = Console()
    console.print(f"scanned {body['scanned']} dead letters in {body['topic']}; matched {body['matched']}")
    for reason, n in body["to_redrive_by_reason"].items():
        console.print(f"  {n:>8}  {reason}")
    for cause, n in body["not_redrivable"].items():
        console.print(f"  [yellow]not redrivable[/] {n}: {cause}")
    if body["already_redriven"]:
        console.print(f"  {body['already_redriven']} already redriven before (redrive ledger): left alone")
    if body["already_sent"]:
        console.print(f"  {body['already_sent']} files already in the sent ledger: left alone")
    verb = "re-submitted" if execute else "would re-submit (dry run; --execute to apply)"
    console.print(f"[bold]{verb}: {body['submitted'] if execute else body['to_redrive']}[/]")

@app.command("resend")
def resend_cmd(
    file_name: Annotated[str, typer.Argument(help="The name of a file in the sent ledger.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the new name, send nothing.")] = False,
    with_extended: Annotated[
        bool, typer.Option("--with-extended", help="Re-send the extended-attribute file sent beside it too.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send one already-sent file again under a new, spec-valid name, recorded as a re-send."""
    from vaxflow.ops.resend import ResendError, resend
    from vaxflow.ops.scan import RichMeter

    settings = _settings()
    try:
        plan = asyncio.run(
            resend(settings, file_name, execute=not dry_run, with_extended=with_extended, meter=RichMeter())
        )
    except ResendError as exc:
        typer.echo(f"vaxflow resend: {exc}", err=True)
        raise typer.Exit(1) from None
    body = plan.to_json() | {"executed": not dry_run}
    if as_json:
        _print_json(body)
        return
    verb = "would re-send" if dry_run else "re-sending"
    typer.echo(f"{verb} {body['original']} ({body['rows']} rows, from the {body['found_in']}) "
               f"as {body['new_name']}; the uploader sends it with resend_of={body['original']}")
    if body["extended_new_name"]:
        typer.echo(f"{verb} its extended-attribute file {body['extended_sent']} ({body['extended_rows']} rows) "
                   f"as {body['extended_new_name']}, after it")
    elif body["extended_sent"]:
        typer.echo(f"not re-sent: its extended-attribute file {body['extended_sent']} (--with-extended re-sends both)")


def _print_replay(report: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"replay {report['group']} on {report['topic']}"
                  f"{' (--resend)' if report['resend'] else ''}", title_justify="left")
    for column in ("partition", "current", "target", "moved", "to read", "skipped by guard", "never-processed skipped"):
        table.add_column(column, justify="right")
    for p in report["partitions"]:
        table.add_row(
            str(p["partition"]), "-" if p["current"] is None else str(p["current"]), str(p["target"]),
            f"{p['moved']:+d}", str(p["records_to_read"]), str(p["skipped_by_guard"]),
            str(p["never_processed_skipped"]),
        )
    console.print(table)
    skipped = report["skipped_by_guard"]
    what = {"validator": "already validated", "batcher": "already in files", "uploader": "files already sent"}
    console.print(f"{report['records_to_read']} records will be read again; {skipped} will be skipped as "
                  f"{what.get(report['kind'], 'processed')}")
    if report["skipped_already_sent"] is not None:
        console.print(f"of the skipped events, {report['skipped_already_sent']} are in files already sent")
    if report["resend"]:
        console.print("[bold red]--resend: the guard is lowered; these events will be processed and SENT AGAIN[/]")
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    if report["executed"]:
        console.print("[green]offsets reset[/]" + (f"; re-sent as: {', '.join(report['resent'])}"
                                                    if report["resent"] else ""))
    else:
        console.print("dry run: nothing changed (--execute to apply)")
