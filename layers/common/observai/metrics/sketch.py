"""DDSketch: a mergeable quantile sketch with relative accuracy ALPHA = 1% (pure Python, no dependency).

Values are counted in logarithmic buckets: with gamma = (1 + α) / (1 − α), a positive value x goes to
index i = ceil(log(x) / log(gamma)), the bucket (gamma^(i−1), gamma^i]; a negative value goes, by |x|,
to a second store; zeros (|x| < ZERO_THRESHOLD) are counted apart. A quantile returns the bucket's
representative 2·gamma^i / (gamma + 1), within α of every value of the bucket, so the quantile of the
sketch is within α relative error of the exact quantile of the values (same rank definition: nearest rank,
see ``nearest_rank``); values below the zero threshold read as 0 (an absolute error under 1e-9).
Non-finite values (NaN, ±inf) are ignored.

Encoding (what metric_rollups.sketch stores): ``{"p": {"<index>": count}, "n": {...}, "z": zero_count}``.
A 1m row of one finite gauge value stores none (null): its sketch is that value's one entry, which
``observai.metrics.sketch_sql.sketch_text`` reads from the row's min (SQL reading 1m sketches uses it).
Two sketches merge by adding counts per (store, index), in Python (``merge``, or ``merge_encoded`` on the
encoding: how the query engine merges a slot's sketches) or in SQL (``SQL_MERGE``: jsonb_each_text, sum per key,
jsonb_object_agg; the aggregation job keeps sketches as rows of entries, ``observai.metrics.sketch_sql``).

Bounded size: each store keeps at most MAX_BUCKETS (2048) buckets, the indexes max−2047 .. max; counts of
lower indexes are collapsed into index max−2047 (DDSketch's "collapsing lowest" store). The rule depends on
the maximum index only, so merging in any order gives the same sketch as adding all values to one. 2048
buckets span a ratio of gamma^2048 ≈ 10^17.8 between the smallest and the largest |value| of a store; only
beyond that do the lowest quantiles lose accuracy (the high ones, which dashboards watch, never do).

Histograms feed sketches with ``add_histogram`` (explicit bounds) and ``add_exponential`` (OTLP exponential
buckets): every bucket's count is placed at one representative value, so a percentile from a histogram is
only as precise as the histogram's buckets: the error is bounded by the bucket widths, not by α. Summaries
(precomputed quantiles) cannot be merged and feed no sketch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
ZERO_THRESHOLD = 1e-9
MAX_BUCKETS = 2048
# merged_quantile walks the entries of at most this many sketches; more are merged first.
WALKED_SKETCHES = 2
_MAX_EXP = 709.0  # math.exp overflows beyond ~709.78

# Merging sketches in SQL: the merged sketch of the rows of a CTE `sketches(sketch jsonb)` (any query: e.g. the
# rollups of a group of series over a range), with Sketch's collapsing rule; null when no row has a sketch.
# Use: "with sketches as (<query>), " + SQL_MERGE; 1m rows: select sketch_sql.sketch_text("r")::jsonb as sketch.
SQL_MERGE = f"""
e as (
    select s.store, k.key::integer as idx, k.value::bigint as n
    from sketches r
    cross join lateral (values ('p', r.sketch -> 'p'), ('n', r.sketch -> 'n')) as s(store, obj)
    cross join lateral jsonb_each_text(s.obj) as k
    where r.sketch is not null
), c as (
    select store, greatest(idx, max(idx) over (partition by store) - {MAX_BUCKETS - 1}) as idx, n from e
)
select case when count(*) > 0 then jsonb_build_object(
    'p', coalesce((select jsonb_object_agg(idx::text, n) from
        (select idx, sum(n)::bigint as n from c where store = 'p' group by idx) p), '{{}}'::jsonb),
    'n', coalesce((select jsonb_object_agg(idx::text, n) from
        (select idx, sum(n)::bigint as n from c where store = 'n' group by idx) n), '{{}}'::jsonb),
    'z', coalesce(sum((sketch ->> 'z')::bigint), 0)) end as sketch
