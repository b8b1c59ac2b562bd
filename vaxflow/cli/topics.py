"""`vaxflow topics ensure|list|acls`: the topic catalogue (topics/catalogue.py) on the broker, and
the ACLs each worker principal needs (topics/access.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

import typer

from vaxflow.cli.support import print_json, settings_or_exit

app = typer.Typer(help="The topic catalogue (topics/catalogue.py).")


@app.command("ensure")
def topics_ensure(
    fix_configs: Annotated[bool, typer.Option("--fix-configs", help="Alter drifted topic configs.")] = False,
) -> None:
    """Create missing topics; report drift in partitions or configs (exit 1 on drift)."""
    from topics.ensure import ensure_for
    from workers.base.kafka import admin

    settings = settings_or_exit()

    async def run() -> list[dict[str, object]]:
        async with admin(settings) as client:
            reports = await ensure_for(client, settings, fix_configs=fix_configs)
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


@app.command("acls")
def topics_acls(
    principal_prefix: Annotated[str, typer.Option(help="Each worker's SASL user is PREFIX + worker name")] = "vaxflow-",
    command_config: Annotated[
        str, typer.Option(help="The admin client properties file kafka-acls is run with")
    ] = "admin.properties",
    as_json: Annotated[bool, typer.Option("--json", help="The grants as JSON instead of commands")] = False,
    apply: Annotated[bool, typer.Option("--apply", help="Create them now, as this (admin) principal")] = False,
) -> None:
    """Print the ACLs every worker needs, least privilege, as `kafka-acls` commands (Kafka's own
    tool): its topics, its consumer group and its transactional-id prefix, for this namespace."""
    from topics.access import grants

    settings = settings_or_exit()
    wanted = grants(settings.groups_by_role(), namespace=settings.topic_namespace, prefix=principal_prefix)
    if apply:
        from workers.base.kafka import admin, create_acls

        async def create() -> int:
            async with admin(settings) as client:
                return await create_acls(client, wanted)

        typer.echo(f"{asyncio.run(create())} ACL bindings created (existing ones are kept)")
        return
    if as_json:
        print_json([dataclasses.asdict(g) for g in wanted])
        return
    for grant in wanted:
        typer.echo(grant.kafka_acls(settings.kafka_bootstrap, command_config))

