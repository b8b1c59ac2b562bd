"""`vaxflow gateway hash-token`: a new bearer token and the entry the gateway's tokens file holds for it."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import orjson
import typer

app = typer.Typer(help="The HTTP gateway's tokens (docs/operations.md, 'Running the gateway').")


@app.command("hash-token")
def hash_token_cmd(
    client: Annotated[str, typer.Option(help="The calling system's name, as logs and headers show it")] = "CLIENT",
    sender: Annotated[
        list[str] | None, typer.Option("--sender", help="An ODS code it may submit for (repeat; '*' for all)")
    ] = None,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Hash the token read from standard input instead of making one")
    ] = False,
) -> None:
    """Make a token (or read one from stdin, never from the command line, where `ps` and shell
    history would keep it) and print its tokens-file entry; the token goes to stderr, once."""
    from workers.gateway.tokens import MIN_TOKEN_CHARS, hash_token

    if stdin:
        token = sys.stdin.readline().rstrip("\r\n")
        if len(token) < MIN_TOKEN_CHARS:
            typer.echo(
                f"vaxflow gateway hash-token: a token needs at least {MIN_TOKEN_CHARS} characters of random "
                "(SHA-256 is only safe for tokens nobody can guess); omit --stdin to make one",
                err=True,
            )
            raise typer.Exit(2)
    else:
        token = secrets.token_urlsafe(32)
        typer.echo(f"token (give it to {client}; it is not stored anywhere): {token}", err=True)
    entry = {"client": client, "token_sha256": hash_token(token), "senders": [s.upper() for s in sender or []]}
    typer.echo(orjson.dumps(entry).decode())
