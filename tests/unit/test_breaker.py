"""The database circuit breaker: every transition, with an injected clock."""

from __future__ import annotations

import threading

import psycopg
import pytest
from observai.db.breaker import BreakerState, CircuitBreaker, database_breaker, is_connection_failure
from observai.errors import Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _timeout() -> Unavailable:
    try:
        try:
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        except psycopg.errors.QueryCanceled as exc:
            raise Unavailable("database statement timed out", retry_after_s=2) from exc
    except Unavailable as exc:
        return exc


def _unreachable() -> Unavailable:
    try:
        try:
            raise psycopg.OperationalError("connection refused")
        except psycopg.OperationalError as exc:
            raise Unavailable("database unavailable") from exc
    except Unavailable as exc:
        return exc


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("test", failure_threshold=3, cooldown_s=10, max_cooldown_s=60, clock=clock)


def test_closed_allows_and_success_keeps_it_closed(breaker: CircuitBreaker) -> None:
    for _ in range(5):
        assert breaker.allow()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    breaker.record_failure(_timeout())
    breaker.record_failure(_timeout())
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure(_timeout())
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_a_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().consecutive_failures == 2


def test_one_connection_failure_opens_at_once(breaker: CircuitBreaker) -> None:
    breaker.record_failure(_unreachable())
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_connection_failure_classification() -> None:
    assert is_connection_failure(_unreachable())
    assert not is_connection_failure(_timeout())
    assert is_connection_failure(Unavailable("database is not configured"))
    assert not is_connection_failure(None)
    assert not is_connection_failure(ValueError("x"))


def _from_server(error: type[psycopg.Error]) -> Unavailable:
    """An Unavailable raised from an error the server sent (its SQLSTATE is the class's)."""
    try:
        try:
            raise error("from the server")
        except psycopg.Error as exc:
            raise Unavailable("database unavailable", retry_after_s=5) from exc
    except Unavailable as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (psycopg.errors.LockNotAvailable, False),  # a lock timeout: the server answered (a retention drop waits)
        (psycopg.errors.ObjectInUse, False),
        (psycopg.errors.AdminShutdown, True),  # the server is stopping: our connection was cut
        (psycopg.errors.CannotConnectNow, True),  # starting up or shutting down
        (psycopg.errors.TooManyConnections, True),
        (psycopg.errors.ConnectionFailure, True),
    ],
)
def test_only_errors_that_say_the_server_cannot_be_used_are_connection_failures(
    error: type[psycopg.Error], unreachable: bool
) -> None:
    # Given an operational error the server sent; Then it trips the breaker at once only if the server is gone
    assert issubclass(error, psycopg.OperationalError)
    assert is_connection_failure(_from_server(error)) is unreachable


def test_open_until_cooldown_then_half_open_admits_one_probe(breaker: CircuitBreaker, clock: Clock) -> None:
    breaker.record_failure(_unreachable())
    clock.advance(9.9)
    assert not breaker.allow()
    assert breaker.snapshot().retry_in_s == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # one at a time
    assert not breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_probe_success_closes(breaker: CircuitBreaker, clock: Clock) -> None:
    breaker.record_failure(_unreachable())
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(3))
    assert breaker.snapshot().cooldown_s == 10


def test_probe_failure_reopens_with_doubling_cooldown_capped(breaker: CircuitBreaker, clock: Clock) -> None:
    breaker.record_failure(_unreachable())
    expected = [20, 40, 60, 60]
    for cooldown in expected:
        clock.advance(breaker.snapshot().cooldown_s)
        assert breaker.allow()
        breaker.record_failure(_timeout())  # any failure of the probe re-opens
        assert breaker.state is BreakerState.OPEN
        assert breaker.snapshot().cooldown_s == cooldown
        clock.advance(cooldown - 0.5)
        assert not breaker.allow()
        clock.advance(0.5)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().cooldown_s == 10  # back to the base after a success


def test_late_failure_while_open_does_not_extend(breaker: CircuitBreaker, clock: Clock) -> None:
    breaker.record_failure(_unreachable())
    clock.advance(5)
    breaker.record_failure(_unreachable())  # a call admitted before the trip, reporting late
    clock.advance(5)
    assert breaker.allow()


def test_a_probe_that_never_reports_loses_its_lease(clock: Clock) -> None:
    breaker = CircuitBreaker(
        "t", failure_threshold=1, cooldown_s=10, max_cooldown_s=60, probe_timeout_s=30, clock=clock
    )
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    clock.advance(29)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()  # a new probe
    assert not breaker.allow()


def test_settings_are_read_at_first_use(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    monkeypatch.setenv("BREAKER_FAILURE_THRESHOLD", "2")
    monkeypatch.setenv("BREAKER_COOLDOWN_S", "4")
    breaker = CircuitBreaker("settings", clock=clock)
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert not breaker.allow()
    clock.advance(4)
    assert breaker.allow()
    monkeypatch.setenv("BREAKER_FAILURE_THRESHOLD", "5")
    breaker.reset()  # re-reads the settings
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_module_breaker_defaults() -> None:
    database_breaker.reset()
    snap = database_breaker.snapshot()
    assert snap.name == "database" and snap.state is BreakerState.CLOSED and snap.cooldown_s == 10


def test_thread_safety_half_open_admits_exactly_one(breaker: CircuitBreaker, clock: Clock) -> None:
    breaker.record_failure(_unreachable())
    clock.advance(10)
    admitted: list[bool] = []
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        admitted.append(breaker.allow())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 1


def test_thread_safety_smoke(clock: Clock) -> None:
    breaker = CircuitBreaker("smoke", failure_threshold=3, cooldown_s=0.001, max_cooldown_s=0.01)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(2000):
                if breaker.allow():
                    if (i + n) % 3:
                        breaker.record_success()
                    else:
                        breaker.record_failure(_timeout())
                breaker.snapshot()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert breaker.state in set(BreakerState)
