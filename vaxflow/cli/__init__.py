"""The one console script, `vaxflow`: one module per command group, each a thin typer shell over
the module that holds the logic (and its tests).

- `dev` (vaxflow.cli.dev): the local stack, and `demo` / `smoke`, its load;
- `gateway hash-token` (vaxflow.cli.gateway): a bearer token and its tokens-file entry;
- `topics` (vaxflow.cli.topics): the catalogue on the broker;
- `worker`, `check-file` (vaxflow.cli.worker): run one worker; check batch files offline;
- `lag`, `replay`, `redrive`, `resend` (vaxflow.cli.ops): the operator's tools.
"""

from __future__ import annotations

import asyncio
import sys

import typer

from vaxflow.cli import dev, gateway, ops, topics, worker
from workers.base.kafka_access import explain
from workers.base.settings import SettingsError, load_settings

app = typer.Typer(help="vaxflow: vaccination events to NHS England batch files over MESH.", no_args_is_help=True)
app.add_typer(dev.app, name="dev")
app.add_typer(topics.app, name="topics")
app.add_typer(gateway.app, name="gateway")
app.add_typer(worker.app)
app.add_typer(dev.load_app)
app.add_typer(ops.app)


def main() -> None:
    """The console script: a cluster that refuses this command (credentials, certificate, ACL)
    gets one line naming why and exit status 1, not a client library's traceback."""
    try:
        app()
    except Exception as exc:
        try:
            refused = asyncio.run(explain(load_settings(), exc))
        except SettingsError:
            refused = None
        if refused is None:
            raise
        print(f"vaxflow: {refused}", file=sys.stderr)
        sys.exit(1)
