"""What every command shares: settings or a clean exit 2, and JSON output."""

from __future__ import annotations

import orjson
import typer

from workers.base.settings import Settings, SettingsError, load_settings


def settings_or_exit() -> Settings:
    """The process settings; a bad `VAXFLOW_*` value prints its message and exits with status 2."""
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def print_json(value: object) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
