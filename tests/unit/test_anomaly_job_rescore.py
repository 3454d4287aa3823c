"""The job's per-series scoring (plan_series, then score_series) over any split of a series into runs, with late
corrections inside the re-score horizon: the stored state, tail and base always lead to exactly the scores the
backtest gives over the final values, whatever the split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from observai.anomalies import job
from observai.anomalies.detection import score_points
from observai.anomalies.settings_models import DetectorSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = DetectorSettings.model_validate({"algorithm": "zscore", "window": 10}).model_dump()


def epoch(i: int) -> int:
    return int((T0 + timedelta(minutes=i)).timestamp())


class Series:
    """One series' row as the job keeps it (state, last_time, base) and its scored points by step."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.row: dict[str, Any] | None = None
        self.base: dict[str, Any] | None = None
        self.points: dict[int, tuple] = {}

    def run(self, read: list[tuple[int, float]]) -> bool:
        work = job._SeriesWork(self.key, {}, read, row=self.row)
        job.plan_series(work)
        if work.needs_base:
            work.base = self.base
        job.score_series(SETTINGS, work)
        if work.result is None:
            return False
        for p in work.scored:
            self.points[job._epoch(p.time)] = (p.value, p.expected, p.lower, p.upper, p.score, p.is_anomaly)
        last = max(work.result.points[-1].time, self.row["last_time"] if self.row else work.result.points[-1].time)
        self.row = {"id": 1, "state": work.state, "last_time": last, "anomalous": False}
        if work.base_changed:
            self.base = work.base
        return work.rescored


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=12, max_size=80),
    cuts=st.lists(st.integers(1, 7), min_size=1, max_size=40),
    late=st.lists(st.tuples(st.integers(0, 9), st.floats(-1e6, 1e6, allow_nan=False)), max_size=6),
    key=st.sampled_from(["0000000a", "7fffffff", "12345678"]),
)
# Found by CI: a late 1000000.0 over 999999.9999999999, within the job's tolerance.
@example(
    values=[0.0] * 5 + [999999.9999999999] + [0.0] * 6,
    cuts=[1, 6],
    late=[(0, 0.0), (0, 0.0), (1, 1000000.0)],
    key="0000000a",
)
def test_any_split_with_late_corrections_scores_what_the_backtest_scores(
    values: list[float], cuts: list[int], late: list[tuple[int, float]], key: str
) -> None:
    # Given a series scored in runs of a few steps each, each run reading its new steps and the horizon again,
    # some runs carrying a late correction of a step within the horizon
    final = list(values)
    series = Series(key + "0" * 32)
    done, run = 0, 0
    while done < len(final):
        step = cuts[run % len(cuts)]
        new_to = min(len(final), done + step)
        if run < len(late) and done > 0:
            back, value = late[run]
            i = max(0, done - 1 - back)
            # A correction within the job's tolerance is the same reading summed in another order (REL_TOLERANCE): the
            # job keeps the value it scored, so the final series keeps it too.
            if done - i <= job.HORIZON and job._changed(final[i], value):
                final[i] = value
        read_from = max(0, done - job.HORIZON)
        series.run([(epoch(i), final[i]) for i in range(read_from, new_to)])
        done, run = new_to, run + 1

    # Then every step holds the backtest's score over the final values
    expected = score_points(SETTINGS, None, [(T0 + timedelta(minutes=i), v) for i, v in enumerate(final)]).points
    got = [series.points[epoch(i)] for i in range(len(final))]
    assert got == [(p.value, p.expected, p.lower, p.upper, p.score, p.is_anomaly) for p in expected]


def test_an_unchanged_horizon_is_not_re_scored_and_a_changed_one_is() -> None:
    # Given a series scored over 30 steps
    values = [float(i % 5) for i in range(31)]
    series = Series("0" * 40)
    series.run([(epoch(i), values[i]) for i in range(30)])

    # When the next run reads the same horizon, then a run whose horizon has one step changed
    same = series.run([(epoch(i), values[i]) for i in range(30 - job.HORIZON, 31)])
    values[28] = 100.0
    changed = series.run([(epoch(i), values[i]) for i in range(31 - job.HORIZON, 31)])

    # Then only the second re-scored, and the series equals the backtest over the final values
    assert (same, changed) == (False, True)
    expected = score_points(SETTINGS, None, [(T0 + timedelta(minutes=i), v) for i, v in enumerate(values)]).points
    assert [series.points[epoch(i)][4] for i in range(31)] == [p.score for p in expected]


def test_a_correction_within_the_tolerance_keeps_the_scored_value() -> None:
    # Given a series scored up to a step of 999999.9999999999
    series = Series("0000000a" + "0" * 32)
    values = [0.0] * 5 + [999999.9999999999, 0.0]
    series.run([(epoch(i), v) for i, v in enumerate(values)])

    # When a later run reads that step as 1000000.0 (the same sum in another order: 1e-16 relative)
    rescored = series.run([(epoch(i), 1000000.0 if i == 5 else v) for i, v in enumerate([*values, 0.0])])

    # Then nothing is re-scored and the step keeps its value; a real correction is re-scored
    assert not rescored and series.points[epoch(5)][0] == 999999.9999999999
    assert series.run([(epoch(i), 5.0 if i == 5 else v) for i, v in enumerate([*values, 0.0, 0.0])])
    assert series.points[epoch(5)][0] == 5.0
