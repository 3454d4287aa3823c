"""The detection fold (observai.anomalies.detection.score_points) and its algorithms: property tests (constant series
are never anomalous, a large spike is detected on the watched side only, scores stay in [0, 1], causality, one call
equals several resuming from the JSON state, irregular spacing, values from negative to 1e9) and each algorithm on a
synthetic series with a known anomaly (seasonal catches a missing daily peak that zscore misses, level_shift
re-baselines after a sustained shift, robust ignores a quantised flat series, auto says what it picked)."""

from __future__ import annotations

import itertools
import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from observai.anomalies.detection import Scored, score_points
from observai.anomalies.settings_models import ALGORITHMS, DetectorSettings
from pydantic import ValidationError

T0 = datetime(2025, 12, 6, tzinfo=UTC)  # a year old
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def detector(**overrides: Any) -> dict[str, Any]:
    return DetectorSettings.model_validate(overrides).model_dump()


def timed(values: list[float], steps_s: list[int] | None = None, start: datetime = T0) -> list[tuple[datetime, float]]:
    out, t = [], start
    for i, value in enumerate(values):
        out.append((t, value))
        t += timedelta(seconds=steps_s[i % len(steps_s)] if steps_s else 60)
    return out


algorithms = st.sampled_from(ALGORITHMS)
spacing = st.lists(st.integers(min_value=60, max_value=7200), min_size=1, max_size=20)
level = st.one_of(st.just(0.0), st.just(1e9), st.just(-1e9), st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))


# --- settings -------------------------------------------------------------------------------------------------


def test_settings_defaults_are_the_pinned_ones() -> None:
    assert DetectorSettings().model_dump() == {
        "algorithm": "auto",
        "window": 60,
        "deviations": 3.0,
        "direction": "both",
        "min_band_abs": 0.0,
        "min_band_rel": 0.05,
        "warmup": 60,
        "trigger_fraction": 0.5,
        "trigger_window": 3,
        "recovery_window": 5,
        "season": "auto",
    }
    assert DetectorSettings(window=300).warmup == 300
    assert DetectorSettings(window=300, warmup=20).warmup == 20


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("algorithm", "prophet"),
        ("window", 9),
        ("window", 10_081),
        ("window", 60.0),
        ("deviations", 0.4),
        ("deviations", "3"),
        ("deviations", True),
        ("direction", "up"),
        ("min_band_abs", -1),
        ("min_band_rel", math.inf),
        ("warmup", 1),
        ("trigger_fraction", 0),
        ("trigger_fraction", 1.5),
        ("trigger_window", 0),
        ("recovery_window", 0),
        ("season", "monthly"),
        ("sensitivity", 3),
    ],
)
def test_bad_settings_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        DetectorSettings.model_validate({field: value})
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


# --- properties -----------------------------------------------------------------------------------------------


@PROPERTY
@given(
    algorithm=algorithms,
    value=level,
    n=st.integers(min_value=0, max_value=400),
    steps=spacing,
    rel=st.sampled_from([0.0, 0.05]),
    direction=st.sampled_from(["above", "below", "both"]),
)
def test_a_constant_series_is_never_anomalous(
    algorithm: str, value: float, n: int, steps: list[int], rel: float, direction: str
) -> None:
    scored = score_points(
        detector(
            algorithm=algorithm, min_band_rel=rel, window=10, trigger_window=1, trigger_fraction=1, direction=direction
        ),
        None,
        timed([value] * n, steps),
    )
    assert not any(p.is_anomaly for p in scored.points)
    assert all(p.score == 0.0 for p in scored.points)
    assert all(p.expected == value for p in scored.points if p.expected is not None)


def noisy(seed: int, n: int, base: float, sigma: float) -> list[float]:
    rng = random.Random(seed)
    return [base + rng.gauss(0, sigma) for _ in range(n)]


@PROPERTY
@given(
    algorithm=algorithms,
    seed=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=-1e9, max_value=1e9),
    sign=st.sampled_from([1.0, -1.0]),
    k=st.floats(min_value=15, max_value=100),
    steps=spacing,
)
def test_a_large_spike_is_detected_on_its_side_only(
    algorithm: str, seed: int, base: float, sign: float, k: float, steps: list[int]
) -> None:
    # Given noise of σ = 1 (relative to a base anywhere from -1e9 to 1e9) and a spike of k·σ after the warm-up
    sigma = max(1.0, abs(base) * 1e-6)
    values = noisy(seed, 200, base, sigma)
    values[150] = base + sign * k * sigma
    points = timed(values, steps)
    common = {"algorithm": algorithm, "min_band_rel": 0.0, "trigger_window": 1, "trigger_fraction": 1.0}
    # When the detector watches both sides, or the spike's side: the spike is anomalous, and scores high
    for direction in ("both", "above" if sign > 0 else "below"):
        spike = score_points(detector(**common, direction=direction), None, points).points[150]
        assert spike.is_anomaly, (direction, spike)
        assert spike.score > 0.5
    # When it watches the other side only: the spike scores 0 and does not make the series anomalous
    other = "below" if sign > 0 else "above"
    before, spike = score_points(detector(**common, direction=other), None, points).points[149:151]
    assert spike.score == 0.0
    assert not spike.is_anomaly or before.is_anomaly  # (an earlier point may be recovering)


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
wild = st.lists(
    st.one_of(finite, st.integers(min_value=-5, max_value=5).map(float), st.just(1e9), st.just(0.0)),
    min_size=0,
    max_size=300,
)


