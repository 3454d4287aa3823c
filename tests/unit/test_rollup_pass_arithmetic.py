"""The vectorised pass's arithmetic gives Postgres' answers: sums added one by one in order (not numpy's pairwise
sum), and the sketch index of the C library's log on a bucket's edge."""

from __future__ import annotations

import json
import math
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from observai.metrics import rollup_pass, sketch_text
from observai.metrics.sketch import LOG_GAMMA


def _sequential(values: list[float]) -> float:
    total = values[0]
    for value in values[1:]:
        total += value
    return total


def test_segment_sums_are_added_one_by_one_in_order_for_short_and_long_segments() -> None:
    # Given segments of 1 to 300 values whose pairwise and sequential sums differ (large and tiny magnitudes mixed)
    rng = random.Random(7)
    lengths = [1, 2, 3, 8, 9, 31, 32, 33, 64, 129, 300]
    segments = [[rng.choice([1e16, 1.0, -1e16, 3.3, 1e-3]) * rng.random() for _ in range(n)] for n in lengths]
    values = np.array([v for s in segments for v in s])
    seg = np.repeat(np.arange(len(segments) + 1)[1:], lengths)  # segment 0 has no value

    # When the pass sums them
    total, has = rollup_pass.ordered_sum(values, seg, len(segments) + 1)

    # Then each sum is the sequential one, bit for bit, and the empty segment says so
    assert not has[0]
    assert [float(x) for x in total[1:]] == [_sequential(s) for s in segments]
    assert any(_sequential(s) != float(np.sum(np.array(s))) for s in segments)  # numpy's own sum would differ


def test_sketch_index_matches_the_c_library_everywhere_including_bucket_edges() -> None:
    # Given values on and around bucket edges (γ^k) and random magnitudes over 30 decades
    rng = random.Random(11)
    edges = [math.exp(LOG_GAMMA * k) for k in range(-900, 900, 7)]
    values = edges + [math.nextafter(x, math.inf) for x in edges] + [math.nextafter(x, 0) for x in edges]
    values += [10 ** rng.uniform(-9, 21) for _ in range(5000)]

    # When the pass computes their sketch indexes
    indexes = rollup_pass.sketch_index(np.array(values))

    # Then they are Sketch.add's (and Postgres') ceil(ln(x) / ln(γ))
    assert indexes.tolist() == [math.ceil(math.log(x) / LOG_GAMMA) for x in values]


def test_entries_collapse_each_store_below_its_top_index() -> None:
    # Given one row's entries spanning 3,000 indexes in the positive store and 2 in the negative one
    row = np.zeros(5, dtype=np.int64)
    store = np.array([1, 1, 1, 2, 2], dtype=np.int8)
    idx = np.array([-1000, 5, 2000, 3, 4], dtype=np.int64)
    n = np.array([2, 3, 4, 1, 1], dtype=np.int64)

    # When they are added up
    _, out_store, out_idx, out_n = rollup_pass.sum_entries(row, store, idx, n)

    # Then the positive store keeps 2,048 buckets: the lowest folded into top − 2047; the negative one is untouched
    assert list(zip(out_store.tolist(), out_idx.tolist(), out_n.tolist(), strict=True)) == [
        (1, -47, 2), (1, 5, 3), (1, 2000, 4), (2, 3, 1), (2, 4, 1),
    ]  # fmt: skip


def test_entry_quantiles_answer_what_the_encoded_sketch_answers() -> None:
    # Given 400 rows of random entries: negative, zero and positive values, single entries, long stores that
    # collapse, rows whose rank lands on a store's edge (q 0 and 1), and one row without entries
    from observai.metrics.sketch import encoded_quantile

    rng = random.Random(11)
    rows, stores, idxs, ns = [], [], [], []
    for row in range(400):
        if row == 17:
            continue
        for store in rng.sample([1, 2, 3], rng.randint(1, 3)):
            for idx in [0] if store == 3 else rng.sample(range(-40, 3000), rng.choice([1, 2, 5, 40, 3000])):
                rows.append(row)
                stores.append(store)
                idxs.append(idx)
                ns.append(rng.choice([1, 1, 2, 7, 1000]))
    e_row, e_store, e_idx, e_n = rollup_pass.sum_entries(
        np.array(rows, dtype=np.int64), np.array(stores, dtype=np.int8), np.array(idxs, dtype=np.int64),
        np.array(ns, dtype=np.int64),
    )  # fmt: skip
    numbers, texts = sketch_text.sketch_json(e_row, e_store, e_idx, e_n)
    encoded = dict(zip(numbers, (json.loads(t) for t in texts), strict=True))

    qs = (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0)

    # When the quantiles are taken from the entries
    found_rows, values = rollup_pass.entry_quantiles(e_row, e_store, e_idx, e_n, qs)

    # Then each is the encoded sketch's, bit for bit, for every row with entries and for no other
    assert found_rows == sorted(encoded) and 17 not in found_rows
    for q, found in zip(qs, values, strict=True):
        assert found == [encoded_quantile(encoded[r], q) for r in found_rows]


