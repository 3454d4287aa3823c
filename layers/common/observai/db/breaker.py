"""A per-container circuit breaker in front of the database, so ingestion spools instead of waiting on it.

States:

- **closed**: every call is allowed. ``failure_threshold`` consecutive failures (statement timeouts and
  the like), or a single *connection* failure (the server is unreachable: waiting on it again would cost
  every request a connect timeout), open the breaker.
- **open**: no call is allowed for ``cooldown_s`` (the caller spools instead). The cool-down doubles,
  up to ``max_cooldown_s``, each time a probe fails; a success resets it.
- **half-open**: once the cool-down is over, ONE probe call at a time is let through. Its success closes
  the breaker, its failure re-opens it. A probe that never reports back (the caller crashed) loses its
  lease after ``probe_timeout_s`` and another probe is admitted.

Usage (the ingest service and the drain)::

    if database_breaker.allow():
        try:
            store_batch(...)
        except Unavailable as exc:
            database_breaker.record_failure(exc)
            ...spool
        else:
            database_breaker.record_success()
    else:
        ...spool

Thread-safe (one lock); the clock is injectable for tests. The thresholds come from observai.config
(BREAKER_FAILURE_THRESHOLD, BREAKER_COOLDOWN_S, BREAKER_MAX_COOLDOWN_S), read at first use, never at import.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from observai.observability import logger


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    name: str
    state: BreakerState
    consecutive_failures: int
    cooldown_s: float
    retry_in_s: float  # seconds until a probe will be admitted (0 unless open)


def is_connection_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database could not be reached at all.

    A statement timeout (QueryCanceled) or a lock timeout (LockNotAvailable, also an OperationalError) is not: the
    server answered. A broken or refused connection (an OperationalError the server did not send: no SQLSTATE), a
    server going down or not up yet (08xxx, 57Pxx), one with no connection slot left (53300), or an Unavailable with
    no cause (not configured) is.
    """
    if exc is None:
        return False
    import psycopg  # already imported by observai.db; here only to classify

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.errors.QueryCanceled):
            return False
        if isinstance(current, psycopg.OperationalError):
            state = current.sqlstate
            return state is None or state.startswith(("08", "57P")) or state == "53300"
        current = current.__cause__ or current.__context__
    from observai.errors import Unavailable

    return isinstance(exc, Unavailable) and exc.__cause__ is None and exc.__context__ is None


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int | None = None,
        cooldown_s: float | None = None,
        max_cooldown_s: float | None = None,
        probe_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._given = (failure_threshold, cooldown_s, max_cooldown_s)
        self._threshold = failure_threshold
        self._base_cooldown = cooldown_s
        self._max_cooldown = max_cooldown_s
        self._probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown: float | None = None  # current cool-down; None until configured
        self._opened_at = 0.0
        self._probe_started_at: float | None = None  # a probe holds the half-open lease

    # -- configuration (read lazily from the settings) --------------------------------------------
    def _configure(self) -> None:
        if self._threshold is None or self._base_cooldown is None or self._max_cooldown is None:
            from observai.config import get_settings

            settings = get_settings()
            if self._threshold is None:
                self._threshold = settings.breaker_failure_threshold
            if self._base_cooldown is None:
                self._base_cooldown = settings.breaker_cooldown_s
            if self._max_cooldown is None:
                self._max_cooldown = settings.breaker_max_cooldown_s
        if self._cooldown is None:
            self._cooldown = self._base_cooldown

    # -- the protocol -------------------------------------------------------------------------------
    def allow(self) -> bool:
        """Whether the caller may try the database now. In half-open, True for one caller at a time."""
        with self._lock:
            self._configure()
            if self._state is BreakerState.CLOSED:
                return True
            now = self._clock()
            if self._state is BreakerState.OPEN:
                assert self._cooldown is not None
                if now - self._opened_at < self._cooldown:
                    return False
                self._state = BreakerState.HALF_OPEN
                self._probe_started_at = None
                logger.info("circuit breaker half-open", extra={"breaker": self.name})
            # HALF_OPEN: admit one probe; another only if the lease of the current one has expired.
            if self._probe_started_at is not None and now - self._probe_started_at < self._probe_timeout_s:
                return False
            self._probe_started_at = now
            return True

    def record_success(self) -> None:
        with self._lock:
            self._configure()
            if self._state is not BreakerState.CLOSED:
                logger.info("circuit breaker closed", extra={"breaker": self.name})
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._cooldown = self._base_cooldown
            self._probe_started_at = None

    def record_failure(self, exc: BaseException | None = None) -> None:
        """A call failed because of the database; pass the exception so a connection failure trips at once."""
        connection_failure = is_connection_failure(exc)
        with self._lock:
            self._configure()
            assert self._threshold is not None and self._cooldown is not None and self._max_cooldown is not None
            if self._state is BreakerState.OPEN:
                return  # a call admitted before the breaker opened: nothing new
            if self._state is BreakerState.HALF_OPEN:
                self._cooldown = min(self._cooldown * 2, self._max_cooldown)
                self._open(reason="probe failed")
                return
            self._failures += 1
            if connection_failure or self._failures >= self._threshold:
                self._open(reason="connection failure" if connection_failure else "consecutive failures")

    def _open(self, *, reason: str) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probe_started_at = None
        logger.warning(
            "circuit breaker open",
            extra={"breaker": self.name, "reason": reason, "failures": self._failures, "cooldown_s": self._cooldown},
        )

    # -- inspection -------------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The state as of now: an open breaker whose cool-down is over reads as half-open."""
        return self.snapshot().state

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            self._configure()
            assert self._cooldown is not None
            state, retry_in = self._state, 0.0
            if state is BreakerState.OPEN:
                retry_in = max(0.0, self._cooldown - (self._clock() - self._opened_at))
                if retry_in == 0.0:
                    state = BreakerState.HALF_OPEN
            return BreakerSnapshot(self.name, state, self._failures, self._cooldown, retry_in)

    def reset(self) -> None:
        """Back to closed, and re-read the settings at next use (tests)."""
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._threshold, self._base_cooldown, self._max_cooldown = self._given
            self._cooldown = None
            self._probe_started_at = None
            self._opened_at = 0.0


database_breaker = CircuitBreaker("database")