from sketches where sketch is not null
"""


def merge_encoded(sketches: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sketches in the stored encoding merged by adding counts per (store, index), then collapsed as ``Sketch`` does
    (the same counts as ``Sketch.merge``, without building Sketch objects: the aggregation job merges many)."""
    positive: dict[str, int] = {}
    negative: dict[str, int] = {}
    zero = 0
    for sketch in sketches:
        for index, count in (sketch.get("p") or {}).items():
            positive[index] = positive.get(index, 0) + count
        for index, count in (sketch.get("n") or {}).items():
            negative[index] = negative.get(index, 0) + count
        zero += sketch.get("z") or 0
    return {"p": _collapsed(positive), "n": _collapsed(negative), "z": zero}


def encoded_quantile(encoded: Mapping[str, Any], q: float) -> float | None:
    """``Sketch.from_json(encoded).quantile(q)`` without building the Sketch (the query engine reads many): the
    encoding must be collapsed already (``merge_encoded``'s are)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be between 0 and 1")
    negative = _counts(encoded.get("n"))
    positive = _counts(encoded.get("p"))
    zero = int(encoded.get("z") or 0)
    below = sum(negative.values()) + zero  # values under the positive store's
    total = below + sum(positive.values())
    if total == 0:
        return None
    rank = nearest_rank(q, total)
    if rank > below:
        # In the positive store: walk its buckets from the nearer end (a p99 passes a few buckets, not all).
        rank -= below
        above = total - below
        if rank > above // 2:
            for index in sorted(positive, reverse=True):
                above -= positive[index]
                if above < rank:
                    return bucket_value(index)
        else:
            seen = 0
            for index in sorted(positive):
                seen += positive[index]
                if seen >= rank:
                    return bucket_value(index)
        raise AssertionError("unreachable: rank <= count")
    seen = 0
    for index in sorted(negative, reverse=True):  # most negative first
        seen += negative[index]
        if seen >= rank:
            return -bucket_value(index)
    return 0.0  # rank <= below: among the zeros


def merged_quantile(sketches: Sequence[Mapping[str, Any]], q: float) -> float | None:
    """``encoded_quantile(merge_encoded(sketches), q)`` without building the merged sketch (the query engine reads
    a quantile per group and slot from a dozen small sketches): every sketch's (index, count) entries sorted by
    index and walked, the indexes below a store's top − MAX_BUCKETS + 1 read as that one (the collapsing rule).
    Entries of one index are adjacent, so the walk crosses the rank at the same index as on the merged counts.
    Faster for one or two sketches (a slot's group row, and its raw values): twice as fast on a 1h row; many small
    sketches (a dozen 5-minute rows) merge faster as dicts, and take that way. So does a count that is not
    positive (never stored), which the merging way drops after merging."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be between 0 and 1")
    if len(sketches) > WALKED_SKETCHES:
        return encoded_quantile(merge_encoded(sketches), q)
    # Every store's keys and counts, gathered by C-level extends (the sketches are many and small).
    p_keys: list[str] = []
    p_counts: list[Any] = []
    n_keys: list[str] = []
    n_counts: list[Any] = []
    zero = 0
    for sketch in sketches:
        if store := sketch.get("p"):
            p_keys += store
            p_counts += store.values()
        if store := sketch.get("n"):
            n_keys += store
            n_counts += store.values()
        zero += sketch.get("z") or 0
    p_counts = list(map(int, p_counts))
    n_counts = list(map(int, n_counts))
    if (p_counts and min(p_counts) <= 0) or (n_counts and min(n_counts) <= 0):
        return encoded_quantile(merge_encoded(sketches), q)
    zero = int(zero)
    below = sum(n_counts) + zero  # values under the positive store's
    above = sum(p_counts)
    total = below + above
    if total == 0:
        return None
    rank = nearest_rank(q, total)
    if rank > below:
        positive = sorted(zip(map(int, p_keys), p_counts, strict=True))
        floor = positive[-1][0] - MAX_BUCKETS + 1
        rank -= below
        # From the nearer end, as encoded_quantile walks (a p99 passes a few entries, not all).
        if rank > above // 2:
            for index, count in reversed(positive):
                above -= count
                if above < rank:
                    return bucket_value(max(index, floor))
        else:
            seen = 0
            for index, count in positive:
                seen += count
                if seen >= rank:
                    return bucket_value(max(index, floor))
        raise AssertionError("unreachable: rank <= count")
    if n_keys:
        negative = sorted(zip(map(int, n_keys), n_counts, strict=True))
        floor = negative[-1][0] - MAX_BUCKETS + 1
        seen = 0
        for index, count in reversed(negative):  # most negative first
            seen += count
            if seen >= rank:
                return -bucket_value(max(index, floor))
    return 0.0  # rank <= below: among the zeros


