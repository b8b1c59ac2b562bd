"""Single-field mutations of every column: the inputs on which vaxflow and NHS England may differ.

Each mutation is a pure function of the column's current value (and nothing else), so a run is
reproducible from its seed and a unit test can pin what each one produces. Generic mutations
apply to every column (whitespace of every kind, length, case, look-alike digits, quoting
characters); specific ones probe the formats (dates, date-times, dose fields, codes, flags).
A mutation that would not change the value returns None and is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from schemas.columns import COLUMNS
from schemas.dates import LONDON

Mutate = Callable[[str], str | None]

NBSP: Final = "\u00a0"
IDEOGRAPHIC_SPACE: Final = "\u3000"
ZERO_WIDTH_SPACE: Final = "\u200b"
_FULLWIDTH: Final = str.maketrans("0123456789", "０１２３４５６７８９")
_ARABIC_INDIC: Final = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")

# Columns whose values name a patient: examples in reports show only the mutation's name for them.
PATIENT_COLUMNS: Final = frozenset({"NHS_NUMBER", "PERSON_FORENAME", "PERSON_SURNAME", "PERSON_DOB", "PERSON_POSTCODE"})
DATE_COLUMNS: Final = ("PERSON_DOB", "RECORDED_DATE", "EXPIRY_DATE")
CODE_COLUMNS: Final = (
    "SITE_OF_VACCINATION_CODE",
    "ROUTE_OF_VACCINATION_CODE",
    "DOSE_UNIT_CODE",
    "INDICATION_CODE",
    "VACCINATION_PROCEDURE_CODE",
    "VACCINE_PRODUCT_CODE",
)


class Mutation(NamedTuple):
    column: str
    name: str
    mutate: Mutate


def _middle(value: str, insert: str) -> str | None:
    if len(value) < 2:
        return None
    k = len(value) // 2
    return value[:k] + insert + value[k:]


def _changed(mutate: Mutate) -> Mutate:
    def guarded(value: str) -> str | None:
        out = mutate(value)
        return None if out is None or out == value else out

    return guarded


def _const(new: str) -> Mutate:
    return lambda _value: new


def _double_space(value: str) -> str | None:
    if " " in value:
        return value.replace(" ", "  ", 1)
    return _middle(value, "  ")


def _pad(length: int) -> Mutate:
    return lambda value: (value + "X" * length)[: max(length, len(value) + 1)] if len(value) < length else None


GENERIC: Final[tuple[tuple[str, Mutate], ...]] = (
    ("empty", _const("")),
    ("space-only", _const(" ")),
    ("leading-space", lambda v: " " + v if v else None),
    ("trailing-space", lambda v: v + " " if v else None),
    ("double-space-inside", _double_space),
    ("nbsp-inside", lambda v: v.replace(" ", NBSP, 1) if " " in v else _middle(v, NBSP)),
    ("nbsp-trailing", lambda v: v + NBSP if v else None),
    ("ideographic-space-inside", lambda v: _middle(v, IDEOGRAPHIC_SPACE)),
    ("zero-width-space-inside", lambda v: _middle(v, ZERO_WIDTH_SPACE)),
    ("tab-inside", lambda v: _middle(v, "\t")),
    ("newline-inside", lambda v: _middle(v, "\n")),
    ("quote-inside", lambda v: _middle(v, '"')),
    ("pipe-inside", lambda v: _middle(v, "|")),
    ("lowercase", lambda v: v.lower()),
    ("uppercase", lambda v: v.upper()),
    ("fullwidth-digits", lambda v: v.translate(_FULLWIDTH)),
    ("arabic-indic-digits", lambda v: v.translate(_ARABIC_INDIC)),
    ("length-36", _pad(36)),
    ("length-101", _pad(101)),
    ("length-181", _pad(181)),
    ("length-256", _pad(256)),
    ("length-1000", _pad(1000)),
)


def _ymd(value: str) -> str | None:
    """YYYYMMDD of a date column's value in either accepted spelling, or None."""
    digits = value.replace("-", "")
    return digits if len(digits) == 8 and digits.isascii() and digits.isdigit() else None


