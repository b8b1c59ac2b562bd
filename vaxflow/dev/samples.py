"""Realistic synthetic vaccination events, valid by construction, and ways to break them.

The load generator, the benchmarks and the tests all need traffic that looks like a GP or
school-service feed: codes that pass the receiver's checks, plausible ages per programme, a
spread of senders that hold permission, and some values in the lenient forms producers really
send. NHS numbers are drawn from the 999 range, which NHS England reserves for test data, so a
generated record can never name a real patient.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from schemas.codes import nhs_check_digit
from schemas.dates import LONDON, london_timestamp
from schemas.permissions import Permissions, default_permissions

SEED_VACCINE_TYPES: Final = ("COVID", "FLU", "MMR", "RSV", "HPV", "PERTUSSIS", "MENACWY", "3IN1")


class _Programme:
    """Codes and plausible patient ages for one vaccine type (codes from the spec digest, d)."""

    def __init__(
        self,
        procedures: tuple[str, ...],
        products: tuple[tuple[str, str, str], ...],
        ages: tuple[int, int],
        dose: str = "0.5",
    ) -> None:
        self.procedures = procedures
        self.products = products  # (code, term, manufacturer)
        self.ages = ages
        self.dose = dose


_PROGRAMMES: Final[dict[str, _Programme]] = {
    "COVID": _Programme(
        ("1362591000000103", "1324681000000101", "1324691000000104"),
        (("43111411000001101", "COVID-19 mRNA vaccine", "Pfizer"),
         ("42985911000001104", "COVID-19 mRNA vaccine", "Moderna")),
        (50, 95),
    ),
    "FLU": _Programme(
        ("985151000000100", "985171000000109", "884861000000100", "884881000000109"),
        (("43207411000001105", "Cell-based trivalent influenza vaccine", "Seqirus"),
         ("45175511000001104", "Vaxigrip trivalent influenza vaccine", "Sanofi"),
         ("43208811000001106", "Fluenz trivalent nasal spray", "AstraZeneca")),
        (2, 90),
    ),
    "MMR": _Programme(
        ("38598009", "170433008", "308081000000105", "170431005", "170432003"),
        (("34925111000001104", "Priorix vaccine", "GlaxoSmithKline UK Ltd"),
         ("13968211000001108", "M-M-RVAXPRO vaccine", "Merck Sharp & Dohme")),
        (1, 25),
    ),
    "RSV": _Programme(
        ("1303503001",),
        (("42605811000001109", "Abrysvo vaccine", "Pfizer"), ("42223111000001107", "Arexvy vaccine", "GSK")),
        (75, 80),
    ),
    "HPV": _Programme(
        ("761841000",),
        (("33493111000001108", "Gardasil 9 vaccine", "Merck Sharp & Dohme"),
         ("10880211000001104", "Gardasil vaccine", "Merck Sharp & Dohme")),
        (12, 25),
    ),
    "PERTUSSIS": _Programme(
        ("956951000000104",),
        (("42707511000001109", "Pertussis-containing vaccine", "Sanofi"),
         ("26267211000001100", "Pertussis-containing vaccine", "GSK")),
        (18, 45),
    ),
    "MENACWY": _Programme(
        ("871874000",),
        (("39779611000001104", "MenQuadfi vaccine", "Sanofi"), ("17188711000001105", "Menveo vaccine", "GSK"),
         ("20517811000001104", "Nimenrix vaccine", "Pfizer")),
        (13, 25),
    ),
    "3IN1": _Programme(
        ("414619005", "866227002"), (("7374511000001107", "Revaxis vaccine", "Sanofi"),), (13, 19)
    ),
    "MMRV": _Programme(
        ("432636005", "433733003"),
        (("45480711000001107", "ProQuad vaccine", "Merck Sharp & Dohme"),
         ("45525711000001102", "Priorix Tetra vaccine", "GSK")),
        (1, 6),
    ),
    "SHINGLES": _Programme(
        ("722215002", "1326111000000107"),
        (("39655511000001105", "Shingles vaccine", "GSK"), ("38737511000001105", "Shingles vaccine", "GSK")),
        (65, 80),
    ),
    "PNEUMOCOCCAL": _Programme(
        ("247631000000101",),
        (("16649411000001104", "Pneumococcal vaccine", "Pfizer"), ("40600011000001101", "Pneumococcal vaccine", "MSD")),
        (65, 90),
    ),
    "MENB": _Programme(("720539004", "516301000000101"), (), (0, 2)),
    "BCG": _Programme(("42284007", "429069001"), (), (0, 16)),
    "HEPB": _Programme(("170370000", "170373003"), (), (0, 60)),
    "HIB": _Programme(("428975001", "712833000"), (), (0, 2)),
    "HIBMENC": _Programme(("428975001",), (), (1, 2)),
    "ROTAVIRUS": _Programme(("868631000000102", "415354003"), (), (0, 1), dose="1.5"),
    "4IN1": _Programme(("868273007", "247821000000102"), (), (3, 5)),
    "6IN1": _Programme(("1082441000000108", "1162640003"), (), (0, 1)),
}  # fmt: skip

_FORENAMES: Final = (
    "OLIVIA", "AMELIA", "ISLA", "AVA", "MIA", "NOAH", "OLIVER", "GEORGE", "ARTHUR", "MUHAMMAD",
    "LEO", "HARRY", "FREYA", "SOPHIA", "GRACE", "JACK", "THOMAS", "EMILY", "PRIYA", "SABINA",
)  # fmt: skip
_SURNAMES: Final = (
    "SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "WILSON", "JOHNSON", "DAVIES", "PATEL", "WRIGHT",
    "O'REILLY", "EVANS", "THOMAS", "ROBERTS", "KHAN", "WALKER", "GREIR", "HUGHES", "GREEN", "HALL",
)  # fmt: skip
_NON_ASCII_FORENAMES: Final = ("ZOË", "JOSÉ", "RENÉE", "BJÖRN", "SIÂN")
_PSEUDO_POSTCODES: Final = ("ZZ99 3VZ", "ZZ99 3WZ", "ZZ99 3CZ")
_ODS_URI: Final = "https://fhir.nhs.uk/Id/ods-organization-code"
_URN_URI: Final = "https://fhir.hl7.org.uk/Id/urn-school-number"
_SITES: Final = (
    ("368208006", "Left upper arm structure (body structure)"),
    ("368209003", "Right upper arm structure (body structure)"),
    ("61396006", "Left thigh structure (body structure)"),
)
_NASAL: Final = ("279549004", "Nasal cavity structure (body structure)", "46713006", "Nasal route (qualifier value)")
_LETTERS: Final = "ABCDEFGHJKLMNPRSTUWXYZ"


def synthetic_nhs_number(rng: random.Random) -> str:
    """A mod-11-valid NHS number in the 999 test range."""
    while True:
        first_nine = f"999{rng.randrange(10**6):06d}"
        check = nhs_check_digit(first_nine)
        if check is not None:
            return f"{first_nine}{check}"


def _postcode(rng: random.Random) -> str:
    if rng.random() < 0.02:
        return rng.choice(_PSEUDO_POSTCODES)
    area = "".join(rng.choices(_LETTERS, k=rng.choice((1, 2))))
    return f"{area}{rng.randrange(1, 30)} {rng.randrange(10)}{''.join(rng.choices(_LETTERS, k=2))}"


def _site_ods(rng: random.Random) -> str:
    return f"{rng.choice(_LETTERS)}{rng.randrange(10**5):05d}"


def _birth_date(rng: random.Random, when: date, ages: tuple[int, int]) -> date:
    days = rng.randrange(ages[0] * 365, (ages[1] + 1) * 365)
    return when - timedelta(days=max(days, 1))


def make_valid_record(
    rng: random.Random,
    vaccine_type: str,
    *,
    now: datetime | None = None,
    action: str = "NEW",
    lenient: float = 0.0,
) -> dict[str, str]:
    """All 34 columns of one valid event for `vaccine_type`, vaccinated in the 30 days before `now`.

    With probability `lenient` per field, a value takes a non-canonical form the validator
    accepts and rewrites (lowercase action and boolean, gender words, ISO dates, `.5`, no
    DATE_AND_TIME suffix), as real producers send them.
    """
    programme = _PROGRAMMES[vaccine_type.upper()]
    now = now or datetime.now(UTC)

    def loose() -> bool:
        return rng.random() < lenient

    # A live feed: most events from the last few hours, a tail of late entries up to 30 days.
    age = rng.expovariate(1 / 3600) if rng.random() < 0.8 else rng.uniform(0, 30 * 86400)
    given = now - timedelta(seconds=60 + int(min(age, 30 * 86400)))
    local_day = given.astimezone(LONDON).date()
    dob = _birth_date(rng, local_day, programme.ages)
    procedure = rng.choice(programme.procedures)
    nasal = procedure in ("884861000000100", "884881000000109")
    product = rng.choice(programme.products) if programme.products else ("", "", "")
    site, site_term = (_NASAL[0], _NASAL[1]) if nasal else rng.choice(_SITES)
    route, route_term = (_NASAL[2], _NASAL[3]) if nasal else ("78421000", "Intramuscular route (qualifier value)")
    dose = "0.2" if nasal else programme.dose
    gender = rng.choice(("1", "2", "2", "1", "0", "9"))
    timestamp = london_timestamp(given)
    if loose():
        timestamp = given.strftime("%Y%m%dT%H%M%S")  # no suffix: the receiver reads UTC
    elif loose():
        timestamp = given.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    school = rng.random() < 0.2
    forename = rng.choice(_NON_ASCII_FORENAMES) if rng.random() < 0.03 else rng.choice(_FORENAMES)
    return {
        "NHS_NUMBER": "" if rng.random() < 0.02 else synthetic_nhs_number(rng),
        "PERSON_FORENAME": forename,
        "PERSON_SURNAME": rng.choice(_SURNAMES),
        "PERSON_DOB": dob.isoformat() if loose() else dob.strftime("%Y%m%d"),
        "PERSON_GENDER_CODE": {"0": "unknown", "1": "male", "2": "female", "9": "other"}[gender] if loose() else gender,
        "PERSON_POSTCODE": _postcode(rng),
        "DATE_AND_TIME": timestamp,
        "SITE_CODE": _site_ods(rng),
        "SITE_CODE_TYPE_URI": _ODS_URI,
        "UNIQUE_ID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "UNIQUE_ID_URI": f"https://{vaccine_type.lower()}.supplier.example/identifiers/vacc",
        "ACTION_FLAG": action.lower() if loose() else action,
        "PERFORMING_PROFESSIONAL_FORENAME": "" if rng.random() < 0.3 else rng.choice(_FORENAMES).title(),
        "PERFORMING_PROFESSIONAL_SURNAME": "" if rng.random() < 0.3 else rng.choice(_SURNAMES).title(),
        "RECORDED_DATE": local_day.isoformat() if loose() else local_day.strftime("%Y%m%d"),
        "PRIMARY_SOURCE": "true" if loose() else "TRUE",
        "VACCINATION_PROCEDURE_CODE": procedure,
        "VACCINATION_PROCEDURE_TERM": f"Administration of {vaccine_type.lower()} vaccine (procedure)",
        "DOSE_SEQUENCE": "" if rng.random() < 0.1 else str(rng.randint(1, 3)),
        "VACCINE_PRODUCT_CODE": product[0],
        "VACCINE_PRODUCT_TERM": product[1],
        "VACCINE_MANUFACTURER": product[2],
        "BATCH_NUMBER": "".join(rng.choices(_LETTERS + "0123456789", k=rng.randint(6, 10))),
        "EXPIRY_DATE": (local_day + timedelta(days=rng.randint(30, 400))).strftime("%Y%m%d"),
        "SITE_OF_VACCINATION_CODE": site,
        "SITE_OF_VACCINATION_TERM": site_term,
        "ROUTE_OF_VACCINATION_CODE": route,
        "ROUTE_OF_VACCINATION_TERM": route_term,
        "DOSE_AMOUNT": dose.removeprefix("0") if loose() else dose,
        "DOSE_UNIT_CODE": "258773002",
        "DOSE_UNIT_TERM": "Milliliter (qualifier value)",
        "INDICATION_CODE": rng.choice(("", "443684005", "310578008")),
        "LOCATION_CODE": f"{rng.randrange(100000, 150000)}" if school else "X99999",
        "LOCATION_CODE_TYPE_URI": _URN_URI if school else _ODS_URI,
    }


def make_event(
    rng: random.Random,
    vaccine_type: str | None = None,
    sender_ods: str | None = None,
    *,
    permissions: Permissions | None = None,
    now: datetime | None = None,
    lenient: float = 0.2,
) -> dict[str, Any]:
    """A valid event (JSON-ready dict) from a sender that holds permission for its action.

    Actions are mostly NEW with some UPDATE and DELETE, as in a daily extract.
    """
    permissions = permissions or default_permissions()
    now = now or datetime.now(UTC)
    vaccine_type = vaccine_type or rng.choice(SEED_VACCINE_TYPES)
    roll = rng.random()
    action = "NEW" if roll < 0.9 else "UPDATE" if roll < 0.98 else "DELETE"
    if sender_ods is None:
        senders = permissions.senders_for(vaccine_type, action)
        if not senders:
            raise ValueError(f"no sender may send {action} for {vaccine_type}")
        sender_ods = rng.choice(senders)
    record = make_valid_record(rng, vaccine_type, now=now, action=action, lenient=lenient)
    received = now - timedelta(seconds=rng.randrange(0, 60))
    return {
        "vaccine_type": vaccine_type,
        "sender_ods": sender_ods,
        "source_system": f"{permissions.suppliers.get(sender_ods, 'unknown').lower()}-feed",
        "received_at": received.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "record": record,
    }


# Attribute ids of the kind suppliers send for COVID and flu (eligibility and risk groups); the
# values are made up, the shape is the contract's (docs/event-contract.md, version 2).
_ATTRIBUTES: Final = (
    ("1324681000000101", "Eligibility: clinical risk group", ("Y", "N")),
    ("1324671000000103", "Eligibility: health or social care worker", ("Y", "N")),
    ("1324691000000104", "Consent given by", ("patient", "parent", "guardian")),
)


def add_extended_attributes(
    rng: random.Random, event: dict[str, Any], *, share: float, permissions: Permissions | None = None
) -> dict[str, Any]:
    """`event` with 1 to 3 extended attributes, for a `share` of the COVID and FLU events whose
    sender NHS England takes extended-attribute files from (C, U and D on COVID); others as they are.
    A DELETE's attributes carry their own RECORDED_DATE (its record need not have one)."""
    permissions = permissions or default_permissions()
    if event.get("vaccine_type") not in ("COVID", "FLU") or rng.random() >= share:
        return event
    if not {"C", "U", "D"} <= permissions.letters(str(event.get("sender_ods")), "COVID"):
        return event
    record = event["record"]
    deleting = str(record.get("ACTION_FLAG", "")).upper() == "DELETE"
    attributes = []
    for attribute_id, text, values in rng.sample(_ATTRIBUTES, rng.randint(1, 3)):
        attribute = {
            "ATTRIBUTE_ID": attribute_id, "ATTRIBUTE_DISPLAYED_TEXT": text, "ATTRIBUTE_VALUE": rng.choice(values)
        }
        if deleting:
            attribute["RECORDED_DATE"] = datetime.now(LONDON).strftime("%Y%m%d")
        attributes.append(attribute)
    return {**event, "extended_attributes": attributes}


