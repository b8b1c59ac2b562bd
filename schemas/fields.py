"""The validation rules, in one table: per column, when it is mandatory, its format, its length cap.

Everything the validator enforces about a single value is read from `COLUMN_RULES` and
`ENVELOPE_RULES`, and every reason it can give is a rule id listed here with its message, so a
reviewer can check the whole contract against the spec digest (section c) in one screen, and the
documentation table in docs/event-contract.md is generated from the same data.

Length caps beyond the two the receiver enforces (35 surname, 180 forename) are ours, and only
where a longer value would break something (the identifier pair, formatted values, our own
`source_system`); why each was chosen is in docs/decisions/0003-validation-strictness.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from schemas.columns import COLUMNS
from schemas.record import Reason


class Mandate(enum.Enum):
    """When a field must be non-empty. DELETE rows need only the identifier and the action."""

    OPTIONAL = "optional"
    NEW_UPDATE = "NEW/UPDATE"
    ALWAYS = "always"


class Kind(enum.Enum):
    """The format family of a value; each family has its own parser and its own rule ids."""

    TEXT = "free text"
    DATE = "date"
    DATETIME = "date-time"
    NHS_NUMBER = "NHS number"
    SNOMED = "SNOMED CT concept id"
    GENDER = "gender code"
    BOOLEAN = "boolean"
    DOSE_SEQUENCE = "dose sequence"
    DECIMAL = "decimal"
    ACTION_FLAG = "action flag"
    VACCINE_TYPE = "vaccine type"
    ODS_CODE = "ODS code"
    CODE = "FHIR code"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One row of the table. `max_length` counts characters (code points), as the receiver does.

    For formatted kinds the cap is the longest valid spelling, so exceeding it is reported as
    the format rule; it still bounds the value in DELETE rows, whose formats go unchecked.
    """

    name: str
    mandate: Mandate
    kind: Kind
    max_length: int | None  # None: no cap of its own (the 64 KiB event cap still bounds it)
    not_future: bool = False

    @property
    def cap(self) -> int:
        """`max_length`, or a number no value can reach when there is none."""
        return UNCAPPED if self.max_length is None else self.max_length

    @property
    def rules(self) -> tuple[str, ...]:
        """Rule suffixes this field can fail, in the order they are tried (first failure wins)."""
        if self.kind in (Kind.VACCINE_TYPE, Kind.ODS_CODE):
            return KIND_RULES[self.kind]  # looked up in configuration, so any other value is unknown
        found = ["mandatory"] if self.mandate is not Mandate.OPTIONAL else []
        found += ["control_char", "whitespace"]
        if self.kind in FREE_FORM and self.max_length is not None:
            found.append("max_length")  # longer values of other kinds fail their format rule
        found.extend(KIND_RULES[self.kind])
        if self.not_future:
            found.append("future")
        return tuple(found)


# Above the 64 KiB event cap, so a column without a cap of its own never fails a length check.
UNCAPPED: Final = 1 << 20

# Kinds whose format does not bound characters or length, so every generic check applies to them.
FREE_FORM: Final = frozenset({Kind.TEXT, Kind.CODE})

# Rule suffixes and messages. The message is appended to the field name; it never quotes the value.
GENERIC_MESSAGES: Final[dict[str, str]] = {
    "control_char": "contains a control character, line break or unpaired surrogate",
    "whitespace": "has leading or trailing whitespace",
    "mandatory": "is mandatory and is empty or absent",
    "max_length": "is longer than {max_length} characters",
    "future": "is in the future",
}

FORMAT_MESSAGES: Final[dict[Kind, str]] = {
    Kind.DATE: "is not a real date written YYYYMMDD (or YYYY-MM-DD)",
    Kind.DATETIME: (
        "is not a real date-time written YYYYMMDDThhmmss with optional suffix 00 or 01 "
        "(or ISO 8601 with a UTC offset, at most six fraction digits)"
    ),
    Kind.NHS_NUMBER: "is not exactly 10 digits",
    Kind.SNOMED: "is not a SNOMED CT concept id (6 to 18 digits, first digit not 0)",
    Kind.GENDER: "is not one of 0, 1, 2, 9 or the lowercase words male, female, other, unknown",
    Kind.BOOLEAN: "is not TRUE or FALSE (any letter case)",
    Kind.DOSE_SEQUENCE: "is not a whole number from 1 to 9 (leading zeros and + allowed)",
    Kind.DECIMAL: "is not a decimal number such as 0.5, 5. or 1e-1 (exponent at most 20 either way)",
    Kind.ACTION_FLAG: "is not NEW, UPDATE or DELETE (any letter case)",
    Kind.CODE: "is not a FHIR code: it has two whitespace characters in a row",
}