@settings(max_examples=200, deadline=None)
@given(
    columns=st.lists(st.sampled_from(["small", "negative", "bool", "wide", "float"]), min_size=1, max_size=4),
    size=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_sort_order_is_lexsorts_order_ties_included(columns: list[str], size: int, seed: int) -> None:
    # Given keys of any kinds: few distinct values (ties), negative ones, booleans, int64's whole range, floats
    rng = np.random.default_rng(seed)
    makers = {
        "small": lambda: rng.integers(0, 4, size),
        "negative": lambda: rng.integers(-(10**6), 10**6, size),
        "bool": lambda: rng.integers(0, 2, size).astype(np.bool_),
        "wide": lambda: rng.integers(-(2**62), 2**62, size),
        "float": lambda: rng.integers(0, 3, size).astype(np.float64),
    }
    keys = tuple(makers[c]() for c in columns)

    # When they are ordered / Then the order is lexsort's, tie for tie (both are stable)
    assert rollup_pass.sort_order(keys).tolist() == np.lexsort(keys).tolist()


@settings(max_examples=200, deadline=None)
@given(
    heads=st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=4),
    tails=st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=4),
    picks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=60),
)
def test_distinct_uuids_are_numpys_unique_in_bytewise_order(
    heads: list[bytes], tails: list[bytes], picks: list[tuple[int, int]]
) -> None:
    # Given 16-byte values, some sharing their first 8 bytes (the fast path's key) but not the rest
    from observai.metrics.touched import distinct_uuids

    column = np.array([heads[h % len(heads)] + tails[t % len(tails)] for h, t in picks], dtype="V16")

    # When they are numbered / Then as numpy.unique numbers them: the same distinct values, in the same order
    values, inverse = distinct_uuids(column)
    want_values, want_inverse = np.unique(column, return_inverse=True)
    assert values.tolist() == want_values.tolist() and inverse.tolist() == want_inverse.tolist()


@settings(max_examples=300, deadline=None)
@given(
    segment_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_segment_last_is_the_row_lexsort_puts_last_in_each_segment(segment_sizes: list[int], seed: int) -> None:
    # Given contiguous segments of rows with keys full of ties: booleans, small and extreme integers, floats with
    # signed zeros and infinities
    rng = np.random.default_rng(seed)
    n = sum(segment_sizes)
    seg = np.repeat(np.arange(len(segment_sizes)), segment_sizes)
    starts = np.flatnonzero(np.concatenate([[True], seg[1:] != seg[:-1]]))
    floats = np.array([0.0, -0.0, 1.5, -math.inf, math.inf, -2.0])
    keys = (
        floats[rng.integers(0, len(floats), n)],
        rng.integers(0, 2, n).astype(np.bool_),
        np.array([np.iinfo(np.int64).min, -1, 0, 7, np.iinfo(np.int64).max])[rng.integers(0, 5, n)],
        rng.integers(0, 2, n).astype(np.bool_),
    )

    # When each segment's last row is picked / Then it is lexsort's (ties to the latest row)
    rank = np.lexsort((*keys, seg))
    ends = np.append(starts[1:], n) - 1
    assert rollup_pass.segment_last(starts, seg, keys).tolist() == rank[ends].tolist()


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.integers(-(2**40), 2**40), max_size=50),
    wanted=st.lists(st.integers(-(2**40), 2**40), max_size=50),
    ascending=st.booleans(),
)
def test_among_is_isin(keys: list[int], wanted: list[int], ascending: bool) -> None:
    # Given keys ascending (the fast path) or in any order (isin's), and keys looked for among them
    k = np.array(sorted(keys) if ascending else keys, dtype=np.int64)
    w = np.array(wanted + keys[:3], dtype=np.int64)

    # When they are looked up / Then the answer is isin's
    assert rollup_pass._among(w, k).tolist() == np.isin(w, k).tolist()
