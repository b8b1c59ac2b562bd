"""The lag evaluation rules on synthetic histories (explicit sample times: minutes in microseconds)."""

from __future__ import annotations

import pytest
from support.burrow import history, s

from vaxflow.ops.burrow import Policy, Sample, Status, evaluate, group_status

POLICY = Policy(window=5, min_samples=3)


def test_caught_up_is_ok() -> None:
    v = evaluate(history([s(0, 10, 10), s(60, 20, 20)]), POLICY)
    assert v.status is Status.OK


def test_only_transaction_markers_left_counts_as_caught_up() -> None:
    """A transactional topic leaves a commit marker after the last record: lag 1, nothing to read."""
    samples = [s(t, 100, 101, pending=False) for t in range(0, 300, 60)]
    assert evaluate(history(samples), POLICY).status is Status.OK


def test_any_zero_lag_in_window_is_ok() -> None:
    samples = [s(0, 10, 10), s(60, 10, 15), s(120, 10, 20), s(180, 10, 25)]
    assert evaluate(history(samples), POLICY).status is Status.OK


def test_committed_unchanged_with_lag_is_stall() -> None:
    samples = [s(t, 10, 20 + t) for t in range(0, 300, 60)]
    v = evaluate(history(samples), POLICY)
    assert v.status is Status.STALL, v


def test_no_owner_is_stop_after_two_samples() -> None:
    first = evaluate(history([s(0, 10, 20, owned=False)]), POLICY)
    assert first.status is Status.OK  # one sample without an owner may be a rebalance
    v = evaluate(history([s(0, 10, 20, owned=False), s(60, 10, 30, owned=False)]), POLICY)
    assert v.status is Status.STOP


def test_lag_never_decreasing_while_committing_is_warn() -> None:
    samples = [s(0, 10, 20), s(60, 20, 35), s(120, 30, 50), s(180, 40, 70)]
    assert evaluate(history(samples), POLICY).status is Status.WARN


def test_lag_decreasing_somewhere_is_ok() -> None:
    samples = [s(0, 10, 30), s(60, 25, 40), s(120, 40, 50), s(180, 45, 60)]
    assert evaluate(history(samples), POLICY).status is Status.OK


def test_committed_going_back_is_rewind_even_after_zero_lag() -> None:
    samples = [s(0, 50, 50), s(60, 10, 55)]
    assert evaluate(history(samples), POLICY).status is Status.REWIND


def test_rewind_clears_once_it_leaves_the_window() -> None:
    samples = [s(0, 50, 50), s(60, 10, 55)] + [s(60 + 60 * i, 10 + 10 * i, 55) for i in range(1, 6)]
    assert evaluate(history(samples), POLICY).status is Status.OK


def test_saw_tooth_batcher_is_not_stall() -> None:
    """The batcher commits only when a 60 s window closes; sampled every 10 s its committed offset
    stands still for 60-70 s while lag grows. Plain Burrow rules say STALL; the hold rule says OK."""
    samples: list[Sample] = []
    committed, end = 0, 0
    for step in range(40):
        at = step * 10.0
        end += 50
        if step % 7 == 6:  # a window closed: commit up to the oldest event still held
            committed = end - 300
        oldest = at - (step // 7) * 70.0  # the oldest held event arrived when the window opened
        samples.append(s(at, committed, end, lag_seconds=oldest))
    plain = [evaluate(history(samples[: i + 1], window=6), Policy(window=6)).status for i in range(len(samples))]
    held = [evaluate(history(samples[: i + 1], window=6), Policy(window=6, hold_seconds=60 + 5 + 30)).status
            for i in range(len(samples))]
    assert Status.STALL in plain or Status.WARN in plain
    assert set(held) == {Status.OK}


def test_holding_batcher_that_stops_closing_windows_stalls() -> None:
    policy = Policy(window=6, hold_seconds=95)
    samples = [s(t, 100, 200 + t, lag_seconds=t + 5.0) for t in range(0, 400, 20)]
    v = evaluate(history(samples, window=6), policy)
    assert v.status is Status.STALL
    assert "no commit" in v.reason


def test_holding_batcher_that_commits_but_falls_behind_warns() -> None:
    policy = Policy(window=6, hold_seconds=95)
    samples = [s(t, 100 + t, 10_000, lag_seconds=500.0) for t in range(0, 120, 20)]
    assert evaluate(history(samples, window=6), policy).status is Status.WARN


def test_samples_out_of_order_are_refused() -> None:
    h = history([s(60, 1, 2)])
    with pytest.raises(ValueError, match="time order"):
        h.add(s(0, 1, 2))


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([Status.OK, Status.OK], Status.OK),
        ([Status.OK, Status.WARN], Status.WARN),
        ([Status.WARN, Status.STALL], Status.ERR),
        ([Status.STOP], Status.ERR),
        ([Status.REWIND, Status.OK], Status.ERR),
        ([], Status.OK),
    ],
)
def test_group_status_is_worst_partition_capped_at_err(statuses: list[Status], expected: Status) -> None:
    assert group_status(statuses) is expected
