"""The batcher's saved window bookkeeping across format versions and setting changes.

BatcherState version 1 kept window INDEXES (`closed`, `parts`) in units of the window length of
the run that wrote it, and did not record that length. A run with another VAXFLOW_WINDOW_SECONDS
read them as windows millions of days away (issue 16: 10 s -> 86400 s gave "year 493805 is out of
range" and a crash loop). Version 2 keeps times (epoch ms) and the length in force; this module
turns either version into the time-based bookkeeping `PartitionWindows.restore` takes.

A version-1 state is migrated with the length that wrote it: VAXFLOW_BATCHER_STATE_WINDOW_SECONDS
when the operator sets it, else the current VAXFLOW_WINDOW_SECONDS, but the latter only if the
times it gives are plausible (the last closed window ends within a year before now and not after
now plus a window and a day). Under a wrong length every time is scaled by old/new length, so a
changed length shows as windows in the future or decades ago; then the batcher refuses to start
with a message naming both settings instead of guessing (a wrong guess could reuse a file name the
receiver has seen, or never send a late event). Decision 0013, "State as times".
"""

from __future__ import annotations

from typing import Final

from schemas.pipeline import BatcherState

STATE_VERSION: Final = 2
# How far a version-1 state's last closed window may lie from now when its length is taken to be
# the current one: a partition quiet for longer than a year, or a length that scales the windows
# beyond this, needs VAXFLOW_BATCHER_STATE_WINDOW_SECONDS.
PLAUSIBLE_PAST_MS: Final = 366 * 86_400_000
PLAUSIBLE_FUTURE_MS: Final = 86_400_000

Bookkeeping = tuple[dict[str, int], dict[str, tuple[int, int]]]


class StateFormatError(ValueError):
    """The saved state cannot be read under the current settings; the message says which setting
    to change. It names partitions, lengths and years only, never an event's values."""


def bookkeeping(
    state: BatcherState, *, window_seconds: int, state_window_seconds: int | None, now_ms: int
) -> Bookkeeping:
    """(closed_until, open_parts) of `state`, in epoch ms (BatcherState version 2 fields)."""
    if state.version >= STATE_VERSION:
        return dict(state.closed_until), {k: (v[0], v[1]) for k, v in state.open_parts.items()}
    length_ms = (state_window_seconds or window_seconds) * 1000
    closed = {key: (index + 1) * length_ms for key, index in state.closed.items()}
    parts: dict[str, tuple[int, int]] = {}
    for key, count in state.parts.items():
        vt, ods, index = key.split("|")
        parts[f"{vt}|{ods}|{int(index) * length_ms}"] = ((int(index) + 1) * length_ms, count)
    ends = [*closed.values(), *(end for end, _ in parts.values())]
    if state_window_seconds is None and ends:
        latest = max(ends)
        if not now_ms - PLAUSIBLE_PAST_MS <= latest <= now_ms + length_ms + PLAUSIBLE_FUTURE_MS:
            raise StateFormatError(
                f"the batcher state of valid partition {state.partition} was saved in format 1, which "
                "keeps windows as indexes and does not say the window length that wrote them; read with "
                f"VAXFLOW_WINDOW_SECONDS={window_seconds} its last window would end in {_year(latest)}, so "
                "that state was written with another window length. Set VAXFLOW_BATCHER_STATE_WINDOW_SECONDS "
                "to the window length the previous run used (the state is then migrated and saved in format "
                f"{STATE_VERSION}, which keeps times), or run once more with that VAXFLOW_WINDOW_SECONDS"
            )
    return closed, parts


def _year(epoch_ms: int) -> str:
    """The year of `epoch_ms`, for a message (datetime cannot hold the years a wrong length gives)."""
    return str(1970 + int(epoch_ms // (365.2425 * 86_400_000)))