def _date(form: Callable[[str], str]) -> Mutate:
    def apply(value: str) -> str | None:
        ymd = _ymd(value)
        return None if ymd is None else form(ymd)

    return apply


DATES: Final[tuple[tuple[str, Mutate], ...]] = (
    ("year-0001", _const("00010101")),
    ("year-0999", _const("09990101")),
    ("iso-year-0999", _const("0999-01-01")),
    ("iso-year-0001", _const("0001-01-01")),
    ("year-1000", _const("10000101")),
    ("iso-form", _date(lambda d: f"{d[:4]}-{d[4:6]}-{d[6:]}")),
    ("iso-with-time", _date(lambda d: f"{d[:4]}-{d[4:6]}-{d[6:]}T00:00:00+00:00")),
    ("compact-with-time", _date(lambda d: f"{d}T000000")),
    ("slashes", _date(lambda d: f"{d[:4]}/{d[4:6]}/{d[6:]}")),
    ("two-digit-year", _date(lambda d: d[2:])),
    ("signed-year", _date(lambda d: "+" + d)),
    ("five-digit-year", _date(lambda d: "0" + d)),
    ("day-31-feb", _date(lambda d: d[:4] + "0231")),
    ("month-13", _date(lambda d: d[:4] + "13" + d[6:])),
    ("iso-unpadded", _date(lambda d: f"{int(d[:4])}-{int(d[4:6])}-{int(d[6:])}")),
    ("far-future", _const("29991231")),
)

# Fixed instants keep the date-time mutations deterministic and safely in the past: one in GMT,
# one in BST, so that the 00/01 suffixes and the offsets are probed in both halves of the year.
_WINTER: Final = datetime(2024, 1, 15, 10, 30, 5, tzinfo=UTC)
_SUMMER: Final = datetime(2024, 7, 15, 10, 30, 5, tzinfo=UTC)


