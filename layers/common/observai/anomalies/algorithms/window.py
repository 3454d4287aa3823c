"""A rolling window of a series' last values: Welford mean and variance (stable at 1e9), and on demand a sorted
copy for the median and the MAD. The state keeps the values (oldest first) and the running moments, never more
than ``size`` values, whatever the series' age."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from typing import Any

# Values are clamped to this magnitude for the statistics only (the scored value is left as is): squares stay finite.
LIMIT = 1e100


def clamp(value: float) -> float:
    return LIMIT if value > LIMIT else -LIMIT if value < -LIMIT else value


class Window:
    """The last ``size`` values with their mean and M2 (sum of squared deviations), kept by sliding Welford updates
    and recomputed exactly from the values every ``size`` slides (deterministically: on the slide count), so rounding
    never accumulates. ``sorted`` (built when ``keep_sorted``) serves the median and the MAD."""

    __slots__ = ("m2", "mean", "size", "slides", "sorted", "values")

    def __init__(self, size: int, state: dict[str, Any] | None = None, *, keep_sorted: bool = False) -> None:
        self.size = size
        if state:
            self.values: deque[float] = deque(state["x"][-size:], maxlen=size)
            self.mean = float(state["mean"])
            self.m2 = float(state["m2"])
            self.slides = int(state["slides"])
            if len(state["x"]) > size:  # a smaller window than the state's: start the moments again
                self._recompute()
        else:
            self.values = deque(maxlen=size)
            self.mean = 0.0
            self.m2 = 0.0
            self.slides = 0
        self.sorted: list[float] | None = sorted(self.values) if keep_sorted else None

    def dump(self) -> dict[str, Any]:
        return {"x": list(self.values), "mean": self.mean, "m2": self.m2, "slides": self.slides}

    def __len__(self) -> int:
        return len(self.values)

    def push(self, x: float) -> None:
        values = self.values
        n = len(values)
        if n < self.size:
            values.append(x)
            n += 1
            d = x - self.mean
            self.mean += d / n
            self.m2 += d * (x - self.mean)
        else:
            old = values[0]
            values.append(x)  # drops old
            self.slides += 1
            if self.slides % self.size == 0:
                self._recompute()
            else:
                new_mean = self.mean + (x - old) / n
                self.m2 += (x - old) * (x - new_mean + old - self.mean)
                self.mean = new_mean
            if self.sorted is not None:
                del self.sorted[bisect_left(self.sorted, old)]
        if self.m2 < 0.0:
            self.m2 = 0.0
        if self.sorted is not None:
            insort(self.sorted, x)

    def keep_last(self, count: int) -> None:
        """Forget all but the last ``count`` values (a re-baseline)."""
        kept = list(self.values)[-count:]
        self.values = deque(kept, maxlen=self.size)
        self._recompute()
        if self.sorted is not None:
            self.sorted = sorted(kept)

    def _recompute(self) -> None:
        n = len(self.values)
        if n == 0:
            self.mean = 0.0
            self.m2 = 0.0
            return
        first = self.values[0]
        mean = first + math.fsum(v - first for v in self.values) / n  # a constant window: exactly its value
        self.mean = mean
        self.m2 = math.fsum((v - mean) * (v - mean) for v in self.values)

    def stdev(self) -> float:
        n = len(self.values)
        return math.sqrt(self.m2 / (n - 1)) if n > 1 else 0.0

    def median(self) -> float:
        s = self.sorted
        assert s is not None
        n = len(s)
        h = n // 2
        return s[h] if n % 2 else 0.5 * (s[h - 1] + s[h])

    def mad(self, median: float) -> float:
        """The median of |x − median| over the window, exactly, in O(log n): the distances below and above the
        median are two sorted sequences and the MAD is the middle of their union."""
        s = self.sorted
        assert s is not None
        n = len(s)
        if n == 0:
            return 0.0
        p = bisect_left(s, median)
        nl = p
        nr = n - p

        def left(j: int) -> float:
            return median - s[p - 1 - j]

        def right(j: int) -> float:
            return s[p + j] - median

        def kth(k: int) -> float:
            lo = max(0, k + 1 - nr)
            hi = min(k + 1, nl)
            while lo < hi:
                i = (lo + hi) // 2
                if left(i) < right(k - i):
                    lo = i + 1
                else:
                    hi = i
            i = lo
            j = k + 1 - i
            a = left(i - 1) if i > 0 else -math.inf
            b = right(j - 1) if j > 0 else -math.inf
            return a if a > b else b

        h = n // 2
        return kth(h) if n % 2 else 0.5 * (kth(h - 1) + kth(h))
