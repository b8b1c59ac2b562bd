"""The compiled fast path of event validation, when it is installed.

`vaxflow_fastrow` (native/fastrow, Rust) answers only "is this event certainly valid, and what
is its row?" and declines everything else, so Python stays the one source of reasons; see
docs/decisions/0014-compiled-fast-path.md for why it exists and how the two are kept equal.
It is built by ./scripts/setup; without it every event takes the Python path, which gives the
same results more slowly. The column table and lookup tables are handed over from here, so the
rule table lives only in schemas.fields and schemas.checks.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

from schemas.checks import ACTIONS, LOOKUP_TABLES
from schemas.fields import COLUMN_RULES, Kind, Mandate

log = logging.getLogger("vaxflow.schemas")


class RowChecker(Protocol):
    def row(self, raw: bytes, now_epoch: float, today: str) -> tuple[str, str, str, str, bytes] | None: ...


# The same tables the Python checkers use (schemas.checks), keyed as the kinds of column_table.
_TABLES: Final = {
    **{kind.name.lower(): table for kind, table in LOOKUP_TABLES.items()},
    Kind.ACTION_FLAG.name.lower(): ACTIONS,
}


def column_table() -> list[tuple[str, str, int, bool, bool]]:
    """(name, kind, max length, mandatory for NEW/UPDATE, not in the future) per column, in file order."""
    return [
        (rule.name, rule.kind.name.lower(), rule.cap, rule.mandate is not Mandate.OPTIONAL, rule.not_future)
        for rule in COLUMN_RULES
    ]


def load() -> RowChecker | None:
    """The compiled checker for this rule table, or None (not installed, or it lacks a kind)."""
    try:
        from vaxflow_fastrow import RowValidator
    except ImportError:
        return None
    try:
        return RowValidator(column_table(), _TABLES)
    except ValueError as exc:  # a kind added to schemas.fields that the compiled module predates
        log.warning("compiled validation fast path not used: %s", exc)
        return None


FAST_ROWS: Final = load()
