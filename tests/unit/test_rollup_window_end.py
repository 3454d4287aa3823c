"""Where a roll-up window ends, from the backlog's ingest transactions (observai.metrics.rollup._cut)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from observai.metrics.rollup import _cut

T0 = datetime(2026, 12, 6, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


BACKLOG = [(at(1), 40), (at(2), 40), (at(3), 40), (at(4), 500), (at(5), 10)]


def test_a_window_ends_at_the_last_transaction_that_keeps_it_within_max_points() -> None:
    # Given transactions of 40, 40, 40, 500 and 10 points
    # When windows of at most 100 points are cut from successive watermarks
    # Then each ends before the transaction that would overflow it, never inside one
    assert _cut(BACKLOG, at(0), at(10), 100) == at(2)
    assert _cut(BACKLOG, at(2), at(10), 100) == at(3)
    # And a transaction larger than max_points alone is taken whole
    assert _cut(BACKLOG, at(3), at(10), 100) == at(4)


def test_no_cut_when_what_is_known_up_to_the_bound_fits() -> None:
    # Given the same backlog, a bound before the big transaction, and a watermark after it
    # Then nothing to cut: the window runs to the bound
    assert _cut(BACKLOG, at(0), at(2), 100) is None
    assert _cut(BACKLOG, at(4), at(10), 100) is None
    assert _cut([], at(0), at(10), 100) is None
    # And transactions at or before the watermark are not counted
    assert _cut(BACKLOG, at(1), at(3), 80) is None
