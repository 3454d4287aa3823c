"""DDSketch: quantiles within 1% relative error of the exact nearest-rank ones, exact merges, JSON round trip,
bounded size, and histogram inputs."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from observai.metrics.sketch import (
    ALPHA,
    GAMMA,
    MAX_BUCKETS,
    ZERO_THRESHOLD,
    Sketch,
    bucket_value,
    encoded_quantile,
    index_of,
    merge_encoded,
    merged_quantile,
    nearest_rank,
)

QUANTILES = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)
RELATIVE = ALPHA + 1e-9  # α, and float noise at bucket boundaries


def tolerance(truth: float) -> float:
    """α relative error; values below ZERO_THRESHOLD count as zeros (an absolute error under 1e-9)."""
    return max(RELATIVE * abs(truth), ZERO_THRESHOLD)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[nearest_rank(q, len(ordered)) - 1]


def sketch_of(values: list[float], max_buckets: int = MAX_BUCKETS) -> Sketch:
    sketch = Sketch(max_buckets)
    sketch.add_many(values)
    return sketch


lognormal = st.floats(min_value=-20.0, max_value=20.0).map(math.exp)  # log-uniform over ~17 decades
uniform = st.floats(min_value=0.0, max_value=1e4)
positive = st.one_of(lognormal, uniform, st.sampled_from([0.0, 1.0, 42.0, 1e-12]))
signed = st.tuples(positive, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])
distributions = st.one_of(
    st.lists(lognormal, min_size=1, max_size=300),
    st.lists(uniform, min_size=1, max_size=300),
    st.lists(signed, min_size=1, max_size=300),
    # repeats: a few distinct values many times
    st.tuples(st.lists(signed, min_size=1, max_size=5), st.integers(1, 50)).map(lambda t: t[0] * t[1]),
)


@settings(max_examples=300, deadline=None)
@given(values=distributions)
def test_quantiles_are_within_alpha_of_the_exact_nearest_rank_quantile(values: list[float]) -> None:
    # Given a sketch of random values (lognormal, uniform, negative and positive mixes, repeats)
    sketch = sketch_of(values)

    # When asking p0/p50/p90/p95/p99/p100 / Then each is within 1% of the exact quantile of the raw values
    assert sketch.count == len(values)
    for q in QUANTILES:
        estimate, truth = sketch.quantile(q), exact(values, q)
        assert estimate is not None
        assert abs(estimate - truth) <= tolerance(truth), (q, estimate, truth)


@settings(max_examples=200, deadline=None)
@given(a=st.lists(signed, max_size=200), b=st.lists(signed, max_size=200))
def test_merge_equals_the_sketch_of_both(a: list[float], b: list[float]) -> None:
    # Given sketches of two sets of values / When merged / Then it is the sketch of all of them, either way round
    assert sketch_of(a).merge(sketch_of(b)) == sketch_of(a + b)
    assert sketch_of(b).merge(sketch_of(a)) == sketch_of(a + b)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(signed, max_size=200))
def test_json_round_trip(values: list[float]) -> None:
    # Given a sketch / When encoded to JSON text and decoded / Then it is the same sketch with the same answers
    sketch = sketch_of(values)
    encoded = json.loads(json.dumps(sketch.to_json()))
    assert set(encoded) == {"p", "n", "z"} and all(isinstance(k, str) for k in encoded["p"])
    back = Sketch.from_json(encoded)
    assert back == sketch
    assert [back.quantile(q) for q in QUANTILES] == [sketch.quantile(q) for q in QUANTILES]


@settings(max_examples=100, deadline=None)
@given(
    a=st.lists(st.floats(min_value=-300, max_value=300).map(math.exp), max_size=300),
    b=st.lists(st.floats(min_value=-300, max_value=300).map(math.exp), max_size=300),
    max_buckets=st.integers(min_value=1, max_value=64),
)
def test_bucket_bound_is_respected_and_collapsing_keeps_merges_exact(
    a: list[float], b: list[float], max_buckets: int
) -> None:
    # Given values spanning 260 decades and a small bucket bound
    sketch = sketch_of(a + b, max_buckets)

    # Then each store keeps at most max_buckets consecutive indexes, and nothing is lost
    for store in (sketch.positive, sketch.negative):
        assert len(store.counts) <= max_buckets
        if store.counts:
            assert max(store.counts) - min(store.counts) < max_buckets
    assert sketch.count == len(a) + len(b)
    # And merging collapsed sketches gives the collapsed sketch of everything
    assert sketch_of(a, max_buckets).merge(sketch_of(b, max_buckets)) == sketch
    # And the high quantiles keep their accuracy (collapsing only touches the lowest buckets)
    if a + b and max_buckets >= 8:
        assert abs(sketch.quantile(1.0) - max(a + b)) <= tolerance(max(a + b))  # type: ignore[operator]


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(st.lists(st.floats(min_value=-700, max_value=700).map(math.exp) | signed, max_size=50), max_size=6)
)
def test_merging_encodings_equals_merging_sketches(parts: list[list[float]]) -> None:
    # Given sketches of parts of values spanning up to 600 decades (collapsing at 2048 buckets), JSON round-tripped
    encoded = [json.loads(json.dumps(sketch_of(part).to_json())) for part in parts]

    # When their encodings are merged as the aggregation job does
    merged = merge_encoded(encoded)

    # Then it is the sketch of every value, collapsed the same way
    everything = sketch_of([v for part in parts for v in part])
    assert Sketch.from_json(merged) == everything
    assert all(len(merged[store]) <= MAX_BUCKETS for store in ("p", "n"))
    # And its quantiles, read straight from the encoding, are the sketch's
    for q in QUANTILES:
        assert encoded_quantile(merged, q) == everything.quantile(q)


def _store(entries: list[tuple[int, int, bool]]) -> dict[str, int]:
    """An encoded store from (index, count, spelled with a leading zero) entries."""
    store: dict[str, int] = {}
    for index, count, padded in entries:
        key = (f"-0{-index}" if index < 0 else f"0{index}") if padded else str(index)
        store[key] = count
    return store


# Hand-made stores: indexes far apart (collapsing at MAX_BUCKETS), "01" beside "1"; in the negative store now and
# then a count that is not positive (never stored: the merging way).
indexes = st.one_of(st.integers(-40, 40), st.integers(-6000, 6000))
stores = st.lists(st.tuples(indexes, st.integers(1, 1000), st.booleans()), max_size=40).map(_store)
odd_stores = st.lists(st.tuples(indexes, st.integers(-2, 1000), st.just(False)), max_size=40).map(_store)
made = st.fixed_dictionaries({"p": stores, "n": stores | odd_stores, "z": st.integers(0, 20)})


@settings(max_examples=400, deadline=None)
@given(
    sketches=st.lists(
        st.one_of(
            made,
            st.lists(st.floats(min_value=-700, max_value=700).map(math.exp) | signed, max_size=60).map(
                lambda values: json.loads(json.dumps(sketch_of(values).to_json()))
            ),
        ),
        max_size=3,  # up to WALKED_SKETCHES walked, more merged first
    ),
    q=st.one_of(st.sampled_from(QUANTILES), st.floats(min_value=0.0, max_value=1.0)),
)
def test_the_merged_quantile_is_the_quantile_of_the_merged_encoding(sketches: list[dict], q: float) -> None:
    # Given sketches as stored (JSON round-tripped, up to 600 decades apart) and hand-made encodings (far indexes,
    # "01" beside "1", counts that are not positive)
    # When a quantile of them all is read without merging them first (how the query engine reads a slot)
    # Then it is the very quantile of their merged encoding, to the bit
    assert merged_quantile(sketches, q) == encoded_quantile(merge_encoded(sketches), q)


def test_the_merged_quantile_reads_collapsed_indexes_as_the_store_s_floor() -> None:
    # Given stores spanning 5,000 indexes (beyond MAX_BUCKETS: the lowest collapse into top − 2047), in two sketches
    sketches = [{"p": {"0": 1, "5000": 1}, "n": {"0": 1}, "z": 0}, {"p": {}, "n": {"5000": 1}, "z": 1}]
    # Then every rank reads as on the merged, collapsed encoding: the small magnitudes at the floor, 2953
    for q in (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0):
        assert merged_quantile(sketches, q) == encoded_quantile(merge_encoded(sketches), q)
    assert merged_quantile(sketches, 0.4) == -bucket_value(2953)
    assert merged_quantile(sketches, 0.8) == bucket_value(2953)


def test_the_default_bound_is_2048_buckets_per_store() -> None:
    # Given values over a ratio far beyond gamma^2048 (~10^17.8)
    sketch = sketch_of([10.0**e for e in range(-150, 150)] * 3 + [1.0 + i / 1000 for i in range(10_000)])
    # Then the store is bounded, and p99 / max are still exact to 1%
    assert len(sketch.positive.counts) <= MAX_BUCKETS == 2048
    assert sketch.quantile(1.0) == pytest.approx(1e149, rel=ALPHA)


def test_mapping_and_representatives() -> None:
    assert pytest.approx(1.01 / 0.99) == GAMMA
    for x in (1e-9, 0.5, 1.0, 1.0000001, 3.0, 1e300):
        i = index_of(x)
        assert GAMMA ** (i - 1) < x * (1 + 1e-12) and x <= GAMMA**i * (1 + 1e-12)
        assert abs(bucket_value(i) - x) <= RELATIVE * x
    sketch = Sketch()
    assert sketch.quantile(0.5) is None and sketch.count == 0
    sketch.add(float("nan"))
    sketch.add(float("inf"))
    sketch.add(5.0, count=0)
    assert sketch.count == 0
    sketch.add(0.0, count=3)
    sketch.add(-1e-10)
    assert sketch.to_json() == {"p": {}, "n": {}, "z": 4}
    with pytest.raises(ValueError):
        sketch.quantile(1.5)


def test_nearest_rank() -> None:
    assert [nearest_rank(q, 100) for q in (0.0, 0.5, 0.95, 0.99, 1.0)] == [1, 50, 95, 99, 100]
    assert nearest_rank(0.5, 1) == 1 and nearest_rank(0.9, 3) == 3


def test_explicit_histogram_buckets_go_to_their_midpoints_clamped_to_min_and_max() -> None:
    # Given a histogram with bounds 10, 20, 50 and known min 2 / max 80
    sketch = Sketch()
    sketch.add_histogram([10.0, 20.0, 50.0], [1, 2, 3, 4], min=2.0, max=80.0)

    # Then the open first and last buckets sit at min and max, the closed ones at their middles
    assert sketch.count == 10
    assert sketch.quantile(0.0) == pytest.approx(2.0, rel=ALPHA)
    assert sketch.quantile(0.2) == pytest.approx(15.0, rel=ALPHA)
    assert sketch.quantile(0.5) == pytest.approx(35.0, rel=ALPHA)
    assert sketch.quantile(1.0) == pytest.approx(80.0, rel=ALPHA)
    # And without min/max the open buckets use their finite bound; a middle clamped into [min, max]
    bare = Sketch()
    bare.add_histogram([10.0, 20.0], [1, 0, 1])
    assert [bare.quantile(0.0), bare.quantile(1.0)] == [pytest.approx(10.0, rel=ALPHA), pytest.approx(20, rel=ALPHA)]
    clamped = Sketch()
    clamped.add_histogram([0.0, 100.0], [0, 5, 0], min=1.0, max=3.0)
    assert clamped.quantile(0.5) == pytest.approx(3.0, rel=ALPHA)
    with pytest.raises(ValueError):
        Sketch().add_histogram([1.0], [1])


def test_exponential_histogram_buckets_go_to_their_midpoints() -> None:
    # Given scale 0 (base 2): positive bucket offset 3 → (8, 16], negative offset 1 → [-4, -2), and 2 zeros
    sketch = Sketch()
    sketch.add_exponential(0, 2, {"offset": 3, "counts": [5]}, {"offset": 1, "counts": [1]})
    assert sketch.count == 8 and sketch.zero == 2
    # Then the values sit at 2·upper/(base + 1): 32/3 ≈ 10.67 and −8/3
    assert sketch.quantile(1.0) == pytest.approx(32 / 3, rel=ALPHA)
    assert sketch.quantile(0.0) == pytest.approx(-8 / 3, rel=ALPHA)
    # And min/max clamp them
    clamped = Sketch()
    clamped.add_exponential(0, 0, {"offset": 3, "counts": [5]}, None, min=9.0, max=9.5)
    assert clamped.quantile(0.5) == pytest.approx(9.5, rel=ALPHA)
