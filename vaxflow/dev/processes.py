"""Background processes of the local stack: pid files, liveness and a polite stop.

One implementation for the broker, the sandbox and the workers, so every part of `vaxflow dev
down` stops the same way: SIGTERM (let it flush and commit), then SIGKILL after a deadline.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether `pid` runs; a child of ours that exited but was not reaped yet counts as gone."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child: kill(0) said it exists
    return done == 0


def read_pid(pid_file: Path) -> int | None:
    """The process id in `pid_file` if it names a live process."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.01)


def stop_pid_file(pid_file: Path, timeout: float) -> bool:
    """Stop the process a pid file names; False when nothing was running."""
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    stop_pid(pid, timeout)
    pid_file.unlink(missing_ok=True)
    return True
