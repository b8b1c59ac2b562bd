"""The uploader's retry policy for transient MESH failures.

Exponential backoff with full jitter (each wait uniform between 0 and min(cap, initial * 2^(n-1))),
so that many uploaders recovering from the same MESH outage do not retry in lock-step; bounded both
by attempts and by total time, so a file cannot block its partition for ever: when either bound is
reached the last transient error is re-raised and the file is dead-lettered like a permanent
failure (docs/architecture.md, "MESH"). Only `MeshTransientError` is retried; a permanent refusal fails
the same way every time and must reach the dead-letter topic at once with its status and body.
`MeshTLSError` (MESH's certificate not trusted) is not retried here: it says nothing about the file,
so the worker holds the file outside these bounds until the configuration is fixed.

The policy lives apart from the worker so that it can be unit-tested without MESH or Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from workers.base.mesh.client import MeshTLSError, MeshTransientError
from workers.base.settings import MeshSettings

log = logging.getLogger("vaxflow.uploader")

Sleep = Callable[[float], Awaitable[None]]


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
        stop=stop_after_attempt(settings.upload_max_attempts) | stop_before_delay(settings.upload_max_seconds),
        wait=wait_random_exponential(
            multiplier=settings.upload_backoff_initial_seconds, max=settings.upload_backoff_max_seconds
        ),
        retry=retry_if_exception_type(MeshTransientError) & retry_if_not_exception_type(MeshTLSError),
        reraise=True,
        before_sleep=_log_retry,
        sleep=sleep or asyncio.sleep,
    )
