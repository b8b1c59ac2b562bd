"""Consumer status in the manner of LinkedIn Burrow: no lag thresholds, rules over a sliding window.

Burrow judges a partition by how its committed offset and its lag behave over the last few
observations rather than by "lag > N", because a fixed N is wrong for every topic but one. This
module applies the same family of rules to vaxflow's groups, with two adaptations that
docs/decisions/0008-lag-evaluation.md argues for:

1. Kafka does not tell when an offset was committed, only what it is, so Burrow's "the consumer
   stopped committing" (STOP) is decided from the group's membership instead: a partition that no
   live member owns cannot make progress.
2. The batcher commits only when a window closes (the saw-tooth): its committed offset stands
   still for up to window + grace while its lag grows, which Burrow's rules would call STALL. A
   group with a *hold policy* is judged by the age of its oldest unconsumed record instead: younger
   than window + grace + slack means it is holding records on purpose.

Pure logic with explicit sample times, so tests can replay minutes of behaviour in microseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise


class Status(StrEnum):
    """Burrow's statuses. Partitions get OK, WARN, STOP, STALL or REWIND; groups OK, WARN or ERR."""

    OK = "OK"
    WARN = "WARN"
    ERR = "ERR"
    STOP = "STOP"
    STALL = "STALL"
    REWIND = "REWIND"


# Burrow's order of severity: a group takes its worst partition's status, capped at ERR.
SEVERITY: dict[Status, int] = {
    Status.OK: 0,
    Status.WARN: 1,
    Status.ERR: 2,
    Status.STOP: 3,
    Status.STALL: 4,
    Status.REWIND: 5,
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of one partition of one group.

    `lag` is kafka-consumer-groups arithmetic (log end - committed). `pending` says whether a
    readable record waits at or after the committed offset: on a transactional topic the last
    offsets of a partition are commit markers, so a consumer that has read everything still shows
    a lag of one or two offsets, and only `pending` tells that apart from a real backlog.
    """

    at: float
    committed: int | None
    log_end: int
    lag: int
    pending: bool
    lag_seconds: float | None = None
    owned: bool | None = None
    held: int | None = None

    @property
    def effective_lag(self) -> int:
        """The lag the rules use: zero when only transaction markers are left."""
        return self.lag if self.pending else 0


@dataclass(frozen=True, slots=True)
class Policy:
    """How a group is judged.

    window: samples in the sliding window (Burrow's `intervals`).
    min_samples: samples needed before the rules that read a trend (STALL, WARN) may fire; a short
        history says nothing about a trend, as Burrow's incomplete windows.
    stop_samples: consecutive samples without an owning member before STOP, so that the seconds of
        a rebalance (assignment briefly empty) do not alert.
    hold_seconds: set for a group that holds records on purpose (the batcher: window + grace +
        slack); None for ordinary consumers.
    """

    window: int = 12
    min_samples: int = 3
    stop_samples: int = 2
    hold_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reason: str
    complete: float
    """Fraction of the window filled with samples (Burrow's `complete`)."""


class PartitionHistory:
    """The sliding window of one partition, plus when its committed offset last moved.

    `changed_at` survives the window: the batcher's commits may be further apart than the window is
    long, and the hold rule needs to know how long ago the last one was. The first observation
    counts as a change (benefit of the doubt, as a freshly started Burrow has no history either).
    """

    def __init__(self, window: int) -> None:
        self.samples: deque[Sample] = deque(maxlen=window)
        self.changed_at: float | None = None

    def add(self, sample: Sample) -> None:
        if self.samples and sample.at < self.samples[-1].at:
            raise ValueError("samples must be added in time order")
        if not self.samples or self.samples[-1].committed != sample.committed:
            self.changed_at = sample.at
        self.samples.append(sample)

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


def evaluate(history: PartitionHistory, policy: Policy) -> Verdict:
    """The partition's status now (at its latest sample), with the rule that decided it."""
    window = list(history.samples)
    complete = min(1.0, len(window) / policy.window)
    if not window:
        return Verdict(Status.OK, "no samples yet", 0.0)
    now = window[-1]
    if now.effective_lag == 0:
        return Verdict(Status.OK, "caught up", complete)
    rewound = _rewound(window)
    if rewound is not None:
        # checked before the zero-lag rule, as Burrow does since a rewind can follow zero lag
        return Verdict(Status.REWIND, f"committed offset went back from {rewound[0]} to {rewound[1]}", complete)
    recent = window[-policy.stop_samples:]
    if len(recent) == policy.stop_samples and all(s.owned is False for s in recent):
        return Verdict(Status.STOP, "no live member of the group owns the partition", complete)
    if any(s.effective_lag == 0 for s in window):
        return Verdict(Status.OK, "lag was zero within the window", complete)
    if policy.hold_seconds is not None:
        held = _holding(history, now, policy.hold_seconds)
        if held is not None:
            return held
    if len(window) < policy.min_samples:
        return Verdict(Status.OK, "window not yet filled", complete)
    if all(s.committed == now.committed for s in window):
        return Verdict(Status.STALL, f"committed offset unchanged over {len(window)} samples with lag", complete)
    if all(b.effective_lag >= a.effective_lag for a, b in pairwise(window)):
        return Verdict(Status.WARN, "committing, but the lag never decreased within the window", complete)
    return Verdict(Status.OK, "committing and catching up", complete)


def _rewound(window: Sequence[Sample]) -> tuple[int, int] | None:
    for a, b in pairwise(window):
        if a.committed is not None and b.committed is not None and b.committed < a.committed:
            return a.committed, b.committed
    return None


def _holding(history: PartitionHistory, now: Sample, hold: float) -> Verdict | None:
    """The saw-tooth rule for a group that holds records on purpose (docs/decisions/0008).

    The age of the oldest unconsumed record decides: a batcher partition holds its oldest event at
    most window + grace (+ slack for polls and sampling) before that event's window closes and
    the commit moves past it. Only when the age is unknown does the time since the committed
    offset last moved stand in for it.
    """
    complete = min(1.0, len(history.samples) / (history.samples.maxlen or 1))
    since_commit = now.at - history.changed_at if history.changed_at is not None else None
    if now.lag_seconds is not None:
        if now.lag_seconds <= hold:
            return Verdict(Status.OK, f"holding: oldest record {now.lag_seconds:.0f}s old <= {hold:.0f}s", complete)
        if since_commit is not None and since_commit <= hold:
            return Verdict(
                Status.WARN,
                f"behind: committing, but the oldest record is {now.lag_seconds:.0f}s old > {hold:.0f}s",
                complete,
            )
        return Verdict(
            Status.STALL, f"oldest record {now.lag_seconds:.0f}s old and no commit for more than {hold:.0f}s", complete
        )
    if since_commit is not None and since_commit <= hold:
        return Verdict(Status.OK, f"holding: committed moved {since_commit:.0f}s ago", complete)
    return None


def group_status(statuses: Iterable[Status]) -> Status:
    """Burrow's rule: the worst partition status, with STOP, STALL and REWIND reported as ERR."""
    worst = max(statuses, key=SEVERITY.__getitem__, default=Status.OK)
    return Status.ERR if SEVERITY[worst] >= SEVERITY[Status.ERR] else worst