Corruption = Callable[[random.Random, dict[str, Any]], None]


def _set(field: str, *values: object) -> Corruption:
    def apply(rng: random.Random, event: dict[str, Any]) -> None:
        event["record"][field] = rng.choice(values)

    return apply


def _flip_last_digit(field: str) -> Corruption:
    def apply(rng: random.Random, event: dict[str, Any]) -> None:
        value = event["record"][field] or "9434765919"
        last = (int(value[-1]) + rng.randint(1, 9)) % 10
        event["record"][field] = f"{value[:-1]}{last}"

    return apply


def _envelope(key: str, *values: str) -> Corruption:
    def apply(rng: random.Random, event: dict[str, Any]) -> None:
        event[key] = rng.choice(values)

    return apply


def _future_dob(rng: random.Random, event: dict[str, Any]) -> None:
    event["record"]["PERSON_DOB"] = (datetime.now(UTC) + timedelta(days=rng.randint(2, 900))).strftime("%Y%m%d")


def _control_char(rng: random.Random, event: dict[str, Any]) -> None:
    field = rng.choice(("PERSON_FORENAME", "PERSON_POSTCODE", "BATCH_NUMBER", "UNIQUE_ID"))
    value = event["record"][field] or "X"
    cut = rng.randrange(len(value) + 1)
    event["record"][field] = value[:cut] + rng.choice(("\n", "\r", "\t", "\x00", "\u2028", "\x85")) + value[cut:]


