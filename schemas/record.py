"""The row of a batch file as a typed value, and the reason a row or event was refused.

Every shape that crosses a topic or a module boundary is a frozen msgspec Struct, so that it is
decoded once at the edge and never travels as a loose dict (docs/architecture.md, "Identity").
"""

import msgspec


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One vaccination event: the 34 spec columns, in file order, as canonical strings.

    An empty string means "absent" (spec digest section c). Attribute names are the spec's
    column names so that a reader can move between this code and the specification.
    """

    NHS_NUMBER: str = ""
    PERSON_FORENAME: str = ""
    PERSON_SURNAME: str = ""
    PERSON_DOB: str = ""
    PERSON_GENDER_CODE: str = ""
    PERSON_POSTCODE: str = ""
    DATE_AND_TIME: str = ""
    SITE_CODE: str = ""
    SITE_CODE_TYPE_URI: str = ""
    UNIQUE_ID: str = ""
    UNIQUE_ID_URI: str = ""
    ACTION_FLAG: str = ""
    PERFORMING_PROFESSIONAL_FORENAME: str = ""
    PERFORMING_PROFESSIONAL_SURNAME: str = ""
    RECORDED_DATE: str = ""
    PRIMARY_SOURCE: str = ""
    VACCINATION_PROCEDURE_CODE: str = ""
    VACCINATION_PROCEDURE_TERM: str = ""
    DOSE_SEQUENCE: str = ""
    VACCINE_PRODUCT_CODE: str = ""
    VACCINE_PRODUCT_TERM: str = ""
    VACCINE_MANUFACTURER: str = ""
    BATCH_NUMBER: str = ""
    EXPIRY_DATE: str = ""
    SITE_OF_VACCINATION_CODE: str = ""
    SITE_OF_VACCINATION_TERM: str = ""
    ROUTE_OF_VACCINATION_CODE: str = ""
    ROUTE_OF_VACCINATION_TERM: str = ""
    DOSE_AMOUNT: str = ""
    DOSE_UNIT_CODE: str = ""
    DOSE_UNIT_TERM: str = ""
    INDICATION_CODE: str = ""
    LOCATION_CODE: str = ""
    LOCATION_CODE_TYPE_URI: str = ""


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """Why one field (or the whole event, field "") was refused.

    `message` names the field and the rule and never quotes the value: reasons reach logs, the
    rejected topic and the dashboard, and patient values must not (brief: Standards).
    """

    field: str
    rule: str
    message: str
