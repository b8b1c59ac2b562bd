"""One valid extended-attribute row, for the tests of the extended-attributes family.

The format tests (test_schemas_files_extended.py) and `check-file` (test_schemas_files_checkfile.py)
both need a row the rules accept; one copy here keeps them testing the same row.
"""

from __future__ import annotations

from schemas.extended import ExtendedAttribute

# Quotes and the pipe delimiter in the displayed text: a valid row that still needs escaping.
EXTENDED_ROW = ExtendedAttribute(
    VACCINATION_UNIQUE_ID="COVID_0001",
    VACCINATION_UNIQUE_ID_URI="https://supplier.example/ids",
    ACTION_FLAG="NEW",
    ATTRIBUTE_ID="1324681000000101",
    ATTRIBUTE_DISPLAYED_TEXT='Eligibility: "clinically" at-risk | group',
    ATTRIBUTE_VALUE="Y",
    RECORDED_DATE="20250730",
)
