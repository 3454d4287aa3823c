"""Python work overlapped with Postgres' work while a batch is written.

Postgres inserts COPYed rows in buffers (heap, indexes, the log search vector), mostly once the client has
finished sending them: the writer then only waits. The writer hands the next table's work (converting pending
records, building rows) to a worker thread just before it finishes a COPY; the GIL is released while the writer
waits on its socket, so the worker runs meanwhile. While a batch is written, Python's switch interval is
shortened, so the writer gets the GIL back within a fraction of a millisecond of Postgres answering rather than
the default 5 ms.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

SWITCH_INTERVAL_S = 0.0005

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def in_background(work: Callable[[], None]) -> Future[None]:
    """Run ``work`` on the worker thread (one per container, created on first use)."""
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-overlap")
    return _executor.submit(work)


@contextmanager
def quick_switches() -> Iterator[None]:
    """Shorten the switch interval for the block (restored after)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