def _counts(store: Mapping[str, Any] | None) -> dict[int, int]:
    """An encoded store's positive counts by integer index."""
    if not store:
        return {}
    counts = dict(zip(map(int, store), map(int, store.values()), strict=True))
    if len(counts) != len(store) or min(counts.values()) <= 0:
        # Not one key per index ("1" and "01"), or counts to drop: the slow way.
        counts = {}
        for key, count in store.items():
            if int(count) > 0:
                counts[int(key)] = counts.get(int(key), 0) + int(count)
    return counts


def _collapsed(store: dict[str, int]) -> dict[str, int]:
    """A store's counts with the indexes below (top − MAX_BUCKETS + 1) folded into that one."""
    if len(store) <= 1:
        return store
    indexes = [int(i) for i in store]
    top = max(indexes)
    floor = top - MAX_BUCKETS + 1
    if min(indexes) >= floor:
        return store
    out: dict[str, int] = {}
    for index, count in zip(indexes, store.values(), strict=True):
        key = str(max(index, floor))
        out[key] = out.get(key, 0) + count
    return out


def nearest_rank(q: float, n: int) -> int:
    """The 1-based rank of quantile ``q`` among ``n`` sorted values: ceil(q·n), at least 1 (nearest-rank method).

    A tiny tolerance absorbs float noise (0.95 × 100 = 95.00000000000001 is rank 95, not 96).
    """
    if n <= 0:
        raise ValueError("no values")
    return min(n, max(1, math.ceil(q * n - 1e-9)))