def _edge_space(rng: random.Random, event: dict[str, Any]) -> None:
    field = rng.choice(("PERSON_SURNAME", "BATCH_NUMBER", "SITE_CODE", "NHS_NUMBER"))
    event["record"][field] = rng.choice((" ", "\u00a0")) + (event["record"][field] or "x")


def _unknown_key(rng: random.Random, event: dict[str, Any]) -> None:
    if rng.random() < 0.5:
        event["record"]["NHS_NUMBR"] = event["record"].pop("NHS_NUMBER")
    else:
        event["priority"] = "high"


CORRUPTIONS: Final[dict[str, Corruption]] = {
    "nhs_mod11": _flip_last_digit("NHS_NUMBER"),
    "nhs_length": _set("NHS_NUMBER", "967496387", "96749 3871", "0"),
    "future_dob": _future_dob,
    "gender": _set("PERSON_GENDER_CODE", "3", "U", "Female", "M"),
    "vaccine_type": _envelope("vaccine_type", "COVID19", "Td-IPV", "FLUENZ"),
    "sender_permission": _envelope("sender_ods", "8J1100001", "ABCDE", "YGM17"),
    "procedure_verhoeff": _flip_last_digit("VACCINATION_PROCEDURE_CODE"),
    "product_code": _set("VACCINE_PRODUCT_CODE", "NAVU", "2622896019", "0123"),
    "dose_sequence": _set("DOSE_SEQUENCE", "10", "0", "-1", "1.0", "abc"),
    "dose_amount": _set("DOSE_AMOUNT", "abc", "NaN", "Infinity", "1_0"),
    "control_char": _control_char,
    "edge_space": _edge_space,
    "surname_length": _set("PERSON_SURNAME", "A" * 36, "B" * 80),
    "mandatory": _set("PERSON_POSTCODE", ""),
    "location": _set("LOCATION_CODE", ""),
    "recorded_date": _set("RECORDED_DATE", "20240230", "20240609T120000", "2024/06/09"),
    "datetime": _set("DATE_AND_TIME", "20240610T18332502", "20240610", "20240610T183325.000"),
    "action": _set("ACTION_FLAG", "create", "DELETE ", ""),
    "primary_source": _set("PRIMARY_SOURCE", "Y", "1", ""),
    "wrong_type": _set("DOSE_SEQUENCE", 1, None, True),
    "unknown_key": _unknown_key,
}


def corrupt(rng: random.Random, event: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
    """A copy of `event` broken in one way (`kind`, or a random one from CORRUPTIONS).

    Each kind is something the validator must reject; together they cover the reason families.
    """
    broken = copy.deepcopy(event)
    if broken["record"].get("ACTION_FLAG", "").upper() == "DELETE":
        broken["record"]["ACTION_FLAG"] = "NEW"  # DELETE rows skip content checks; keep it failing
        if broken["sender_ods"] not in default_permissions().senders_for(broken["vaccine_type"], "NEW"):
            broken["sender_ods"] = default_permissions().senders_for(broken["vaccine_type"], "NEW")[0]
    CORRUPTIONS[kind or rng.choice(sorted(CORRUPTIONS))](rng, broken)
    return broken