@PROPERTY
@given(algorithm=algorithms, values=wild, steps=spacing, window=st.integers(min_value=10, max_value=40))
def test_scores_are_in_0_1_and_bands_are_finite(
    algorithm: str, values: list[float], steps: list[int], window: int
) -> None:
    scored = score_points(detector(algorithm=algorithm, window=window, min_band_rel=0.0), None, timed(values, steps))
    assert len(scored.points) == len(values)
    for p in scored.points:
        assert 0.0 <= p.score <= 1.0
        for bound in (p.expected, p.lower, p.upper):
            assert bound is None or math.isfinite(bound)
        if p.lower is not None and p.upper is not None:
            assert p.lower <= p.upper
    json.dumps(scored.state, allow_nan=False)  # JSON, no NaN


def steps_of(scored: Scored) -> list[tuple[Any, ...]]:
    return [(p.score, p.is_anomaly, p.expected, p.lower, p.upper, p.algorithm) for p in scored.points]


@PROPERTY
@given(
    algorithm=algorithms,
    seed=st.integers(min_value=0, max_value=1000),
    n=st.integers(min_value=1, max_value=600),
    cut=st.integers(min_value=0, max_value=600),
    steps=spacing,
)
def test_causal_a_prefix_scores_the_same(algorithm: str, seed: int, n: int, cut: int, steps: list[int]) -> None:
    rng = random.Random(seed)
    values = [rng.choice((rng.gauss(100, 5), 100.0, 400.0, -3.0)) for _ in range(n)]
    points = timed(values, steps)
    settings_ = detector(algorithm=algorithm, window=20)
    whole = steps_of(score_points(settings_, None, points))
    prefix = steps_of(score_points(settings_, None, points[: min(cut, n)]))
    assert prefix == whole[: len(prefix)]


@PROPERTY
@given(
    algorithm=algorithms,
    seed=st.integers(min_value=0, max_value=1000),
    n=st.integers(min_value=0, max_value=900),
    cuts=st.lists(st.integers(min_value=0, max_value=900), max_size=6),
    steps=spacing,
)
def test_one_call_equals_several_resuming_from_the_json_state(
    algorithm: str, seed: int, n: int, cuts: list[int], steps: list[int]
) -> None:
    rng = random.Random(seed)
    values = [rng.gauss(1e9, 1e3) if rng.random() < 0.9 else rng.uniform(-1e9, 1e9) for _ in range(n)]
    points = timed(values, steps)
    settings_ = detector(algorithm=algorithm, window=25, season="auto")
    whole = score_points(settings_, None, points)
    state: dict[str, Any] | None = None
    parts: list[tuple[Any, ...]] = []
    warmup = 0
    bounds = sorted({0, n, *[min(c, n) for c in cuts]})
    for lo, hi in itertools.pairwise(bounds):
        part = score_points(settings_, state, points[lo:hi])
        state = json.loads(json.dumps(part.state))  # as stored
        parts += steps_of(part)
        warmup += part.warmup_points
    assert parts == steps_of(whole)
    assert warmup == whole.warmup_points
    if n:
        assert state == json.loads(json.dumps(whole.state))


def test_the_state_does_not_grow_with_history() -> None:
    # Given a week and four weeks of 5-minute points
    rng = random.Random(3)
    week = [100 + 30 * math.sin(i * 2 * math.pi / 288) + rng.gauss(0, 2) for i in range(288 * 28)]
    sizes = {}
    for algorithm in ALGORITHMS:
        settings_ = detector(algorithm=algorithm)
        one = score_points(settings_, None, timed(week[: 288 * 7], [300])).state
        four = score_points(settings_, None, timed(week, [300])).state
        sizes[algorithm] = len(json.dumps(one)), len(json.dumps(four))
    # Then the state is as large after four weeks as after one (to a few per cent), and small
    for algorithm, (one_size, four_size) in sizes.items():
        assert four_size < 1.1 * one_size, (algorithm, sizes)
        assert four_size < 40_000, (algorithm, sizes)


