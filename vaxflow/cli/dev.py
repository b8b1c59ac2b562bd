"""`vaxflow dev up|down|status`, `demo`, `smoke`: the local development stack and its load."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from vaxflow.cli.support import print_json, settings_or_exit

app = typer.Typer(help="The local development stack (real Kafka broker, MESH sandbox, workers).")
load_app = typer.Typer()


def _development_mode() -> None:
    """The dev stack runs in development mode: its processes (started with this environment) accept
    the development credentials, the sandbox's plain http:// and short MESH polls."""
    os.environ["VAXFLOW_DEV_MODE"] = "true"


@app.command("up")
def dev_up(
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Infrastructure only.")] = False,
    nhs_sim: Annotated[bool, typer.Option("--nhs-sim", help="Also run the NHS England simulator.")] = False,
    brokers: Annotated[int, typer.Option(min=1, max=5, help="Kafka nodes (3: a replicated cluster).")] = 1,
    kafka_security: Annotated[
        str, typer.Option(help="plaintext, or sasl_ssl: TLS, SCRAM users and one ACL'd principal per worker.")
    ] = "plaintext",
) -> None:
    """Start the stack in the background and print where everything listens."""
    from vaxflow.dev import kafka_cluster, stack

    if kafka_security not in kafka_cluster.SECURITIES:
        typer.echo(f"vaxflow dev up: --kafka-security must be one of {', '.join(kafka_cluster.SECURITIES)}", err=True)
        raise typer.Exit(2)
    _development_mode()
    settings = settings_or_exit()
    try:
        report = asyncio.run(
            stack.up(settings, workers=not no_workers, nhs_sim=nhs_sim, brokers=brokers, security=kafka_security)
        )
    except stack.StackError as exc:
        typer.echo(f"vaxflow dev up: {exc}", err=True)
        raise typer.Exit(1) from None
    print_json(report)


@app.command("down")
def dev_down() -> None:
    """Stop everything `dev up` started (data directories are kept)."""
    from vaxflow.dev import stack

    _development_mode()
    print_json(stack.down(settings_or_exit()))


@app.command("status")
def dev_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What runs, where it listens, and the development credentials."""
    from vaxflow.dev import stack

    _development_mode()
    report = stack.status(settings_or_exit())
    if as_json:
        print_json(report)
        return
    typer.echo(stack.format_status(report))


@app.command("env")
def dev_env() -> None:
    """Shell `export` lines that connect this shell's commands to the running stack's Kafka as its
    admin (the CLI's principal): `eval "$(vaxflow dev env)"`. Development only."""
    import shlex

    from vaxflow.dev import stack
    from vaxflow.dev.state import load_state

    settings = settings_or_exit()
    cluster = stack.running_cluster(settings, load_state(settings.dev_home))
    for name, value in cluster.environment().items():
        typer.echo(f"export {name}={shlex.quote(value)}")


@load_app.command("demo")
def demo_cmd(
    events: Annotated[int, typer.Option(help="How many events to send")] = 5000,
    invalid: Annotated[float, typer.Option(help="Share of invalid events")] = 0.05,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for files and acknowledgements")] = 600,
    seed: Annotated[int, typer.Option(help="Random seed of the load")] = 0,
) -> None:
    """Send a realistic load through the running stack and report where every event ended."""
    from vaxflow.dev.demo import run_demo

    _development_mode()  # against the dev stack, with its development token
    report = asyncio.run(run_demo(settings_or_exit(), events, invalid, timeout, seed))
    print_json(report)
    if report["origins_in_more_than_one_file"]:
        raise typer.Exit(1)


@load_app.command("smoke")
def smoke_cmd() -> None:
    """Produce one event to the raw topic and read it back (proves the broker path)."""
    from vaxflow.dev.smoke import smoke

    print_json(asyncio.run(smoke(settings_or_exit())))
