"""What an operator sees of a MESH outage: since when MESH has not answered, and how many files wait.

An outage is waited out (workers/uploader/retry.py), so nothing is dead-lettered and nothing is
logged as an error while it lasts; this is how it shows instead: the gauges
`vaxflow_uploader_mesh_unavailable_since_seconds` (unix time of the first failure of the current
outage, 0 while MESH answers) and `vaxflow_uploader_files_waiting`, and the uploader's /readyz
detail "MESH unavailable since <ISO time>, N files waiting".

/readyz stays 200 during an outage: the uploader is doing what it should (holding files, retrying
within the backoff cap) and restarting or replacing it would not bring MESH back; a 503 would make
an orchestrator's readiness or health policy act on the wrong component. Alerting is on the
gauge (how long MESH has been away), not on readiness. A certificate MESH's side fails to verify
is different: that is our configuration, and it does turn /readyz to 503 (delivery.py).

Any HTTP answer from MESH, even a refusal, ends the outage; only no answer or a "try later"
status (MeshTransientError) starts or continues one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Gauge

from workers.base.runtime import Health

log = logging.getLogger("vaxflow.uploader")

UNAVAILABLE_SINCE = Gauge(
    "vaxflow_uploader_mesh_unavailable_since_seconds",
    "Unix time of the first failed MESH request of the current outage; 0 while MESH answers",
)
FILES_WAITING = Gauge(
    "vaxflow_uploader_files_waiting", "Ready files read and not yet finished (at MESH, skipped or dead-lettered)"
)

DETAIL_KEY = "mesh"


class MeshAvailability:
    """One process's view of MESH: the current outage, if any, and the files it holds."""

    def __init__(self, health: Health, clock: Callable[[], float] = time.time) -> None:
        self.health = health
        self.clock = clock
        self.since: float | None = None
        self.waiting = 0
        UNAVAILABLE_SINCE.set(0)
        FILES_WAITING.set(0)

    def failed(self) -> None:
        """A request got no answer, or "try later": the outage starts now unless one is on."""
        if self.since is None:
            self.since = self.clock()
            UNAVAILABLE_SINCE.set(self.since)
            log.warning("MESH unavailable", extra={"since": _iso(self.since)})
        self._show()

    def answered(self) -> None:
        """MESH answered a request: any outage is over."""
        if self.since is None:
            return
        log.warning("MESH available again", extra={"since": _iso(self.since),
                                                   "outage_seconds": round(self.clock() - self.since, 1)})
        self.since = None
        UNAVAILABLE_SINCE.set(0)
        self._show()

    def add_waiting(self, delta: int) -> None:
        self.waiting += delta
        FILES_WAITING.set(self.waiting)
        if self.since is not None:
            self._show()

    @property
    def description(self) -> str | None:
        if self.since is None:
            return None
        return f"MESH unavailable since {_iso(self.since)}, {self.waiting} files waiting"

    def _show(self) -> None:
        text = self.description
        if text is None:
            self.health.detail.pop(DETAIL_KEY, None)
        else:
            self.health.detail[DETAIL_KEY] = text


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")
