"""Every verdict of the lag rules in full: status, the reason an operator reads, and `complete`.

The reason and the complete fraction go out in `GET /lag` next to the status, so each branch is
checked for all three, at its boundaries (a lag of 1, min_samples, flat lag, the hold limits, an
unknown record age), per docs/decisions/0008-lag-evaluation.md.
"""

from __future__ import annotations

import pytest
from support.burrow import history, s

from vaxflow.ops.burrow import PartitionHistory, Policy, Status, Verdict, evaluate, group_status

POLICY = Policy(window=5, min_samples=3)
HOLD = 95.0
HOLD_POLICY = Policy(window=6, hold_seconds=HOLD)


# --- the ordinary rules -------------------------------------------------------------------------


def test_no_samples_yet() -> None:
    assert evaluate(PartitionHistory(5), POLICY) == Verdict(Status.OK, "no samples yet", 0.0)


def test_caught_up_and_how_much_of_the_window_is_filled() -> None:
    assert evaluate(history([s(0, 10, 10)]), POLICY) == Verdict(Status.OK, "caught up", 0.2)
    assert evaluate(history([s(0, 10, 12), s(60, 12, 12)]), POLICY) == Verdict(Status.OK, "caught up", 0.4)


def test_complete_is_a_fraction_of_the_policy_window_at_most_one() -> None:
    samples = [s(t, 10, 10) for t in range(0, 480, 60)]  # 8 samples
    assert evaluate(history(samples, window=5), POLICY).complete == 1.0
    assert evaluate(history(samples, window=10), POLICY).complete == 1.0  # 8 held, policy window 5
    assert evaluate(history(samples[:3], window=10), Policy(window=10)).complete == 0.3


def test_a_lag_of_one_readable_record_is_not_caught_up() -> None:
    one = [s(0, 10, 11)]
    assert evaluate(history(one), POLICY) == Verdict(Status.OK, "window not yet filled", 0.2)
    stuck = [s(t, 10, 11) for t in (0, 60, 120)]
    assert evaluate(history(stuck), POLICY) == Verdict(
        Status.STALL, "committed offset unchanged over 3 samples with lag", 0.6
    )


def test_a_lag_of_one_transaction_marker_is_caught_up() -> None:
    assert evaluate(history([s(0, 10, 11, pending=False)]), POLICY) == Verdict(Status.OK, "caught up", 0.2)


def test_rewind_names_both_offsets() -> None:
    samples = [s(0, 50, 50), s(60, 10, 55)]
    assert evaluate(history(samples), POLICY) == Verdict(
        Status.REWIND, "committed offset went back from 50 to 10", 0.4
    )


def test_stop_reason() -> None:
    samples = [s(0, 10, 20, owned=False), s(60, 10, 30, owned=False)]
    assert evaluate(history(samples), POLICY) == Verdict(
        Status.STOP, "no live member of the group owns the partition", 0.4
    )


def test_an_unknown_owner_is_not_stop() -> None:
    samples = [s(0, 10, 20, owned=None), s(60, 10, 30, owned=None)]
    assert evaluate(history(samples), POLICY).status is Status.OK


def test_zero_lag_earlier_in_the_window_reason() -> None:
    samples = [s(0, 10, 10), s(60, 10, 15), s(120, 10, 20)]
    assert evaluate(history(samples), POLICY) == Verdict(Status.OK, "lag was zero within the window", 0.6)


def test_min_samples_boundary() -> None:
    stalled = [s(t, 10, 20 + t) for t in range(0, 300, 60)]
    assert evaluate(history(stalled[:2]), POLICY) == Verdict(Status.OK, "window not yet filled", 0.4)
    assert evaluate(history(stalled[:3]), POLICY) == Verdict(
        Status.STALL, "committed offset unchanged over 3 samples with lag", 0.6
    )
    assert evaluate(history(stalled), POLICY) == Verdict(
        Status.STALL, "committed offset unchanged over 5 samples with lag", 1.0
    )


def test_flat_lag_while_committing_never_decreased_so_warns() -> None:
    samples = [s(t, 10 + t, 30 + t) for t in range(0, 240, 60)]  # lag 20 throughout
    assert evaluate(history(samples), POLICY) == Verdict(
        Status.WARN, "committing, but the lag never decreased within the window", 0.8
    )