def index_of(magnitude: float) -> int:
    """The bucket index of a positive magnitude (>= ZERO_THRESHOLD)."""
    return math.ceil(math.log(magnitude) / LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative of bucket ``index``: 2·gamma^i / (gamma + 1), within α of every value of the bucket."""
    exponent = index * LOG_GAMMA
    return 2.0 * math.exp(min(exponent, _MAX_EXP)) / (GAMMA + 1)


class _Store:
    """Counts per index, at most ``max_buckets`` consecutive indexes ending at the largest one seen."""

    __slots__ = ("counts", "max_buckets", "top")

    def __init__(self, max_buckets: int) -> None:
        self.counts: dict[int, int] = {}
        self.max_buckets = max_buckets
        self.top: int | None = None

    def add(self, index: int, count: int) -> None:
        if self.top is None or index > self.top:
            self.top = index
            floor = index - self.max_buckets + 1
            if self.counts and min(self.counts) < floor:
                self._collapse(floor)
        else:
            index = max(index, self.top - self.max_buckets + 1)
        self.counts[index] = self.counts.get(index, 0) + count

    def _collapse(self, floor: int) -> None:
        folded = 0
        for index in [i for i in self.counts if i < floor]:
            folded += self.counts.pop(index)
        if folded:
            self.counts[floor] = self.counts.get(floor, 0) + folded

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, int]:
        return {str(i): c for i, c in sorted(self.counts.items())}


class Sketch:
    """A DDSketch with relative accuracy ALPHA; see the module docstring."""

    __slots__ = ("negative", "positive", "zero")

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        if max_buckets < 1:
            raise ValueError("max_buckets must be at least 1")
        self.positive = _Store(max_buckets)
        self.negative = _Store(max_buckets)
        self.zero = 0

    # --- building -------------------------------------------------------------------------------

    def add(self, value: float, count: int = 1) -> None:
        """Count ``value`` ``count`` times (non-finite values and non-positive counts are ignored)."""
        if count <= 0 or not math.isfinite(value):
            return
        magnitude = abs(value)
        if magnitude < ZERO_THRESHOLD:
            self.zero += count
        elif value > 0:
            self.positive.add(index_of(magnitude), count)
        else:
            self.negative.add(index_of(magnitude), count)

    def add_many(self, values: Iterable[float]) -> None:
        for value in values:
            self.add(value)

    def merge(self, other: Sketch) -> Sketch:
        """Add ``other``'s counts to this sketch (in place); returns self."""
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            # The larger indexes first: collapsing happens once, at the final top.
            for index, count in sorted(theirs.counts.items(), reverse=True):
                mine.add(index, count)
        self.zero += other.zero
        return self

    def add_histogram(
        self, bounds: Sequence[float], counts: Sequence[int], min: float | None = None, max: float | None = None
    ) -> None:
        """An explicit-bucket histogram (OTLP): bucket i is (bounds[i−1], bounds[i]], the first (−inf, bounds[0]],
        the last (bounds[-1], +inf). Each bucket's count goes to one representative: the middle of the bucket
        clamped to [min, max]; the open first and last buckets use min and max when known (else their finite
        bound). Percentiles from this are as precise as the bucket widths allow, not α."""
        if len(counts) != len(bounds) + 1:
            raise ValueError("a histogram has one more count than bounds")
        last = len(counts) - 1
        for i, count in enumerate(counts):
            if count <= 0:
                continue
            lower = bounds[i - 1] if i > 0 else None
            upper = bounds[i] if i < last else None
            if lower is None and upper is None:  # no bounds at all: one bucket
                rep = (min + max) / 2 if min is not None and max is not None else (min if min is not None else max)
            elif lower is None:
                rep = min if min is not None else upper
            elif upper is None:
                rep = max if max is not None else lower
            else:
                rep = (lower + upper) / 2
            if rep is None:
                continue
            self.add(_clamp(rep, min, max), count)

    def add_exponential(
        self,
        scale: int,
        zero_count: int,
        positive: Mapping[str, Any] | None,
        negative: Mapping[str, Any] | None,
        min: float | None = None,
        max: float | None = None,
    ) -> None:
        """An OTLP exponential histogram: with base = 2^(2^−scale), bucket offset+i holds (base^(offset+i),
        base^(offset+i+1)]; its count goes to the bucket's midpoint in relative terms (2·upper / (base + 1)),
        clamped to [min, max]. Negative buckets likewise by |x|."""
        if zero_count > 0:
            self.zero += int(zero_count)
        log_base = math.log(2.0) * 2.0 ** (-scale)
        base = math.exp(log_base)
        for sign, buckets in ((1.0, positive), (-1.0, negative)):
            if not buckets:
                continue
            offset = int(buckets.get("offset", 0))
            for i, count in enumerate(buckets.get("counts") or ()):
                if count <= 0:
                    continue
                exponent = (offset + i + 1) * log_base
                upper = math.exp(exponent if exponent < _MAX_EXP else _MAX_EXP)
                self.add(_clamp(sign * 2.0 * upper / (base + 1), min, max), int(count))

    # --- reading --------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self.positive.total + self.negative.total + self.zero

    def __len__(self) -> int:
        """Buckets in use (both stores, and the zero count as one)."""
        return len(self.positive.counts) + len(self.negative.counts) + (1 if self.zero else 0)

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1) by nearest rank, within α relative error; None when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be between 0 and 1")
        total = self.count
        if total == 0:
            return None
        rank = nearest_rank(q, total)
        seen = 0
        for index in sorted(self.negative.counts, reverse=True):  # most negative first
            seen += self.negative.counts[index]
            if seen >= rank:
                return -bucket_value(index)
        seen += self.zero
        if seen >= rank:
            return 0.0
        for index in sorted(self.positive.counts):
            seen += self.positive.counts[index]
            if seen >= rank:
                return bucket_value(index)
        raise AssertionError("unreachable: rank <= count")

    # --- encoding -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"p": self.positive.to_json(), "n": self.negative.to_json(), "z": self.zero}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, max_buckets: int = MAX_BUCKETS) -> Sketch:
        sketch = cls(max_buckets)
        if not data:
            return sketch
        for key, store in (("p", sketch.positive), ("n", sketch.negative)):
            items = sorted(((int(i), int(c)) for i, c in (data.get(key) or {}).items()), reverse=True)
            for index, count in items:
                if count > 0:
                    store.add(index, count)
        sketch.zero = int(data.get("z") or 0)
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return (
            self.positive.counts == other.positive.counts
            and self.negative.counts == other.negative.counts
            and self.zero == other.zero
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Sketch(count={self.count}, buckets={len(self)})"


def _clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value
