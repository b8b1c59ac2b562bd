"""Why vaxflow refuses what NHS England takes: each refusal class pointed at decision 0003.

The table in docs/conformance.md is generated, so its explanation column is generated too, from
the rule id vaxflow gave (field.rule) and the mutation. A class with no entry here is printed as
"NOT EXPLAINED", which is the signal to decide it (issue 18): canonicalise it, or add the reason
to docs/decisions/0003-validation-strictness.md and a line here.
"""

from __future__ import annotations

from typing import Final

_ADR: Final = "0003"

# By rule suffix (the part after the field name), for every column. The texts name sections of
# decision 0003 as they read before and after issue 18's rule changes.
_BY_RULE: Final[dict[str, str]] = {
    "whitespace": f"{_ADR} whitespace at either end of a value is refused (' 1' could be 1 or a lost 10)",
    "control_char": f"{_ADR} Forbidden characters, everywhere: every value is written into a line of a file",
    "max_length": f"{_ADR} Length caps",
    "year": f"{_ADR} Years before 1000: sentinels; written as YYYYMMDD the receiver would refuse them",
}

# By full rule id, where one column's format rule is deliberately narrower than the receiver.
_BY_FIELD_RULE: Final[dict[str, str]] = {
    "DOSE_SEQUENCE.format": f"{_ADR} Stricter than the receiver: digits its int() reads that no producer means",
    "DOSE_AMOUNT.format": f"{_ADR} Stricter than the receiver: numbers its Decimal() reads that no producer means",
    "NHS_NUMBER.format": f"{_ADR} Stricter than the receiver: ten ASCII digits (isdigit alone takes other scripts)",
    "DATE_AND_TIME.offset": f"{_ADR} DATE_AND_TIME: instants where London was neither +00:00 nor +01:00 are refused",
    "DATE_AND_TIME.format": f"{_ADR} DATE_AND_TIME suffix = offset: the forms listed there as refused",
    "PERSON_DOB.format": f"{_ADR} Dates in a date column are YYYYMMDD or zero-padded YYYY-MM-DD",
    "EXPIRY_DATE.format": f"{_ADR} Dates in a date column are YYYYMMDD or zero-padded YYYY-MM-DD",
    "RECORDED_DATE.format": f"{_ADR} Dates in a date column are YYYYMMDD or zero-padded YYYY-MM-DD",
}


def explain(rules: str) -> str:
    """The explanation for a refusal with these rule ids ("A.x,B.y"), or NOT EXPLAINED."""
    found = []
    for rule in filter(None, rules.split(",")):
        text = _BY_FIELD_RULE.get(rule) or _BY_RULE.get(rule.partition(".")[2])
        found.append(text or f"NOT EXPLAINED ({rule})")
    return "; ".join(dict.fromkeys(found)) or "NOT EXPLAINED"
