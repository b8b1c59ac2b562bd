"""The NHS side from vaxflow's process: its own venv, and nhs_side.py as a JSON-lines subprocess.

NHS England's receiver needs fhir.resources 7.0.2 on pydantic 1, which cannot share a process
(or a venv) with vaxflow's pydantic 2. So it gets a venv of its own, and vaxflow talks to it
only through pipes: nothing of theirs is imported here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

RUNNER: Final = Path(__file__).with_name("nhs_side.py")

# What their recordprocessor and shared lambdas import (their pyproject files), pinned where the
# receiver pins: fhir.resources ~7.0.2 and pydantic ~1.10. boto3 is imported by common.clients at
# import time (no client is created); redis by common.redis_client (replaced by an in-memory one).
NHS_REQUIREMENTS: Final = (
    "fhir.resources==7.0.2",
    "pydantic>=1.10.13,<2",
    "python-stdnum>=2.1",
    "simplejson>=3.20",
    "jsonpath-ng>=1.8",
    "boto3>=1.42",
    "redis>=4.6",
    "pyjwt[crypto]>=2.12",
)


class Verdict(NamedTuple):
    accept: bool
    stage: str
    reason: str


def setup_venv(venv: Path, python: str = sys.executable) -> None:
    """Create `venv` (if missing) and install NHS_REQUIREMENTS into it with pip."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *NHS_REQUIREMENTS], check=True)


def judge(
    venv: Path,
    nhs_repo: Path,
    mode: str,
    requests: Iterable[dict[str, Any]],
    *,
    now: datetime | None = None,
    stderr_log: Path | None = None,
) -> dict[int, Verdict]:
    """Send every request (each with an int "id") to a fresh runner; its verdicts by id.

    A writer thread feeds stdin while this thread reads stdout, so neither pipe can fill up and
    block the other.
    """
    log = stderr_log.open("ab") if stderr_log else subprocess.DEVNULL
    command = [str(venv / "bin" / "python"), str(RUNNER), "--nhs-repo", str(nhs_repo), "--mode", mode]
    if now is not None:
        command += ["--now", now.isoformat()]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8"
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        ready = process.stdout.readline()
        if not ready.strip():
            process.wait()
            raise RuntimeError(f"NHS runner ({mode}) did not start; see {stderr_log or 'its stderr'}")
        stdin = process.stdin

        def feed() -> None:
            try:
                for request in requests:
                    stdin.write(json.dumps(request) + "\n")
            finally:
                stdin.close()

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        verdicts = dict(_read(process.stdout))
        writer.join()
    if log is not subprocess.DEVNULL:
        log.close()  # type: ignore[union-attr]
    if process.returncode:
        raise RuntimeError(f"NHS runner ({mode}) exited {process.returncode}; see {stderr_log or 'its stderr'}")
    return verdicts


def _read(lines: Iterable[str]) -> Iterator[tuple[int, Verdict]]:
    for line in lines:
        reply = json.loads(line)
        yield int(reply["id"]), Verdict(bool(reply["accept"]), str(reply["stage"]), str(reply["reason"]))
