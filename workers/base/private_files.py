"""Writing a file that holds patient data: atomically (temporary file, fsync, rename) and private (0600).

Shared by the batcher's archive copies and the file source's MESH intake: a half-written copy or
one other local users can read would be worse than none.
"""

from __future__ import annotations

import os
from pathlib import Path


def _make_private_folders(folder: Path) -> None:
    """Make `folder` and its missing parents 0700 (`mkdir(parents=True)` leaves parents at the umask)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for level in reversed(missing):
        level.mkdir(mode=0o700, exist_ok=True)


def write_private(path: Path, content: bytes) -> None:
    """Write `content` to `path` atomically with mode 0600, creating missing folders with 0700.

    The folders are created only when the open says they are missing: with thousands of senders
    and short windows a batcher writes thousands of small files, and a `mkdir` before each was
    about a tenth of its samples (py-spy, benchmarks/bench_scaling.py, 4,800 keys).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileNotFoundError:
        _make_private_folders(path.parent)
        fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