def test_committing_and_catching_up_reason() -> None:
    samples = [s(0, 10, 30), s(60, 25, 40), s(120, 40, 50)]
    assert evaluate(history(samples), POLICY) == Verdict(Status.OK, "committing and catching up", 0.6)


# --- the hold rule (the batcher's saw-tooth) ----------------------------------------------------


def test_hold_limit_is_inclusive_for_the_oldest_record() -> None:
    samples = [s(0, 100, 200, lag_seconds=10.0), s(20, 100, 220, lag_seconds=HOLD)]
    assert evaluate(history(samples, window=6), HOLD_POLICY) == Verdict(
        Status.OK, "holding: oldest record 95s old <= 95s", 2 / 6
    )


def test_older_than_the_hold_but_committed_within_it_warns() -> None:
    # committed last moved at t=5; at t=100 that is exactly the hold ago
    samples = [s(0, 90, 300, lag_seconds=100.0), s(5, 100, 300, lag_seconds=200.0),
               s(100, 100, 300, lag_seconds=295.0)]
    assert evaluate(history(samples, window=6), HOLD_POLICY) == Verdict(
        Status.WARN, "behind: committing, but the oldest record is 295s old > 95s", 3 / 6
    )


def test_older_than_the_hold_and_no_commit_within_it_stalls() -> None:
    samples = [s(0, 100, 300, lag_seconds=100.0), s(96, 100, 300, lag_seconds=196.0)]
    assert evaluate(history(samples, window=6), HOLD_POLICY) == Verdict(
        Status.STALL, "oldest record 196s old and no commit for more than 95s", 2 / 6
    )


def test_unknown_age_committed_within_the_hold_is_holding() -> None:
    samples = [s(0, 90, 300), s(20, 100, 300), s(60, 100, 320), s(115, 100, 340)]
    assert evaluate(history(samples, window=6), HOLD_POLICY) == Verdict(
        Status.OK, "holding: committed moved 95s ago", 4 / 6
    )


def test_unknown_age_first_observation_counts_as_a_commit() -> None:
    samples = [s(0, 100, 300), s(40, 100, 320), s(80, 100, 340)]
    assert evaluate(history(samples, window=6), HOLD_POLICY) == Verdict(
        Status.OK, "holding: committed moved 80s ago", 3 / 6
    )


def test_unknown_age_no_commit_within_the_hold_falls_to_the_ordinary_rules() -> None:
    samples = [s(0, 100, 300), s(40, 100, 320), s(96, 100, 340)]
    assert evaluate(history(samples, window=6), HOLD_POLICY) == Verdict(
        Status.STALL, "committed offset unchanged over 3 samples with lag", 3 / 6
    )


def test_unknown_age_no_commit_within_the_hold_before_min_samples_is_ok() -> None:
    samples = [s(0, 100, 300), s(96, 100, 340)]
    assert evaluate(history(samples, window=6), HOLD_POLICY) == Verdict(Status.OK, "window not yet filled", 2 / 6)


# --- the history and the group ------------------------------------------------------------------


def test_a_fresh_history_has_nothing() -> None:
    h = PartitionHistory(5)
    assert h.latest is None
    assert h.changed_at is None


def test_samples_at_the_same_time_are_in_order() -> None:
    h = history([s(60, 1, 2)])
    h.add(s(60, 2, 2))
    assert h.latest == s(60, 2, 2)
    assert h.changed_at == 60


def test_out_of_order_refusal_wording() -> None:
    h = history([s(60, 1, 2)])
    with pytest.raises(ValueError, match="order") as caught:
        h.add(s(59.5, 1, 2))
    assert str(caught.value) == "samples must be added in time order"


def test_changed_at_moves_only_with_the_committed_offset() -> None:
    h = history([s(0, 1, 5), s(10, 1, 6), s(20, 3, 7), s(30, 3, 8)])
    assert h.changed_at == 20


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [([Status.ERR], Status.ERR), ([Status.WARN, Status.ERR, Status.OK], Status.ERR), ([Status.WARN], Status.WARN)],
)
def test_group_status_err_stays_err(statuses: list[Status], expected: Status) -> None:
    assert group_status(statuses) is expected
