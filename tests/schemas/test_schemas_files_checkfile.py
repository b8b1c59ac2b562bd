"""`check-file` on the reference samples (under spec names) and on files vaxflow writes."""

import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.extended import EXTENDED_ROW

from schemas.batchfile import render_file
from schemas.checkfile import main
from schemas.columns import COLUMNS
from schemas.extended import ExtendedAttribute, extended_file_name, render_extended
from schemas.filenames import batch_file_name
from schemas.record import Record
from vaxflow.dev.samples import make_valid_record

FILES = Path(__file__).parent / "data" / "files"
MMR_UTF8 = FILES / "MMR_Vaccinations_v5_X26_20250730T12000001.csv"
MMR_CP1252 = FILES / "MMR_Vaccinations_v5_X8E5B_20250730T12000001.csv"
RSV = FILES / "RSV_Vaccinations_v5_X8E5B_20240610T18332501.csv"
NOW = datetime(2025, 8, 1, 12, tzinfo=UTC)
INVALID = "Initial file validation failed: invalid file key"


def _run(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[str]]:
    code = main([str(path) for path in paths], now=NOW)
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("path", "problem", "summary"),
    [
        pytest.param(
            MMR_UTF8,
            "3: NHS_NUMBER NHS_NUMBER.mod11 – NHS_NUMBER fails the NHS number mod-11 check digit",
            "FAIL – 3 rows, 2 valid, 1 invalid, utf-8, delimiter '|'",
            id="mod11_failure_in_row_3",
        ),
        pytest.param(
            MMR_CP1252,
            "7: NHS_NUMBER NHS_NUMBER.format – NHS_NUMBER is not exactly 10 digits",
            "FAIL – 7 rows, 6 valid, 1 invalid, cp1252, delimiter '|'",
            id="cp1252_file_and_too_short_nhs_number_in_row_7",
        ),
    ],
)
def test_one_invalid_row_fails_the_sample(
    capsys: pytest.CaptureFixture[str], path: Path, problem: str, summary: str
) -> None:
    """Each reference sample with one bad row: that row's problem, then the file's summary line."""
    code, lines = _run(capsys, path)
    assert code == 1
    assert lines == [f"{path}:{problem}", f"{path}: {summary}"]


def test_valid_sample_passes_and_output_has_no_patient_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _run(capsys, RSV, MMR_UTF8, MMR_CP1252)
    assert code == 1  # any failing file fails the run
    assert f"{RSV}: OK – 1 rows, 1 valid, 0 invalid, utf-8, delimiter '|'" in lines
    output = "\n".join(lines)
    for value in ("9473088733", "SIEGELER", "TANESHA", "NE46 1EA", "20010131", "DICÉMBRE"):
        assert value not in output


def test_a_file_vaxflow_writes_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(4)
    for vaccine_type, ods in (("RSV", "X8E5B"), ("FLU", "YGM41"), ("3IN1", "V0V8L")):
        records = [Record(**make_valid_record(rng, vaccine_type, now=NOW)) for _ in range(50)]
        path = tmp_path / batch_file_name(vaccine_type, ods, NOW)
        path.write_bytes(render_file(records))
        code, lines = _run(capsys, path)
        assert (code, lines) == (0, [f"{path}: OK – 50 rows, 50 valid, 0 invalid, utf-8, delimiter '|'"])


def test_repeated_new_for_one_identifier_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = Record(**make_valid_record(random.Random(1), "RSV", now=NOW))
    delete = Record(
        **{
            **{c: "" for c in COLUMNS},
            "UNIQUE_ID": first.UNIQUE_ID,
            "UNIQUE_ID_URI": first.UNIQUE_ID_URI,
            "ACTION_FLAG": "DELETE",
        }
    )
    path = tmp_path / batch_file_name("RSV", "X8E5B", NOW)
    path.write_bytes(render_file([first, first, delete, first]))  # NEW, NEW (refused), DELETE, NEW (reinstates)
    code, lines = _run(capsys, path)
    assert code == 1
    assert lines[0] == (
        f"{path}:2: UNIQUE_ID row.duplicate_new – NEW repeats the identifier created by row 1; the receiver refuses it"
    )
    assert lines[1] == f"{path}: FAIL – 4 rows, 3 valid, 1 invalid, utf-8, delimiter '|'"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("RSV_Vaccinations_v5_X8E5B_20240610T18332502.csv", f"file.name – {INVALID} (timestamp"),
        ("RSV_Vaccinations_v5_ABCDE_20240610T18332501.csv", f"file.name – {INVALID} (ODS code 'ABCDE'"),
        ("FLU_Vaccinations_v5_X8E5B_20240610T18332501.csv", "file.permission – sender X8E5B holds no C/U/D"),
        ("PINNACLE.csv", f"file.name – {INVALID} format"),
    ],
)
def test_file_name_problems_stop_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, expected: str
) -> None:
    path = tmp_path / name
    shutil.copy(RSV, path)
    code, lines = _run(capsys, path)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: {expected}")


def test_file_level_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bom = tmp_path / RSV.name
    bom.write_bytes(b"\xef\xbb\xbf" + RSV.read_bytes())
    missing = tmp_path / "RSV_Vaccinations_v5_X8E5B_20240610T18332500.csv"
    code, lines = _run(capsys, bom, missing)
    assert code == 1
    assert lines[0].startswith(f"{bom}: file.bom – file starts with a UTF-8 byte-order mark")
    assert lines[1].startswith(f"{missing}: file.unreadable – ")


def test_header_only_file_passes_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / RSV.name
    path.write_bytes(render_file([]))
    code, lines = _run(capsys, path)
    assert code == 0
    assert "no rows" in lines[0]


def test_extended_attribute_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = EXTENDED_ROW
    bad = ExtendedAttribute(VACCINATION_UNIQUE_ID="c-2", ACTION_FLAG="NEW", ATTRIBUTE_ID="a", RECORDED_DATE="20250801")
    path = tmp_path / extended_file_name("YGM41", NOW)
    path.write_bytes(render_extended([good, bad]))
    code, lines = _run(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}:2: VACCINATION_UNIQUE_ID_URI VACCINATION_UNIQUE_ID_URI.mandatory – "
        "VACCINATION_UNIQUE_ID_URI is mandatory and is empty or blank",
        f"{path}: FAIL – 2 rows, 1 valid, 1 invalid",
    ]
    unauthorised = tmp_path / extended_file_name("V0V8L", NOW)  # MAVIS: flu, but no COVID
    unauthorised.write_bytes(render_extended([good]))
    code, lines = _run(capsys, unauthorised)
    assert lines == [f"{unauthorised}: file.permission – sender V0V8L needs C, U and D permission for COVID"]
