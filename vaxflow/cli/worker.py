"""`vaxflow worker NAME`: one worker in the foreground, and `check-file`, the validator's rules offline."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer()


@app.command("worker")
def worker_cmd(
    name: Annotated[str, typer.Argument(help="gateway, filesource, validator, batcher, uploader, ackreader, nhs-sim")],
) -> None:
    """Run one worker in the foreground (one event loop; SIGTERM/SIGINT drain and stop it)."""
    from vaxflow.registry import SERVES_OWN_HEALTH, load
    from workers.base.runtime import run_worker

    try:
        main = load(name)
    except KeyError as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_worker(name, main, serve_health=name not in SERVES_OWN_HEALTH))


@app.command("check-file")
def check_file(files: Annotated[list[str], typer.Argument(help="Batch files to check offline.")]) -> None:
    """Validate batch files against the specification; print per-row problems (exit 1 on any)."""
    from schemas.checkfile import main as check_main

    raise typer.Exit(check_main(files))
