"""NHS number mod-11 and SNOMED CT concept-id checks against the digest's known codes."""

from __future__ import annotations

import random

import pytest

from schemas.codes import (
    _dihedral,
    _permutations,
    nhs_check_digit,
    nhs_number_problem,
    snomed_problem,
    verhoeff_digit,
    verhoeff_ok,
)
from vaxflow.dev.samples import synthetic_nhs_number

# Every code listed in spec digest section (d); the digest says all are format-valid.
DIGEST_CODES = (
    "985151000000100",
    "985171000000109",
    "884861000000100",
    "884881000000109",
    "761841000",
    "871874000",
    "38598009",
    "170433008",
    "432636005",
    "433733003",
    "414619005",
    "1303503001",
    "956951000000104",
    "1362591000000103",
    "1324681000000101",
    "1324691000000104",
    "308081000000105",
    "170431005",
    "170432003",
    "866227002",
    "722215002",
    "1326111000000107",
    "247631000000101",
    "42284007",
    "429069001",
    "170370000",
    "170373003",
    "428975001",
    "712833000",
    "720539004",
    "516301000000101",
    "868631000000102",
    "415354003",
    "868273007",
    "247821000000102",
    "1082441000000108",
    "1162640003",
    "43207411000001105",
    "43208811000001106",
    "45175511000001104",
    "45354911000001100",
    "12238911000001100",
    "10880211000001104",
    "33493111000001108",
    "39779611000001104",
    "17188711000001105",
    "20517811000001104",
    "34925111000001104",
    "13968211000001108",
    "45480711000001107",
    "45525711000001102",
    "7374511000001107",
    "42605811000001109",
    "42223111000001107",
    "43111411000001101",
    "43113211000001101",
    "43112711000001100",
    "42985911000001104",
    "34680411000001107",
    "42707511000001109",
    "26267211000001100",
    "39655511000001105",
    "38737511000001105",
    "16649411000001104",
    "40600011000001101",
    "368208006",
    "368209003",
    "61396006",
    "11207009",
    "723979003",
    "723980000",
    "279549004",
    "78421000",
    "34206005",
    "46713006",
    "258773002",
    "3318611000001103",
    "443684005",
    "310578008",
)
# Target-disease codes from the disease mapping are concept ids too.
DISEASE_CODES = (
    "398102009",
    "397430003",
    "76902006",
    "27836007",
    "709410003",
    "66071002",
    "56717001",
    "840539006",
    "6142004",
    "23511006",
    "1354584007",
    "14189004",
    "36989005",
    "36653000",
    "38907003",
    "16814004",
    "186150001",
    "55735004",
    "4740000",
    "240532009",
)
DIGEST_INVALID = {
    "2622896019": "partition",  # a description id
    "1324657890": "partition",
    "385219009": "verhoeff",
    "443684006": "verhoeff",
    "443684007": "verhoeff",
    "443684008": "verhoeff",
    "1303503002": "verhoeff",
    "42605811000001108": "verhoeff",
    "0123": "format",
    "12345678": "partition",
    "NAVU": "format",
    "012345600": "format",  # leading zero
    "12345": "format",  # too short
    "1" * 19: "format",  # too long
    "１２３４５６７８９": "format",  # full-width digits are not ASCII digits
}


@pytest.mark.parametrize("code", [*DIGEST_CODES, *DISEASE_CODES])
def test_digest_codes_are_concept_ids(code: str) -> None:
    assert snomed_problem(code) is None


@pytest.mark.parametrize(("code", "problem"), DIGEST_INVALID.items())
def test_invalid_codes_name_their_problem(code: str, problem: str) -> None:
    assert snomed_problem(code) == problem


def test_verhoeff_known_vectors() -> None:
    assert verhoeff_digit("236") == 3
    assert verhoeff_ok("2363")
    assert verhoeff_digit("12345") == 1
    assert verhoeff_ok("123451")
    assert verhoeff_digit("142857") == 0
    assert verhoeff_ok("1428570")
    assert not verhoeff_ok("2364")


def test_verhoeff_catches_every_single_digit_and_adjacent_swap_error() -> None:
    rng = random.Random(7)
    for _ in range(300):
        body = "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 16)))
        code = body + str(verhoeff_digit(body))
        assert verhoeff_ok(code)
        i = rng.randrange(len(code))
        wrong = str((int(code[i]) + rng.randint(1, 9)) % 10)
        assert not verhoeff_ok(code[:i] + wrong + code[i + 1 :])
        j = rng.randrange(len(code) - 1)
        if code[j] != code[j + 1]:
            assert not verhoeff_ok(code[:j] + code[j + 1] + code[j] + code[j + 2 :])


@pytest.mark.parametrize("number", ["9674963871", "9473081898", "9473088736", "9434765919", "9990000018"])
def test_valid_nhs_numbers(number: str) -> None:
    assert nhs_number_problem(number) is None


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("9674963872", "mod11"),
        ("9473088733", "mod11"),  # the digest's failing sample row
        ("967496387", "format"),
        ("96749 3871", "format"),
        ("0", "format"),
        ("96749638710", "format"),
        ("967496387a", "format"),
        ("٩٦٧٤٩٦٣٨٧١", "format"),  # Arabic-Indic digits: isdigit() but not ASCII
    ],
)
def test_invalid_nhs_numbers(number: str, problem: str) -> None:
    assert nhs_number_problem(number) == problem


def test_check_digit_ten_means_no_valid_number() -> None:
    first_nine = next(f"{n:09d}" for n in range(10**8, 10**9) if nhs_check_digit(f"{n:09d}") is None)
    for last in "0123456789":
        assert nhs_number_problem(first_nine + last) == "mod11"


def test_check_digit_eleven_means_zero() -> None:
    first_nine = next(f"{n:09d}" for n in range(10**8, 10**9) if nhs_check_digit(f"{n:09d}") == 0)
    weighted = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    assert weighted % 11 == 0  # so 11 - 0 = 11, which the rule maps to 0
    assert nhs_number_problem(first_nine + "0") is None


def test_synthetic_numbers_are_valid_and_in_the_test_range() -> None:
    rng = random.Random(1)
    for _ in range(500):
        number = synthetic_nhs_number(rng)
        assert number.startswith("999")
        assert nhs_number_problem(number) is None


@pytest.mark.parametrize("digits", ["94730818", "9473081898"])
def test_check_digit_needs_exactly_nine_digits(digits: str) -> None:
    with pytest.raises(ValueError, match="zip"):
        nhs_check_digit(digits)


# Verhoeff's published tables (J. Verhoeff, Error Detecting Decimal Codes, 1969): the module builds
# them at import time, so the builders are called here for mutation testing to reach them.
VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def test_the_dihedral_group_is_verhoeffs_multiplication_table() -> None:
    assert [[_dihedral(j, k) for k in range(10)] for j in range(10)] == VERHOEFF_D


def test_the_position_permutations_are_verhoeffs() -> None:
    assert [list(row) for row in _permutations()] == VERHOEFF_P
