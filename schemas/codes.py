"""Check digits of the two coded identifiers the receiver verifies: NHS number and SNOMED CT id.

Both are implemented here rather than taken from a library because the receiver's exact rules
(spec digest section c, #1 and #17) are small, and a dependency would have to be audited against
them anyway. Inputs are assumed to be ASCII; callers check the shape first.
"""

from __future__ import annotations

import re
from functools import lru_cache
from operator import mul
from typing import Final, Literal

_NHS_WEIGHTS: Final = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_ASCII_ZERO: Final = ord("0")
_NHS_OFFSET: Final = _ASCII_ZERO * sum(_NHS_WEIGHTS)


def nhs_number_problem(value: str) -> str | None:
    """ "format" unless exactly ten ASCII digits, "mod11" on a wrong check digit, else None.

    Mod-11: weights 10..2 on the first nine digits; check = 11 - (sum mod 11); 11 means 0 and
    10 means no number with these nine digits is valid. `isascii` comes first because
    `isdigit` alone accepts other scripts' digits.
    """
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return "format"
    encoded = value.encode("ascii")
    total: int = sum(map(mul, encoded, _NHS_WEIGHTS)) - _NHS_OFFSET
    check = 11 - total % 11
    if check == 11:
        check = 0
    return None if check == encoded[9] - _ASCII_ZERO else "mod11"


def nhs_check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits, or None when no valid number starts with them.

    Used by the sample generator, which must only produce numbers the receiver accepts.
    """
    total = sum(int(d) * w for d, w in zip(first_nine, _NHS_WEIGHTS, strict=True))
    check = 11 - total % 11
    return None if check == 10 else check % 11


def _dihedral(j: int, k: int) -> int:
    """Multiplication in the dihedral group D5, numbered 0-4 rotations and 5-9 reflections."""
    if j < 5:
        return (j + k) % 5 if k < 5 else 5 + (j + k) % 5
    return 5 + (j - k) % 5 if k < 5 else (j - k) % 5


_D: Final = tuple(tuple(_dihedral(j, k) for k in range(10)) for j in range(10))
_P1: Final = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)


def _permutations() -> tuple[tuple[int, ...], ...]:
    """Verhoeff's position permutations: the i-th is the first applied i times (period 8)."""
    rows = [tuple(range(10))]
    for _ in range(7):
        rows.append(tuple(rows[-1][_P1[x]] for x in range(10)))
    return tuple(rows)


_P: Final = _permutations()
_INV: Final = tuple(next(k for k in range(10) if _D[j][k] == 0) for j in range(10))


def verhoeff_ok(digits: str) -> bool:
    """True when the last digit is the Verhoeff check digit of the others."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[i % 8][ord(ch) - _ASCII_ZERO]]
    return c == 0


def verhoeff_digit(digits: str) -> int:
    """The Verhoeff check digit to append to `digits`."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[(i + 1) % 8][ord(ch) - _ASCII_ZERO]]
    return _INV[c]


_SNOMED_SHAPE: Final = re.compile(r"[1-9][0-9]{5,17}")
SnomedProblem = Literal["format", "partition", "verhoeff"]


@lru_cache(maxsize=4096)
def snomed_problem(value: str) -> SnomedProblem | None:
    """Why `value` is not a SNOMED CT concept id, or None when it is one.

    The partition identifier (3rd and 2nd digits from the end) is 00 for short-format and 10 for
    long-format concept ids; other partitions are descriptions or relationships, which the
    receiver rejects in code fields. Cached because real traffic uses a few hundred codes.
    """
    if _SNOMED_SHAPE.fullmatch(value) is None:
        return "format"
    if value[-3:-1] not in ("00", "10"):
        return "partition"
    if not verhoeff_ok(value):
        return "verhoeff"
    return None