def test_warm_up_points_have_no_band_and_are_counted() -> None:
    scored = score_points(detector(algorithm="zscore", window=20, warmup=30), None, timed([1.0, 50.0] * 40))
    assert scored.warmup_points == 30
    assert all(p.expected is None and p.lower is None and p.score == 0.0 for p in scored.points[:30])
    assert all(not p.is_anomaly for p in scored.points[:30])
    assert scored.points[30].expected is not None


def test_the_trigger_rule_fires_on_a_fraction_and_recovers_after_the_recovery_window() -> None:
    # Given a steady series, then 2 points out of 3 far outside, then back inside
    values = noisy(1, 100, 50.0, 1.0)
    values += [90.0, 50.0, 90.0] + [50.0] * 10
    scored = score_points(
        detector(algorithm="robust", trigger_window=3, trigger_fraction=0.6, recovery_window=4), None, timed(values)
    )
    verdicts = [p.is_anomaly for p in scored.points[100:]]
    # Then the first point out is not enough (1 of 3 < 0.6), the second is (2 of 3), and 4 points inside recover
    assert verdicts == [False, False, True, True, True, True, False] + [False] * 6


# --- the algorithms on series with known anomalies -------------------------------------------------------------


def daily_peaks(days: int, missing_day: int | None, seed: int = 5) -> list[tuple[datetime, float]]:
    """5-minute points: 100 at night, a peak to 200 around noon for two hours, noise of 2."""
    rng = random.Random(seed)
    out = []
    for i in range(288 * days):
        t = T0 + timedelta(minutes=5 * i)
        hours = t.hour + t.minute / 60
        peak = 100.0 * math.exp(-((hours - 12) ** 2) / 0.5)
        if (t - T0).days == missing_day:
            peak = 0.0
        out.append((t, 100.0 + peak + rng.gauss(0, 2)))
    return out


def anomalous_in(scored: Scored, points: list[tuple[datetime, float]], day: int, hours: tuple[int, int]) -> bool:
    return any(
        p.is_anomaly
        for p, (t, _) in zip(scored.points, points, strict=True)
        if (t - T0).days == day and hours[0] <= t.hour < hours[1]
    )


def test_seasonal_catches_a_missing_daily_peak_that_zscore_misses() -> None:
    # Given 8 days of a noon peak, missing on day 6
    points = daily_peaks(8, missing_day=6)
    seasonal = score_points(detector(algorithm="seasonal"), None, points)
    zscore = score_points(detector(algorithm="zscore"), None, points)
    auto = score_points(detector(algorithm="auto"), None, points)
    # Then seasonal (and auto, which picked it) flag the missing peak; zscore sees a quiet, normal noon
    assert anomalous_in(seasonal, points, 6, (11, 13))
    assert anomalous_in(auto, points, 6, (11, 13))
    assert not anomalous_in(zscore, points, 6, (11, 13))
    assert seasonal.points[-1].algorithm == "seasonal" and "daily" in seasonal.algorithm_reason
    assert auto.algorithm == "seasonal" and auto.algorithm_reason.startswith("auto: seasonal (daily)")
    # and the normal peak the next day is not an anomaly for seasonal
    assert not anomalous_in(seasonal, points, 7, (0, 24))


def test_seasonal_falls_back_until_three_days_and_says_so() -> None:
    points = daily_peaks(4, missing_day=None)
    scored = score_points(detector(algorithm="seasonal"), None, points[: 288 * 2])
    assert scored.algorithm == "robust"
    assert "of 3 days of history, robust until then" in scored.algorithm_reason
    later = score_points(detector(algorithm="seasonal"), None, points)
    assert later.algorithm == "seasonal"


def test_level_shift_rebaselines_after_a_sustained_shift() -> None:
    # Given a steady series that moves to a new level for good
    values = noisy(2, 200, 100.0, 1.0) + noisy(3, 200, 160.0, 1.0)
    points = timed(values)
    shifted = score_points(detector(algorithm="level_shift"), None, points)
    robust = score_points(detector(algorithm="robust"), None, points)
    # Then level_shift flags the shift, follows the new level within a few points and recovers quickly
    assert any(p.is_anomaly for p in shifted.points[200:206])
    settled = shifted.points[200 + 15]
    assert settled.expected is not None and abs(settled.expected - 160.0) < 3
    assert not any(p.is_anomaly for p in shifted.points[200 + 20 :])
    # while robust's median needs half a window of the new level
    assert robust.points[200 + 20].is_anomaly


@pytest.mark.parametrize("algorithm", ["robust", "auto", "level_shift"])
def test_a_quantised_flat_series_does_not_flood(algorithm: str) -> None:
    # Given a counter stuck at 3, sometimes 2 or 4 (one quantum), and an integer series around 0
    rng = random.Random(4)
    values = [3.0 + (rng.choice((-1.0, 1.0)) if rng.random() < 0.05 else 0.0) for _ in range(2000)]
    zeros = [float(rng.random() < 0.03) for _ in range(2000)]
    for series in (values, zeros):
        scored = score_points(detector(algorithm=algorithm), None, timed(series))
        assert not any(p.is_anomaly for p in scored.points), algorithm


