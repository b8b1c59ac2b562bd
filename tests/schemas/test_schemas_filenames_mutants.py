"""File names: the exact wording of every refusal, and the parts of a name mutation testing found unchecked.

The receiver's messages are matched against an InfAck's cause, and the detail is what an operator
reads next to it, so both are checked word for word (not with `match=`, which a prefix satisfies).
"""

from datetime import UTC, datetime, timedelta

import pytest

from schemas.filenames import (
    EXTENSION_MESSAGE,
    FORMAT_MESSAGE,
    INVALID_MESSAGE,
    FileNameError,
    name_timestamp,
    name_token,
    parse_batch_file_name,
    part_file_name,
    window_slot,
)
from schemas.permissions import default_permissions

VACCINE_TYPES = default_permissions().vaccine_types
START = datetime(2024, 7, 8, 11, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_the_receivers_messages_are_its_exact_wording() -> None:
    assert FORMAT_MESSAGE == "Initial file validation failed: invalid file key format"
    assert EXTENSION_MESSAGE == "Initial file validation failed: missing file extension"
    assert INVALID_MESSAGE == "Initial file validation failed: invalid file key"


def test_file_name_error_keeps_message_and_detail_apart() -> None:
    error = FileNameError(INVALID_MESSAGE, "which check")
    assert error.message == INVALID_MESSAGE
    assert error.detail == "which check"
    assert str(error) == f"{INVALID_MESSAGE} (which check)"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("name", "message", "detail"),
    [
        (
            "archive/RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv",
            INVALID_MESSAGE,
            "the receiver ignores keys outside the bucket root ('/')",
        ),
        (
            "RSV_Vaccinations_v5_X8E5B.csv",
            FORMAT_MESSAGE,
            "needs at least five '_'-separated parts before any '.'",
        ),
        ("RSV_Vaccinations_v5_X8E5B_20240708T12130100", EXTENSION_MESSAGE, "no '.' in the name"),
        ("XYZ_Vaccinations_v5_X8E5B_20240708T12130100.csv", INVALID_MESSAGE, "vaccine type 'XYZ' is not a known type"),
        ("RSV_Vaccination_v5_X8E5B_20240708T12130100.csv", INVALID_MESSAGE, "second part must be 'Vaccinations'"),
        ("RSV_Vaccinations_v4_X8E5B_20240708T12130100.csv", INVALID_MESSAGE, "third part must be the version 'v5'"),
        (
            "RSV_Vaccinations_v5_X8E5B_20240708T12130102.csv",
            INVALID_MESSAGE,
            "timestamp must be YYYYMMDDThhmmss plus 00 (GMT) or 01 (BST), a real time",
        ),
        ("RSV_Vaccinations_v5_X8E5B_20240708T12130100.txt", INVALID_MESSAGE, "extension must be .csv or .dat"),
    ],
)
def test_each_refusal_has_the_receivers_message_and_says_which_check(name: str, message: str, detail: str) -> None:
    with pytest.raises(FileNameError) as caught:
        parse_batch_file_name(name, vaccine_types=VACCINE_TYPES)
    assert (caught.value.message, caught.value.detail) == (message, detail)


def test_an_unknown_ods_code_is_named_in_the_detail() -> None:
    with pytest.raises(FileNameError) as caught:
        parse_batch_file_name("RSV_Vaccinations_v5_X8E5B_20240708T12130100.csv", ods_codes={"YGM41"})
    assert (caught.value.message, caught.value.detail) == (INVALID_MESSAGE, "ODS code 'X8E5B' maps to no supplier")


def test_the_first_failing_check_is_the_detail() -> None:
    # wrong second part, version, timestamp and extension at once: the second part is checked first
    with pytest.raises(FileNameError) as caught:
        parse_batch_file_name("RSV_Vacc_v4_X8E5B_2024.txt", vaccine_types=VACCINE_TYPES)
    assert caught.value.detail == "second part must be 'Vaccinations'"


def test_naive_instant_refusal_wording() -> None:
    with pytest.raises(ValueError, match="aware") as caught:
        name_timestamp(datetime(2024, 7, 8, 12))
    assert str(caught.value) == "a file-name instant must be timezone-aware"


def test_window_slot_refusals_wording() -> None:
    with pytest.raises(ValueError, match="seconds") as length:
        window_slot(START, timedelta(milliseconds=1500), 0)
    assert str(length.value) == "window length must be a whole number of seconds, at least one"
    with pytest.raises(ValueError, match="second") as start:
        window_slot(START.replace(microsecond=5), HOUR, 0)
    assert str(start.value) == "window start must fall on a whole second"
    with pytest.raises(ValueError, match="fit") as part:
        window_slot(START, timedelta(seconds=3), 3)
    assert str(part.value) == (
        "part 3 does not fit a 3-second window: each part needs its own second; "
        "raise the row/byte cap or lengthen the window"
    )


def test_token_refusal_wording() -> None:
    with pytest.raises(ValueError, match="letters") as caught:
        name_token("FLU_2")
    assert str(caught.value) == "vaccine type and ODS code must be letters and digits only (no '_' or '.')"


def test_part_file_name_passes_the_extension_on() -> None:
    assert part_file_name("RSV", "X8E5B", START, HOUR, 1, "dat") == "RSV_Vaccinations_v5_X8E5B_20240708T12000101.dat"
    assert part_file_name("RSV", "X8E5B", START, HOUR, 1) == "RSV_Vaccinations_v5_X8E5B_20240708T12000101.csv"
