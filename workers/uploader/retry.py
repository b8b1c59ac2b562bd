"""The uploader's retry policy for transient MESH failures: wait the outage out, never give up.

MESH is supported in business hours only, so an outage can last a night; a file must not be
dead-lettered because MESH was away (issue 16). Transient failures (no answer, 408/425/429, 5xx)
are therefore retried for as long as they last, with no attempt or time bound: capped exponential
backoff with full jitter (each wait uniform between 0 and min(cap, initial * 2^(n-1))), so that
many uploaders recovering from the same outage do not retry in lock-step, and never longer apart
than the cap, so a file goes within one cap of MESH's return. When MESH says how long to wait
(`Retry-After` on a 429 or 503) the wait is at least that, up to RETRY_AFTER_CEILING.

Only a permanent refusal fails the file, at once, with its status and body (it would fail the same
way every time). `MeshTLSError` (MESH's certificate not trusted) is not retried here: it says
nothing about the file, so the worker holds the file until the configuration is fixed and reports
it on /readyz. A wait ends early (`Abandoned`) on stop or revocation through the `sleep` given.

The controller keeps only counters (tenacity's attempt number and idle time), so a file retrying
for a day holds no more memory than one retrying once; the MESH session (and its connection pool)
is the process's one client, reused by every attempt.

The policy lives apart from the worker so that it can be unit-tested without MESH or Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_never,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from workers.base.mesh.client import MeshTLSError, MeshTransientError
from workers.base.settings import MeshSettings

log = logging.getLogger("vaxflow.uploader")

Sleep = Callable[[float], Awaitable[None]]

# A `Retry-After` longer than this is read as this: a wrong header must not park files for days.
RETRY_AFTER_CEILING: Final = 3600.0


class wait_jitter_or_retry_after(wait_base):  # tenacity's naming for wait strategies
    """Full-jitter capped exponential backoff, or what MESH asked for in `Retry-After` if longer."""

    def __init__(self, initial: float, cap: float) -> None:
        self.jitter = wait_random_exponential(multiplier=initial, max=cap)

    def __call__(self, retry_state: RetryCallState) -> float:
        own = float(self.jitter(retry_state))
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = exc.retry_after if isinstance(exc, MeshTransientError) else None
        if asked is None:
            return own
        return min(max(own, asked), RETRY_AFTER_CEILING)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    # The error text carries status and MESH's short error body, never file content.
    log.warning(
        "transient MESH failure, retrying",
        extra={"attempt": state.attempt_number, "wait_seconds": round(wait, 3), "error": str(exc)},
    )


def upload_retrying(settings: MeshSettings, *, sleep: Sleep | None = None) -> AsyncRetrying:
    """A fresh tenacity controller for one file; `sleep` lets the worker make waits interruptible."""
    return AsyncRetrying(
        stop=stop_never,
        wait=wait_jitter_or_retry_after(settings.upload_backoff_initial_seconds, settings.upload_backoff_max_seconds),
        retry=retry_if_exception_type(MeshTransientError) & retry_if_not_exception_type(MeshTLSError),
        reraise=True,
        before_sleep=_log_retry,
        sleep=sleep or asyncio.sleep,
    )
