"""One checker per format kind, built from the rule table in schemas/fields.py.

A checker takes a non-empty value that already passed the generic checks (no control
characters, no edge whitespace, within its length cap) and returns None when the value is
valid and already canonical (the common case, so the caller tests one thing), the canonical
form when it differs, or the prebuilt Reason for the first rule it fails. Returning the shared
Reason instead of raising keeps the hot path free of exception handling and of allocation.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Final

from schemas.codes import nhs_number_problem, snomed_problem
from schemas.dates import BAD_FORMAT, Clock, canonical_date, canonical_datetime
from schemas.fields import FieldRule, Kind, reason
from schemas.record import Reason

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates
# (which cannot be encoded into a UTF-8 file at all).
FORBIDDEN_CHARS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

Checker = Callable[[str, Clock], "str | Reason | None"]


def case_variants(*words: str) -> dict[str, str]:
    """Every ASCII letter-case spelling of each word, mapped to the upper-case word.

    A dict of spellings replaces `value.upper()`, which would also accept non-ASCII look-alikes
    (`"ſ".upper() == "S"`), and makes the check one lookup.
    """
    table: dict[str, str] = {}
    for word in words:
        for spelling in itertools.product(*({c.lower(), c.upper()} for c in word)):
            table["".join(spelling)] = word
    return table


ACTIONS: Final = case_variants("NEW", "UPDATE", "DELETE")
BOOLEANS: Final = case_variants("TRUE", "FALSE")
# 0 unknown, 1 male, 2 female, 9 other; the receiver also takes these exact lowercase words.
GENDERS: Final = {
    "0": "0", "1": "1", "2": "2", "9": "9", "unknown": "0", "male": "1", "female": "2", "other": "9",
}  # fmt: skip
MAX_DOSE_SEQUENCE: Final = 20


def _dose_sequences() -> dict[str, str]:
    """`1`..`9`, and every spelling the receiver's `int()` reads as one of them within our cap:
    leading zeros and a `+` sign (`01`, `+1`, `+001`). Its other leniencies (edge whitespace,
    `0_1`, digits of other scripts) are refused, as everywhere (decision 0003)."""
    table: dict[str, str] = {}
    for n in range(1, 10):
        for sign in ("", "+"):
            for zeros in range(MAX_DOSE_SEQUENCE - len(sign)):
                table[f"{sign}{'0' * zeros}{n}"] = str(n)
    return table


DOSE_SEQUENCES: Final = _dose_sequences()

# The kinds whose values are checked by table: spelling -> canonical value.
LOOKUP_TABLES: Final[dict[Kind, dict[str, str]]] = {
    Kind.GENDER: GENDERS,
    Kind.BOOLEAN: BOOLEANS,
    Kind.DOSE_SEQUENCE: DOSE_SEQUENCES,
}

MAX_DECIMAL: Final = 20
# What the receiver's int() or Decimal() reads, in ASCII and without `_` separators or whitespace.
_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@lru_cache(maxsize=1024)
def canonical_decimal(value: str) -> str | None:
    """The number the receiver reads from `value`, written as a plain decimal; None if refused.

    The receiver tries `int(value)`, then `Decimal(value)`, and sends that number on: so `5.` is
    5, `1e-1` is 0.1, `+0.5` is 0.5 and `-0.5` is minus a half (it does not refuse negative
    amounts, so neither do we). We write the same number without exponent, sign of zero or
    superfluous leading zeros; `.5` becomes `0.5` (FHIR decimals need the leading digit) and
    trailing zeros are kept, since they state precision. Refused: anything else (NaN and the
    infinities, which the receiver refuses too), values longer than MAX_DECIMAL characters and
    exponents beyond +-MAX_DECIMAL (no dose is written so; the plain form stays short).
    """
    if len(value) > MAX_DECIMAL or _DECIMAL.fullmatch(value) is None:
        return None
    number = Decimal(value)
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or not -MAX_DECIMAL <= exponent <= MAX_DECIMAL:
        return None  # bounds the plain form (at most about twice MAX_DECIMAL) before writing it out
    if number.is_zero():
        number = number.copy_abs()
    return format(number, "f")


def _lookup(table: dict[str, str], fail: Reason) -> Checker:
    canonical = frozenset(k for k, v in table.items() if k == v)
    rewrites = {k: v for k, v in table.items() if k != v}

    def check(value: str, clock: Clock) -> str | Reason | None:
        if value in canonical:
            return None
        return rewrites.get(value, fail)

    return check


def _date(rule: FieldRule) -> Checker:
    fmt, year = reason(rule.name, "format"), reason(rule.name, "year")
    future = reason(rule.name, "future") if rule.not_future else None

    def check(value: str, clock: Clock) -> str | Reason | None:
        canonical = canonical_date(value)
        if canonical is None:
            return fmt
        if canonical[0] == "0":
            # The receiver rewrites YYYYMMDD with strftime("%Y-%m-%d"), which writes year 999 as
            # "999", and then refuses it for want of four digits; a sentinel such as 00010101 is
            # no real date anyway. An ISO 0999-01-01 would pass there as given, but we emit
            # YYYYMMDD, so it is refused too rather than rewritten into the failing form.
            return year
        if future is not None and canonical > clock.today:
            return future
        return None if canonical == value else canonical

    return check


def _datetime(rule: FieldRule) -> Checker:
    fails = {BAD_FORMAT: reason(rule.name, "format"), "offset": reason(rule.name, "offset")}
    future = reason(rule.name, "future")

    def check(value: str, clock: Clock) -> str | Reason | None:
        outcome = canonical_datetime(value)
        if isinstance(outcome, str):
            return fails[outcome]
        canonical, epoch = outcome
        if rule.not_future and epoch > clock.epoch:
            return future
        return None if canonical == value else canonical

    return check


def _nhs_number(rule: FieldRule) -> Checker:
    fails = {p: reason(rule.name, p) for p in ("format", "mod11")}

    def check(value: str, clock: Clock) -> str | Reason | None:
        problem = nhs_number_problem(value)
        return None if problem is None else fails[problem]

    return check


def _snomed(rule: FieldRule) -> Checker:
    fails = {p: reason(rule.name, p) for p in ("format", "partition", "verhoeff")}

    def check(value: str, clock: Clock) -> str | Reason | None:
        problem = snomed_problem(value)
        return None if problem is None else fails[problem]

    return check


def _decimal(rule: FieldRule) -> Checker:
    fmt = reason(rule.name, "format")

    def check(value: str, clock: Clock) -> str | Reason | None:
        canonical = canonical_decimal(value)
        if canonical is None:
            return fmt
        return None if canonical == value else canonical

    return check


# Python's \s is Unicode-aware (the same set as str.isspace), as in the receiver's FHIR model
# (fhir.resources on pydantic 1, which matches the pattern with Python's re).
WHITESPACE_RUN: Final = re.compile(r"\s\s")


def _code(rule: FieldRule) -> Checker:
    r"""FHIR `code`: `^[^\s]+(\s[^\s]+)*$`. Edge whitespace is already refused by the generic
    rule, so what is left is two whitespace characters in a row; one NBSP between two words
    matches the pattern and is taken by the receiver, so it is taken here too."""
    fmt = reason(rule.name, "format")

    def check(value: str, clock: Clock) -> str | Reason | None:
        return fmt if WHITESPACE_RUN.search(value) else None

    return check


def checker_for(rule: FieldRule) -> Checker | None:
    """The checker for a column, or None when only the generic checks apply (free text, action)."""
    kind = rule.kind
    if kind is Kind.DATE:
        return _date(rule)
    if kind is Kind.DATETIME:
        return _datetime(rule)
    if kind is Kind.NHS_NUMBER:
        return _nhs_number(rule)
    if kind is Kind.SNOMED:
        return _snomed(rule)
    if kind is Kind.DECIMAL:
        return _decimal(rule)
    if kind is Kind.CODE:
        return _code(rule)
    if kind in LOOKUP_TABLES:
        return _lookup(LOOKUP_TABLES[kind], reason(rule.name, "format"))
    return None