def _instant_forms(season: str, t: datetime) -> tuple[tuple[str, Mutate], ...]:
    c = t.strftime("%Y%m%dT%H%M%S")
    iso = t.strftime("%Y-%m-%dT%H:%M:%S")
    local = (t + timedelta(hours=1)).strftime("%Y%m%dT%H%M%S") if season == "summer" else c
    return (
        (f"{season}-suffix-00", _const(c + "00")),
        (f"{season}-suffix-01-local", _const(local + "01")),
        (f"{season}-no-suffix", _const(c)),
        (f"{season}-suffix-02", _const(c + "02")),
        (f"{season}-iso-Z", _const(iso + "Z")),
        (f"{season}-iso-+00:00", _const(iso + "+00:00")),
        (f"{season}-iso-+0000", _const(iso + "+0000")),
        (f"{season}-iso-+01:00", _const((t + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S") + "+01:00")),
        (f"{season}-iso--00:00", _const(iso + "-00:00")),
        (f"{season}-iso-+05:30", _const((t + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S") + "+05:30")),
        (f"{season}-iso-naive", _const(iso)),
        (f"{season}-iso-fraction-Z", _const(iso + ".123Z")),
        (f"{season}-iso-fraction-+00:00", _const(iso + ".123456+00:00")),
        (f"{season}-compact-fraction", _const(c + ".5")),
        (f"{season}-lowercase-t", _const(c.replace("T", "t") + "00")),
        (f"{season}-space-separator", _const(iso.replace("T", " ") + "+00:00")),
        (f"{season}-date-only", _const(c[:8])),
    )


DATE_TIMES: Final[tuple[tuple[str, Mutate], ...]] = (
    *_instant_forms("winter", _WINTER),
    *_instant_forms("summer", _SUMMER),
    ("year-0999", _const("09990115T10300500")),
    ("iso-year-0999", _const("0999-01-15T10:30:05+00:00")),
    ("hour-24", _const("20240115T24000000")),
    ("far-future", _const("29991231T00000000")),
)

DOSE_SEQUENCES: Final[tuple[tuple[str, Mutate], ...]] = tuple(
    (f"value {v!r}", _const(v)) for v in ("1", "9", "01", "+1", "-1", "0", "10", "1.0", "1e0", "09", "abc", "²")
)

DOSE_AMOUNTS: Final[tuple[tuple[str, Mutate], ...]] = tuple(
    (f"value {v!r}", _const(v))
    for v in (
        "0.5",
        ".5",
        "5.",
        "-0.5",
        "+0.5",
        "1e-1",
        "1E1",
        "0.50",
        "00.5",
        "0",
        "-0",
        "NaN",
        "Infinity",
        "1_0",
        "0,5",
        "0x1",
        "1/2",
        "12345678901234567890.5",
    )
)

FLAGS: Final[dict[str, tuple[str, ...]]] = {
    "ACTION_FLAG": ("new", "New", "nEw", "CREATE", "update", "delete", "NEW\u00a0"),
    "PRIMARY_SOURCE": ("true", "False", "TRUE", "Y", "1", "yes", "ﬁ"),
    "PERSON_GENDER_CODE": ("0", "1", "2", "9", "3", "U", "male", "Male", "female", "other", "unknown", "01"),
    "NHS_NUMBER": ("999 123 4567",),
}


SNOMED: Final[tuple[tuple[str, Mutate], ...]] = (
    ("leading-zero", lambda v: "0" + v if v else None),
    ("check-digit-flipped", lambda v: v[:-1] + str((int(v[-1]) + 1) % 10) if v[-1:] in "0123456789" and v else None),
    ("navu", _const("NAVU")),
    ("letters", _const("abc")),
)


def clock_mutations(now: datetime) -> tuple[Mutation, ...]:
    """Dates and date-times at the edge of "not in the future", relative to the run's `now`.

    London's and UTC's dates differ between 23:00 and 24:00 UTC in summer; run with such a `now`
    (--now) to see whether a date equal to London's today is still taken by the receiver.
    """
    london = now.astimezone(LONDON).date()
    utc = now.astimezone(UTC).date()
    dates = (
        ("today-london", london.strftime("%Y%m%d")),
        ("today-utc", utc.strftime("%Y%m%d")),
        ("tomorrow-london", (london + timedelta(days=1)).strftime("%Y%m%d")),
    )
    instants = (
        ("now-minus-1s", now - timedelta(seconds=1)),
        ("now-plus-60s", now + timedelta(seconds=60)),
    )
    found = [
        Mutation(column, name, _const(value)) for column in ("PERSON_DOB", "RECORDED_DATE") for name, value in dates
    ]
    found += [
        Mutation("DATE_AND_TIME", name, _const(t.astimezone(UTC).strftime("%Y%m%dT%H%M%S") + "00"))
        for name, t in instants
    ]
    return tuple(found)


def column_mutations(column: str) -> tuple[Mutation, ...]:
    """Every mutation the harness applies to `column`, generic first, in a fixed order."""
    found: list[tuple[str, Mutate]] = list(GENERIC)
    if column in DATE_COLUMNS:
        found += DATES
    if column == "DATE_AND_TIME":
        found += DATE_TIMES
    if column == "DOSE_SEQUENCE":
        found += DOSE_SEQUENCES
    if column == "DOSE_AMOUNT":
        found += DOSE_AMOUNTS
    if column in ("VACCINATION_PROCEDURE_CODE", "VACCINE_PRODUCT_CODE"):
        found += SNOMED
    found += [(f"value {v!r}", _const(v)) for v in FLAGS.get(column, ())]
    return tuple(Mutation(column, name, _changed(mutate)) for name, mutate in found)


def all_mutations() -> tuple[Mutation, ...]:
    return tuple(m for column in COLUMNS for m in column_mutations(column))


def mutated_records(
    record: dict[str, str], mutations: tuple[Mutation, ...]
) -> Iterator[tuple[Mutation, dict[str, str]]]:
    """Each mutation applied to a copy of `record`, skipping those that would not change it."""
    for mutation in mutations:
        new = mutation.mutate(record.get(mutation.column, ""))
        if new is not None:
            yield mutation, {**record, mutation.column: new}