KIND_RULES: Final[dict[Kind, tuple[str, ...]]] = {
    Kind.TEXT: (),
    Kind.DATE: ("format", "year"),
    Kind.DATETIME: ("format", "offset"),
    Kind.NHS_NUMBER: ("format", "mod11"),
    Kind.SNOMED: ("format", "partition", "verhoeff"),
    Kind.GENDER: ("format",),
    Kind.BOOLEAN: ("format",),
    Kind.DOSE_SEQUENCE: ("format",),
    Kind.DECIMAL: ("format",),
    Kind.ACTION_FLAG: ("format", "permission"),
    Kind.VACCINE_TYPE: ("unknown",),
    Kind.ODS_CODE: ("permission",),
    Kind.CODE: ("format",),
}

SPECIFIC_MESSAGES: Final[dict[str, str]] = {
    "year": "has a year before 1000, which the receiver cannot read (it needs four digits)",
    "mod11": "fails the NHS number mod-11 check digit",
    "partition": "has a SNOMED CT partition other than 00 or 10 (not a concept id)",
    "verhoeff": "fails the SNOMED CT Verhoeff check digit",
    "offset": "is at an instant when Europe/London was neither UTC+00:00 nor UTC+01:00",
    "permission": "is an action the sender may not perform for this vaccine type",
    "unknown": "is not a vaccine type the receiver accepts",
}
# The sender's permission failure reads differently from the action's, though the suffix is shared.
ODS_PERMISSION_MESSAGE: Final = "has no create, update or delete permission for this vaccine type"

_O, _NU, _A = Mandate.OPTIONAL, Mandate.NEW_UPDATE, Mandate.ALWAYS
# UNIQUE_ID and UNIQUE_ID_URI: the receiver keys its store on "{URI}#{ID}" (a DynamoDB index
# partition key, at most 2048 bytes); 255 characters each (at most 4 UTF-8 bytes a character)
# keeps the pair within it. Decision 0003 says why other free text has no cap.
IDENTIFIER_MAX: Final = 255
NO_CAP: Final = None

COLUMN_RULES: Final[tuple[FieldRule, ...]] = (
    FieldRule("NHS_NUMBER", _O, Kind.NHS_NUMBER, 10),
    FieldRule("PERSON_FORENAME", _NU, Kind.TEXT, 180),
    FieldRule("PERSON_SURNAME", _NU, Kind.TEXT, 35),
    FieldRule("PERSON_DOB", _NU, Kind.DATE, 10, not_future=True),
    FieldRule("PERSON_GENDER_CODE", _NU, Kind.GENDER, 7),
    FieldRule("PERSON_POSTCODE", _NU, Kind.TEXT, NO_CAP),
    FieldRule("DATE_AND_TIME", _NU, Kind.DATETIME, 32, not_future=True),
    FieldRule("SITE_CODE", _NU, Kind.TEXT, NO_CAP),
    FieldRule("SITE_CODE_TYPE_URI", _NU, Kind.TEXT, NO_CAP),
    FieldRule("UNIQUE_ID", _A, Kind.TEXT, IDENTIFIER_MAX),
    FieldRule("UNIQUE_ID_URI", _A, Kind.TEXT, IDENTIFIER_MAX),
    FieldRule("ACTION_FLAG", _A, Kind.ACTION_FLAG, 6),
    FieldRule("PERFORMING_PROFESSIONAL_FORENAME", _O, Kind.TEXT, NO_CAP),
    FieldRule("PERFORMING_PROFESSIONAL_SURNAME", _O, Kind.TEXT, NO_CAP),
    FieldRule("RECORDED_DATE", _NU, Kind.DATE, 10, not_future=True),
    FieldRule("PRIMARY_SOURCE", _NU, Kind.BOOLEAN, 5),
    FieldRule("VACCINATION_PROCEDURE_CODE", _NU, Kind.SNOMED, 18),
    FieldRule("VACCINATION_PROCEDURE_TERM", _O, Kind.TEXT, NO_CAP),
    FieldRule("DOSE_SEQUENCE", _O, Kind.DOSE_SEQUENCE, 20),
    FieldRule("VACCINE_PRODUCT_CODE", _O, Kind.SNOMED, 18),
    FieldRule("VACCINE_PRODUCT_TERM", _O, Kind.TEXT, NO_CAP),
    FieldRule("VACCINE_MANUFACTURER", _O, Kind.TEXT, NO_CAP),
    FieldRule("BATCH_NUMBER", _O, Kind.TEXT, NO_CAP),
    FieldRule("EXPIRY_DATE", _O, Kind.DATE, 10),
    FieldRule("SITE_OF_VACCINATION_CODE", _O, Kind.CODE, NO_CAP),
    FieldRule("SITE_OF_VACCINATION_TERM", _O, Kind.TEXT, NO_CAP),
    FieldRule("ROUTE_OF_VACCINATION_CODE", _O, Kind.CODE, NO_CAP),
    FieldRule("ROUTE_OF_VACCINATION_TERM", _O, Kind.TEXT, NO_CAP),
    FieldRule("DOSE_AMOUNT", _O, Kind.DECIMAL, 20),
    FieldRule("DOSE_UNIT_CODE", _O, Kind.CODE, NO_CAP),
    FieldRule("DOSE_UNIT_TERM", _O, Kind.TEXT, NO_CAP),
    FieldRule("INDICATION_CODE", _O, Kind.CODE, NO_CAP),
    FieldRule("LOCATION_CODE", _NU, Kind.TEXT, NO_CAP),
    FieldRule("LOCATION_CODE_TYPE_URI", _NU, Kind.TEXT, NO_CAP),
)

