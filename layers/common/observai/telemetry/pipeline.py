"""Converting a batch signal by signal on a helper thread while the writer stores the signals already converted.

A batch's COPYs spend most of their time waiting on Postgres (heap and index inserts, the log search vector);
converting validated events into records is pure Python. Side by side they overlap: the helper thread converts
one signal at a time, in the writer's order (metrics, logs, traces), and the writer waits only for the signal it
is about to store. The GIL is released while the writer waits on its socket, so the conversion runs meanwhile.
Python's switch interval is shortened for the duration, so the writer gets the GIL back within about half a
millisecond of Postgres answering, not the default 5 ms.

The conversion fills the batch's per-signal lists; nobody reads a signal's list before ``ready(signal)``
returned, nor ``batch.rejected`` or ``batch.accepted`` before every signal is ready.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from observai.telemetry.model import Signal

SWITCH_INTERVAL_S = 0.0005
# Waits until a signal's records are in the batch (re-raising the conversion's error, if any).
SignalReady = Callable[[Signal], None]

_executor: ThreadPoolExecutor | None = None


def _converter() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-convert")
    return _executor


def all_ready(ready: SignalReady | None) -> None:
    if ready is not None:
        for signal in Signal:
            ready(signal)


@contextmanager
def converting_in_background(convert: Callable[[Signal], None]) -> Iterator[SignalReady]:
    """Run ``convert(signal)`` for every signal, in order, on the helper thread; yield the wait for one signal.

    On exit the conversion has finished (even when the block raised), and the switch interval is restored.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        futures: dict[Signal, Future[None]] = {signal: _converter().submit(convert, signal) for signal in Signal}
        try:
            yield lambda signal: futures[signal].result()
        finally:
            wait(futures.values())
    finally:
        sys.setswitchinterval(previous)
