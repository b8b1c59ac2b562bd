"""The batcher's archive copy of every file it produces: written before the file is published.

Atomic (temporary file, fsync, rename) and private (0600), because a file holds patient data and
a half-written archive copy would be worse than none.
"""

from __future__ import annotations

import os
from pathlib import Path


def archive_path(root: Path, vaccine_type: str, sender_ods: str, file_name: str) -> Path:
    return root / vaccine_type / sender_ods / file_name


def write_private(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
