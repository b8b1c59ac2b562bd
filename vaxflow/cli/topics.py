"""`vaxflow topics ensure|list`: the topic catalogue (topics/catalogue.py) on the broker."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from vaxflow.cli.support import print_json, settings_or_exit

app = typer.Typer(help="The topic catalogue (topics/catalogue.py).")


@app.command("ensure")
def topics_ensure(
    fix_configs: Annotated[bool, typer.Option("--fix-configs", help="Alter drifted topic configs.")] = False,
) -> None:
    """Create missing topics; report drift in partitions or configs (exit 1 on drift)."""
    from topics.ensure import ensure_topics
    from workers.base.kafka import admin

    settings = settings_or_exit()

    async def run() -> list[dict[str, object]]:
        async with admin(settings) as client:
            reports = await ensure_topics(client, namespace=settings.topic_namespace, fix_configs=fix_configs)
        return [
            {"topic": r.name, "created": r.created, "drift": r.drift, "altered": r.altered} for r in reports
        ]

    reports = asyncio.run(run())
    print_json(reports)
    if any(r["drift"] for r in reports):
        raise typer.Exit(1)


@app.command("list")
def topics_list() -> None:
    """Print the catalogue: name, partitions, key, retention, producers and consumers."""
    from topics.catalogue import CATALOGUE

    settings = settings_or_exit()
    print_json(
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
