"""Pausing Python's cyclic garbage collector around batch work.

Decoding and copying a batch allocates hundreds of thousands of short-lived, acyclic objects; the cyclic
collector, triggered by allocation counts, spends ~25-40% of that time scanning them (measured on 1,000-
event batches) and frees nothing: reference counting frees them all. Collection resumes afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
