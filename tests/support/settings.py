"""Settings for one test: the session's settings, with what the test writes kept under its tmp_path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workers.base.settings import Settings


def scoped_settings(
    base: Settings, tmp_path: Path, defaults: Mapping[str, Any], overrides: Mapping[str, Any]
) -> Settings:
    """`base` with the batcher's archive and the dev home under `tmp_path`, then a test suite's
    `defaults`, then the test's own `overrides` (which win over both)."""
    return base.model_copy(update={"archive_dir": tmp_path / "archive", "dev_home": tmp_path, **defaults, **overrides})