def test_auto_says_what_it_picked_and_why() -> None:
    flat = score_points(detector(), None, timed([7.0] * 300))
    assert flat.algorithm == "robust" and "flat or quantised" in flat.algorithm_reason
    noise = score_points(detector(), None, timed(noisy(1, 300, 10.0, 1.0)))
    assert noise.algorithm == "level_shift" and noise.algorithm_reason.startswith("auto: level_shift")
    assert "days of history to judge seasonality" in noise.algorithm_reason
    assert score_points(detector(season="none"), None, timed(noisy(1, 300, 10.0, 1.0))).algorithm_reason.endswith(
        "season is none"
    )


def test_values_at_1e9_keep_their_precision() -> None:
    # Given noise of 0.01 with a spike of 1 (100 σ, a billionth of the level), around 0 and around 1e9
    noise = noisy(9, 600, 0.0, 0.01)
    noise[450] = 1.0
    for algorithm in ALGORITHMS:
        settings_ = detector(algorithm=algorithm, min_band_rel=0.0, trigger_window=1, trigger_fraction=1)
        at_zero = score_points(settings_, None, timed(noise))
        at_1e9 = score_points(settings_, None, timed([1e9 + v for v in noise]))
        # Then the spike is found at 1e9 as at 0, and the same points are outside the band (no rounding noise)
        assert at_1e9.points[450].is_anomaly, algorithm
        outside = [p.score > 0 for p in at_zero.points]
        assert [p.score > 0 for p in at_1e9.points] == outside, algorithm


def test_changed_settings_start_a_new_baseline() -> None:
    points = timed(noisy(1, 100, 5.0, 1.0))
    first = score_points(detector(algorithm="zscore"), None, points)
    again = score_points(detector(algorithm="robust"), first.state, points)
    assert again.warmup_points == 60  # another algorithm: the zscore state is not read as robust's


def test_settings_stored_without_a_field_read_its_default() -> None:
    points = timed(noisy(2, 200, 5.0, 1.0))
    partial = score_points({"algorithm": "zscore", "window": 30}, None, points)
    full = score_points(detector(algorithm="zscore", window=30), None, points)
    assert steps_of(partial) == steps_of(full)


def leak(seed: int, n: int, start: int, level: float, sigma: float, per_point: float) -> list[float]:
    rng = random.Random(seed)
    return [level + max(0, i - start) * per_point + rng.gauss(0, sigma) for i in range(n)]


def test_auto_announces_a_slow_drift_once_with_its_own_reason() -> None:
    # Given a steady series that starts leaking upwards at point 1,500: 20% of its level over 300 points, slow
    # enough that the rolling band follows it (level_shift alone never scores it)
    values = leak(7, 2500, 1500, 1000.0, 5.0, 200.0 / 300)
    points = timed(values, [120])
    auto = score_points(detector(), None, points)
    alone = score_points(detector(algorithm="level_shift"), None, points)

    # Then auto flags it as a drift, once, within 300 points of its start, with a band around the long-run level
    drifts = [i for i, p in enumerate(auto.points) if p.algorithm == "drift"]
    assert len(drifts) == 1 and 1500 < drifts[0] < 1800, drifts
    flagged = auto.points[drifts[0]]
    assert flagged.score > 0 and flagged.expected is not None and abs(flagged.expected - 1000.0) < 30
    assert max(p.score for p in alone.points[1500:1800]) < flagged.score
    # and says why (the reason of the point it scored)
    resumed = score_points(detector(), None, points[: drifts[0] + 1])
    assert resumed.algorithm == "drift" and resumed.algorithm_reason.startswith("auto: drift: the level crept up")


def test_no_drift_on_steady_noise_nor_after_an_ordinary_daily_cycle() -> None:
    # Given a noisy steady series, and a daily cycle at 5-minute steps for six days
    steady = timed(noisy(8, 4000, 50.0, 2.0))
    rng = random.Random(9)
    cycle = timed([100 + 40 * math.sin(i * 2 * math.pi / 288) + rng.gauss(0, 2) for i in range(288 * 6)], [300])
    # Then steady noise never drifts, and the cycle is a drift at most once (its first swing), never after a day
    assert not any(p.algorithm == "drift" for p in score_points(detector(), None, steady).points)
    cycled = [i for i, p in enumerate(score_points(detector(), None, cycle).points) if p.algorithm == "drift"]
    assert len(cycled) <= 1 and all(i < 288 * 2 for i in cycled), cycled
