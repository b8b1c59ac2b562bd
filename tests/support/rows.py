"""The spec's sample RSV row as a record dict: the valid row the validator tests start from."""

from __future__ import annotations

import csv
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "schemas" / "data" / "sample_valid_rsv.csv"


def sample_row() -> dict[str, str]:
    with SAMPLE.open(newline="", encoding="utf-8") as handle:
        return dict(next(csv.DictReader(handle, delimiter="|")))
