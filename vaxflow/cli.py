"""The one console script, `vaxflow`: local stack, topics, workers and operator commands.

typer turns typed functions into sub-commands with help text, so each command here stays a
thin shell over a module that holds the logic (and its tests).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from vaxflow.cli_support import print_json, settings_or_exit

app = typer.Typer(help="vaxflow: vaccination events to NHS England batch files over MESH.", no_args_is_help=True)
dev_app = typer.Typer(help="The local development stack (real Kafka broker, MESH sandbox, workers).")
topics_app = typer.Typer(help="The topic catalogue (topics/catalogue.py).")
app.add_typer(dev_app, name="dev")
app.add_typer(topics_app, name="topics")


def _register_ops() -> None:
    from vaxflow.ops.commands import register as register_ops

    register_ops(app)


_register_ops()


_settings = settings_or_exit
_print_json = print_json


@dev_app.command("up")
def dev_up(
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Infrastructure only.")] = False,
    nhs_sim: Annotated[bool, typer.Option("--nhs-sim", help="Also run the NHS England simulator.")] = False,
) -> None:
    """Start the stack in the background and print where everything listens."""
    from vaxflow.dev import stack

    settings = _settings()
    try:
        report = asyncio.run(stack.up(settings, workers=not no_workers, nhs_sim=nhs_sim))
    except stack.StackError as exc:
        typer.echo(f"vaxflow dev up: {exc}", err=True)
        raise typer.Exit(1) from None
    _print_json(report)


@dev_app.command("down")
def dev_down() -> None:
    """Stop everything `dev up` started (data directories are kept)."""
    from vaxflow.dev import stack

    _print_json(stack.down(_settings()))


@dev_app.command("status")
def dev_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What runs, where it listens, and the development credentials."""
    from vaxflow.dev import stack

    report = stack.status(_settings())
    if as_json:
        _print_json(report)
        return
    typer.echo(stack.format_status(report))


@topics_app.command("ensure")
def topics_ensure(
    fix_configs: Annotated[bool, typer.Option("--fix-configs", help="Alter drifted topic configs.")] = False,
) -> None:
    """Create missing topics; report drift in partitions or configs (exit 1 on drift)."""
    from topics.ensure import ensure_topics
    from vaxflow.kafka_clients import admin_client

    settings = _settings()

    async def run() -> list[dict[str, object]]:
        admin = admin_client(settings)
        await admin.start()
        try:
            reports = await ensure_topics(admin, namespace=settings.topic_namespace, fix_configs=fix_configs)
        finally:
            await admin.close()
        return [
            {"topic": r.name, "created": r.created, "drift": r.drift, "altered": r.altered} for r in reports
        ]

    reports = asyncio.run(run())
    _print_json(reports)
    if any(r["drift"] for r in reports):
        raise typer.Exit(1)


@topics_app.command("list")
def topics_list() -> None:
    """Print the catalogue: name, partitions, key, retention, producers and consumers."""
    from topics.catalogue import CATALOGUE

    settings = _settings()
    _print_json(
        [
            {
                "name": settings.topic(s.name),
                "partitions": s.partitions,
                "key": s.key,
                "value": s.value,
                "configs": s.configs(),
                "producers": list(s.producers),
                "consumers": list(s.consumers),
            }
            for s in CATALOGUE
        ]
    )


@app.command("worker")
def worker_cmd(
    name: Annotated[str, typer.Argument(help="gateway, filesource, validator, batcher, uploader, ackreader, nhs-sim")],
) -> None:
    """Run one worker in the foreground (one event loop; SIGTERM/SIGINT drain and stop it)."""
    from workers.registry import SERVES_OWN_HEALTH, load
    from workers.runtime import run_worker

    try:
        main = load(name)
    except KeyError as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(2) from None
    port = None if name in SERVES_OWN_HEALTH else _settings().health_port
    raise typer.Exit(run_worker(name, main, port))


@app.command("demo")
def demo_cmd(
    events: Annotated[int, typer.Option(help="How many events to send")] = 5000,
    invalid: Annotated[float, typer.Option(help="Share of invalid events")] = 0.05,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for files and acknowledgements")] = 600,
    seed: Annotated[int, typer.Option(help="Random seed of the load")] = 0,
) -> None:
    """Send a realistic load through the running stack and report where every event ended."""
    from vaxflow.demo import run_demo

    report = asyncio.run(run_demo(_settings(), events, invalid, timeout, seed))
    _print_json(report)
    if report["origins_in_more_than_one_file"]:
        raise typer.Exit(1)


@app.command("smoke")
def smoke_cmd() -> None:
    """Produce one event to the raw topic and read it back (proves the broker path)."""
    from vaxflow.smoke import smoke

    _print_json(asyncio.run(smoke(_settings())))


@app.command("check-file")
def check_file(files: Annotated[list[str], typer.Argument(help="Batch files to check offline.")]) -> None:
    """Validate batch files against the specification; print per-row problems (exit 1 on any)."""
    from schemas.checkfile import main as check_main

    raise typer.Exit(check_main(files))


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
