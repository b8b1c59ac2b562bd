"""The batcher's archive copy of every file it produces: written before the file is published.

Atomic (temporary file, fsync, rename) and private (0600), because a file holds patient data and
a half-written archive copy would be worse than none (workers/base/private_files.py).
"""

from __future__ import annotations

from pathlib import Path


def archive_path(root: Path, vaccine_type: str, sender_ods: str, file_name: str) -> Path:
    return root / vaccine_type / sender_ods / file_name