ENVELOPE_RULES: Final[tuple[FieldRule, ...]] = (
    FieldRule("vaccine_type", _A, Kind.VACCINE_TYPE, 20),
    FieldRule("sender_ods", _A, Kind.ODS_CODE, 20),
    FieldRule("source_system", _A, Kind.TEXT, 100),
)

# Reasons about the event as a whole (field "event" or the envelope field named in the rule).
DECODE_MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "event.too_large": ("event", "is larger than the maximum event size"),
    "event.json": ("event", "is not well-formed UTF-8 JSON"),
    "event.type": ("event", "is not a JSON object with the fields of the event contract"),
    "event.unknown_field": ("event", "has a field that is not in the event contract"),
    "record.unknown_field": ("record", "has a field that is not one of the 34 spec columns"),
    "schema_version.unsupported": ("schema_version", "is not a schema version this validator accepts"),
    "extended_attributes.unknown_field": (
        "extended_attributes",
        "has an attribute with a field other than ATTRIBUTE_ID, ATTRIBUTE_DISPLAYED_TEXT, ATTRIBUTE_VALUE and"
        " RECORDED_DATE",
    ),
    "extended_attributes.type": (
        "extended_attributes", "must be a JSON array of objects whose values are JSON strings"
    ),
    "event.internal": ("event", "could not be validated because of an internal error"),
}

assert tuple(rule.name for rule in COLUMN_RULES) == COLUMNS, "the rule table must follow file order"


def message(rule: FieldRule, suffix: str) -> str:
    """The human message for one rule of one field: field name first, never the value."""
    if suffix == "format":
        text = FORMAT_MESSAGES[rule.kind]
    elif suffix == "permission" and rule.kind is Kind.ODS_CODE:
        text = ODS_PERMISSION_MESSAGE
    elif suffix in GENERIC_MESSAGES:
        text = GENERIC_MESSAGES[suffix].format(max_length=rule.max_length)
    else:
        text = SPECIFIC_MESSAGES[suffix]
    return f"{rule.name} {text}"


def _build_reasons() -> dict[tuple[str, str], Reason]:
    """Every reason is built once here: they are immutable, so results can share them."""
    built: dict[tuple[str, str], Reason] = {}
    for rule in (*COLUMN_RULES, *ENVELOPE_RULES):
        for suffix in rule.rules:
            built[rule.name, suffix] = Reason(
                field=rule.name, rule=f"{rule.name}.{suffix}", message=message(rule, suffix)
            )
    for rule_id, (field, text) in DECODE_MESSAGES.items():
        built[field, rule_id.split(".", 1)[1]] = Reason(field=field, rule=rule_id, message=f"{field} {text}")
    type_names = (*COLUMNS, "vaccine_type", "sender_ods", "source_system", "received_at", "schema_version")
    for name in type_names:
        kind = "an RFC 3339 date-time with offset" if name == "received_at" else "a JSON string"
        if name == "schema_version":
            kind = "a JSON integer"
        built[name, "type"] = Reason(field=name, rule=f"{name}.type", message=f"{name} must be {kind}")
    for name in ("vaccine_type", "sender_ods", "source_system", "record"):
        built[name, "missing"] = Reason(field=name, rule=f"{name}.missing", message=f"{name} is required and is absent")
    built["record", "type"] = Reason(
        field="record", rule="record.type", message="record must be a JSON object of the spec columns"
    )
    return built


REASONS: Final[dict[tuple[str, str], Reason]] = _build_reasons()


def reason(field: str, suffix: str) -> Reason:
    """The one shared Reason for a field and rule suffix; KeyError means a rule missing from the table."""
    return REASONS[field, suffix]


def all_rule_ids() -> list[str]:
    """Every rule id the validator can emit, for documentation and for tests of completeness."""
    return sorted({r.rule for r in REASONS.values()})
