"""What the points of a histogram, exponential histogram or summary series add to buckets of observations: the one
rule the aggregation job (its 1-minute rollups) and the query engine (raw points, at any step) both apply, so that a
percentile, count or sum reads the same from raw points as from the rollups.

- delta temporality: each point is its own observations (count, sum, min, max, and a sketch built from its buckets:
  ``Sketch.add_histogram`` / ``add_exponential``);
- cumulative (and summaries, always cumulative): the difference from the series' previous point, reset-aware (the
  count dropped, or the start time moved forward: the point counts whole). Cumulative min/max can only be estimated:
  from the sketch of the difference, clamped to the point's min/max. The previous point counts when it lies within
  ANCHOR_LOOKBACK before the point's minute (what the job's anchor lookback gives); a first point without one counts
  whole when its start time lies within the lookback (a new series), else it adds nothing (unknown baseline);
- summaries add count and sum only (their quantiles cannot be merged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from observai.metrics.sketch import Sketch

# How far back the point before a bucket is looked for (counters and cumulative histograms).
ANCHOR_LOOKBACK = timedelta(days=1)


@dataclass(slots=True)
class Bucket:
    """The observations of one series in one bucket (bucket_start: its start)."""

    org_id: Any
    project_id: Any
    series_id: int
    bucket_start: datetime
    count: int = 0
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    last_time: datetime | None = None
    sketch: Sketch = field(default_factory=Sketch)

    def add(
        self, count: int, sum_: float | None, min_: float | None, max_: float | None, sketch: Sketch | None
    ) -> None:
        """Merge observations into this bucket (a point's delta, or another bucket)."""
        self.count += count
        if sum_ is not None:
            self.sum = sum_ if self.sum is None else self.sum + sum_
        if min_ is not None:
            self.min = min_ if self.min is None else min(self.min, min_)
        if max_ is not None:
            self.max = max_ if self.max is None else max(self.max, max_)
        if sketch is not None:
            self.sketch.merge(sketch)


def minute_of(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def distribution_buckets(
    rows: Iterable[dict[str, Any]], bucket_of: Callable[[datetime], datetime] = minute_of
) -> list[Bucket]:
    """Rows ordered by series, range, time (anchors first in their range) → buckets of observations (``bucket_of``:
    a time's bucket start; 1 minute by default). A row holds the point (time, start_time, count, sum, min, max,
    distribution), its series (org_id, project_id, series_id, type, temporality), range_start (the previous point
    counts within one range only) and anchor (true: a point before the range, only the baseline of the next)."""
    buckets: dict[tuple[Any, int, datetime], Bucket] = {}
    prev: dict[str, Any] | None = None
    prev_key: tuple[Any, int, datetime] | None = None
    for row in rows:
        key = (row["project_id"], row["series_id"], row["range_start"])
        if key != prev_key:
            prev, prev_key = None, key
        if row["anchor"]:
            prev = row
            continue
        if prev is not None and prev["time"] < minute_of(row["time"]) - ANCHOR_LOOKBACK:
            prev = None  # too old to be the baseline (the job looks no further back)
        delta = _observations(row, prev)
        prev = row
        start = bucket_of(row["time"])
        bucket = buckets.get((row["project_id"], row["series_id"], start))
        if bucket is None:
            bucket = Bucket(row["org_id"], row["project_id"], row["series_id"], start)
            buckets[(row["project_id"], row["series_id"], start)] = bucket
        bucket.last_time = row["time"] if bucket.last_time is None else max(bucket.last_time, row["time"])
        if delta is None:
            continue
        bucket.add(delta.count, delta.sum, delta.min, delta.max, delta.sketch)
    return list(buckets.values())


@dataclass(slots=True)
class _Observations:
    count: int
    sum: float | None
    min: float | None
    max: float | None
    sketch: Sketch | None


def _observations(point: dict[str, Any], prev: dict[str, Any] | None) -> _Observations | None:
    """What a point adds to its bucket: itself (delta temporality, or after a reset) or its difference from the
    previous point (cumulative). None when a cumulative series' first point has an unknown baseline."""
    kind = point["type"]
    cumulative = kind == "summary" or point["temporality"] != "delta"
    if not cumulative:
        return _whole(point)
    if prev is None:
        start = point["start_time"]
        if start is not None and start >= point["time"] - ANCHOR_LOOKBACK:
            return _whole(point)  # a new series: everything since its start is new
        return None
    if _reset(point, prev):
        return _whole(point)
    count = int(point["count"] or 0) - int(prev["count"] or 0)
    total = point["sum"] - prev["sum"] if point["sum"] is not None and prev["sum"] is not None else None
    if kind == "summary":
        return _Observations(count, total, None, None, None)
    sketch = _difference_sketch(kind, point, prev)
    if sketch is None:  # bucket layouts changed: take the point whole
        return _whole(point)
    low, high = (sketch.quantile(0.0), sketch.quantile(1.0)) if sketch.count else (None, None)
    low, high = _clamp(low, point["min"], point["max"]), _clamp(high, point["min"], point["max"])
    return _Observations(count, total, low, high, sketch)


def _reset(point: dict[str, Any], prev: dict[str, Any]) -> bool:
    if (point["count"] or 0) < (prev["count"] or 0):
        return True
    start, prev_start = point["start_time"], prev["start_time"]
    return start is not None and prev_start is not None and start > prev_start


def _whole(point: dict[str, Any]) -> _Observations:
    kind = point["type"]
    sketch = None
    dist = point["distribution"] or {}
    if kind == "histogram" and dist.get("counts"):
        sketch = Sketch()
        sketch.add_histogram(dist.get("bounds") or [], dist["counts"], point["min"], point["max"])
    elif kind == "exponential_histogram":
        sketch = Sketch()
        sketch.add_exponential(
            int(dist.get("scale") or 0),
            int(dist.get("zero_count") or 0),
            dist.get("positive"),
            dist.get("negative"),
            point["min"],
            point["max"],
        )
    return _Observations(int(point["count"] or 0), point["sum"], point["min"], point["max"], sketch)


def _difference_sketch(kind: str, point: dict[str, Any], prev: dict[str, Any]) -> Sketch | None:
    dist, before = point["distribution"] or {}, prev["distribution"] or {}
    sketch = Sketch()
    if kind == "histogram":
        bounds, counts, prev_counts = dist.get("bounds") or [], dist.get("counts") or [], before.get("counts") or []
        if bounds != (before.get("bounds") or []) or len(counts) != len(prev_counts):
            return None
        differences = [c - p for c, p in zip(counts, prev_counts, strict=True)]
        if any(d < 0 for d in differences):
            return None
        sketch.add_histogram(bounds, differences, point["min"], point["max"])
        return sketch
    # Exponential: both at the coarser scale, then bucket by bucket.
    scale = min(int(dist.get("scale") or 0), int(before.get("scale") or 0))
    zero = int(dist.get("zero_count") or 0) - int(before.get("zero_count") or 0)
    stores: dict[str, dict[str, Any]] = {}
    for side in ("positive", "negative"):
        now_counts = _rescaled(dist.get(side), int(dist.get("scale") or 0), scale)
        prev_counts = _rescaled(before.get(side), int(before.get("scale") or 0), scale)
        diff = {i: now_counts.get(i, 0) - prev_counts.get(i, 0) for i in now_counts.keys() | prev_counts.keys()}
        if any(d < 0 for d in diff.values()):
            return None
        if diff:
            low = min(diff)
            stores[side] = {"offset": low, "counts": [diff.get(i, 0) for i in range(low, max(diff) + 1)]}
    if zero < 0:
        return None
    sketch.add_exponential(scale, zero, stores.get("positive"), stores.get("negative"), point["min"], point["max"])
    return sketch


def _rescaled(buckets: dict[str, Any] | None, scale: int, to_scale: int) -> dict[int, int]:
    """Exponential buckets {index: count} at a coarser scale: index >> (scale − to_scale)."""
    out: dict[int, int] = {}
    if not buckets:
        return out
    shift = scale - to_scale
    offset = int(buckets.get("offset", 0))
    for i, count in enumerate(buckets.get("counts") or ()):
        if count:
            index = (offset + i) >> shift
            out[index] = out.get(index, 0) + int(count)
    return out


def _clamp(value: float | None, low: float | None, high: float | None) -> float | None:
    if value is None:
        return None
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value
