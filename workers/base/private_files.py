"""Files that hold patient data: written atomically (temporary file, fsync, rename), private (0600
files in 0700 folders), and never through a symbolic link.

Shared by the batcher's archive copies and the file source (its MESH intake, its reasons files and
the moves to done/ and rejected/). The file source's folders are writable by providers, so a name
in them may be a symlink planted to point elsewhere: writing through it once made patient rows
overwrite an outside file, which kept its mode 0644 (issue 17). So every open is relative to a
descriptor of the folder, the folder itself is opened with O_NOFOLLOW, files with O_NOFOLLOW (and
O_EXCL when created): there is no gap between a check and the use in which a name can be swapped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

FOLDER_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_FOLDER_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a file's name must not block the open.
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotRegularFile(OSError):
    """A name that is a symlink, a folder, a FIFO or a device, not a regular file."""

    def __init__(self, name: str) -> None:
        super().__init__(errno.EINVAL, "not a regular file", name)


def _make_private_folders(folder: Path) -> None:
    """Make `folder` and its missing parents 0700 (`mkdir(parents=True)` leaves parents at the umask)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for level in reversed(missing):
        level.mkdir(mode=FOLDER_MODE, exist_ok=True)


@contextlib.contextmanager
def folder_fd(folder: Path, *, create: bool = False, follow: bool = False) -> Iterator[int]:
    """A descriptor of `folder`; OSError (ELOOP) when its last component is a symlink, unless
    `follow` (a folder the operator configured, which may well be reached through a link)."""
    flags = _FOLDER_FLAGS & ~os.O_NOFOLLOW if follow else _FOLDER_FLAGS
    try:
        fd = os.open(folder, flags)
    except FileNotFoundError:
        if not create:
            raise
        _make_private_folders(folder)
        fd = os.open(folder, flags)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def child_folder_fd(parent_fd: int, name: str, *, create: bool = False) -> Iterator[int]:
    """A descriptor of the folder `name` inside the folder `parent_fd`, never through a symlink
    (OSError ELOOP, or ENOTDIR for a file); created 0700 when missing and `create`.

    Opened relative to the parent's descriptor, so a folder swapped for a link anywhere on the way
    (the parent included, once it is open) cannot lead outside.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, FOLDER_MODE, dir_fd=parent_fd)
    fd = os.open(name, _FOLDER_FLAGS, dir_fd=parent_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def write_private(path: Path, content: bytes) -> None:
    """Write `content` to `path` atomically with mode 0600, creating missing folders with 0700.

    A symlink at `path` is replaced, not followed (rename); one at the temporary name is removed
    (O_EXCL refuses to open through it); a symlink in place of the folder is refused (ELOOP).
    The folders are created only when the open says they are missing: with thousands of senders
    and short windows a batcher writes thousands of small files, and a `mkdir` before each was
    about a tenth of its samples (py-spy, benchmarks/bench_scaling.py, 4,800 keys).
    """
    with folder_fd(path.parent, create=True) as dir_fd:
        write_private_at(dir_fd, path.name, content)


def write_private_at(dir_fd: int, name: str, content: bytes) -> None:
    """`write_private` of the file `name` in an open folder (the same rules, without a path)."""
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, _CREATE_FLAGS, FILE_MODE, dir_fd=dir_fd)
    except FileExistsError:  # left by a crash, or planted: remove the name (never its target)
        os.unlink(tmp, dir_fd=dir_fd)
        fd = os.open(tmp, _CREATE_FLAGS, FILE_MODE, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def open_regular(dir_fd: int, name: str) -> int:
    """A read descriptor of the regular file `name` in the folder; NotRegularFile for anything else.

    The type is checked on the open descriptor, so a name swapped after a scan cannot lead the
    read outside the folder.
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink; a FIFO or socket without a writer
            raise NotRegularFile(name) from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(name)
    os.set_blocking(fd, True)
    return fd


def make_private(fd: int) -> None:
    """0600 on an open file; a provider's file we do not own keeps its mode (its folder is 0700)."""
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, FILE_MODE)


def private_folder(folder: Path) -> None:
    """Create `folder` 0700, or make an existing one 0700 and its files 0600; a symlink is refused.

    For folders that keep patient data (done/, rejected/), run at start: earlier versions left
    them 0755 and the files moved into them 0644. Folders inside (done/<subdirectory>/ of the
    per-sender layout) are made private the same way; a symlink among them is left alone, never
    followed.
    """
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=FOLDER_MODE, parents=True)
    with folder_fd(folder) as dir_fd:
        os.fchmod(dir_fd, FOLDER_MODE)
        _make_private_inside(dir_fd, depth=8)


def _make_private_inside(dir_fd: int, depth: int) -> None:
    """0600 on the regular files of an open folder, 0700 and the same on its real subfolders."""
    for name in os.listdir(dir_fd):
        try:
            fd = open_regular(dir_fd, name)
        except (NotRegularFile, FileNotFoundError):
            if depth > 0:
                with contextlib.suppress(OSError), child_folder_fd(dir_fd, name) as sub_fd:
                    with contextlib.suppress(PermissionError):
                        os.fchmod(sub_fd, FOLDER_MODE)
                    _make_private_inside(sub_fd, depth - 1)
            continue
        try:
            make_private(fd)
        finally:
            os.close(fd)


def move_private(src_dir_fd: int, name: str, dst_dir_fd: int, new_name: str) -> None:
    """Move `name` between folders (rename: a symlink moves as itself), made 0600 first if a file."""
    with contextlib.suppress(NotRegularFile, FileNotFoundError):
        fd = open_regular(src_dir_fd, name)
        try:
            make_private(fd)
        finally:
            os.close(fd)
    os.replace(name, new_name, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def exists_here(dir_fd: int, name: str) -> bool:
    """Whether the folder has an entry `name` (of any type; a symlink is not followed)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
