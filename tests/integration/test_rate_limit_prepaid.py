"""Prepaid rate-limit tokens (observai.ratelimit): a container takes a few tokens at once from a bucket at least
half full and spends them without a statement; no request is admitted without its token, a 429 comes exactly
when it would without prepaying, and prepaid tokens expire. Real Postgres."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
from observai import ratelimit
from observai.errors import RateLimited

pytestmark = pytest.mark.integration

SLOW = 0.001  # tokens per second: no refill to speak of during a test


@pytest.fixture(autouse=True)
def fresh_container(database_url: str) -> Any:
    ratelimit.clear_prepaid()
    yield
    ratelimit.clear_prepaid()


def bucket(db: psycopg.Connection, key: str) -> dict[str, Any]:
    row = db.execute(
        "select tokens, taken, updated_at from public.rate_limit_buckets where key = %s", (key,)
    ).fetchone()
    assert row is not None
    return dict(row)


def admitted(key: str, tries: int, *, burst: int, rate: float = SLOW) -> int:
    """How many of ``tries`` requests in a row pass before the first 429 (then stops)."""
    for n in range(tries):
        try:
            ratelimit.consume(key, rate_per_s=rate, burst=burst)
        except RateLimited:
            return n
    return tries


def test_given_a_full_bucket_when_requests_come_then_one_statement_serves_several(db: psycopg.Connection) -> None:
    # Given a bucket of 100 (the default burst): an eighth, capped at 8, is taken at once
    key = f"key:{uuid.uuid4()}"
    assert ratelimit.prepay_size(100) == 8
    # When the first request comes
    ratelimit.consume(key, rate_per_s=SLOW, burst=100)
    # Then the bucket gave 8 tokens in one statement
    first = bucket(db, key)
    assert first["taken"] == 8 and 91.9 < first["tokens"] < 92.1
    # When the next 7 come, the bucket is not touched (the prepaid tokens are spent)
    for _ in range(7):
        ratelimit.consume(key, rate_per_s=SLOW, burst=100)
    assert bucket(db, key)["updated_at"] == first["updated_at"]
    # ...and the 9th takes the next 8
    ratelimit.consume(key, rate_per_s=SLOW, burst=100)
    assert bucket(db, key)["taken"] == 8 and 83.9 < bucket(db, key)["tokens"] < 84.1


@pytest.mark.parametrize("burst", [16, 40, 100, 1000])
def test_given_any_bucket_when_drained_then_exactly_its_burst_is_admitted(burst: int) -> None:
    # Given a full bucket with no refill to speak of, when a container sends until refused
    key = f"key:{uuid.uuid4()}"
    # Then exactly `burst` requests pass, as without prepaid tokens (each one's token came from the bucket)
    assert admitted(key, burst + 20, burst=burst) == burst


def test_given_two_containers_when_they_drain_a_bucket_then_never_more_than_its_burst_passes(
    db: psycopg.Connection,
) -> None:
    # Given two containers taking turns on one key (the second's prepaid tokens are this process's, swapped)
    key, burst = f"key:{uuid.uuid4()}", 64
    held: list[dict[str, tuple[int, float]]] = [{}, {}]
    passed = refused = 0
    for n in range(200):
        ratelimit._prepaid.clear()
        ratelimit._prepaid.update(held[n % 2])
        try:
            ratelimit.consume(key, rate_per_s=SLOW, burst=burst)
            passed += 1
        except RateLimited:
            refused += 1
        held[n % 2] = dict(ratelimit._prepaid)
    # Then the two never admitted more than the bucket held, and tokens one holds are lost to the other at most
    assert burst - 2 * (ratelimit.PREPAY_MAX - 1) <= passed <= burst
    assert bucket(db, key)["tokens"] < 0


def test_given_a_half_empty_bucket_when_requests_come_then_tokens_are_taken_one_by_one(db: psycopg.Connection) -> None:
    # Given a bucket of 100 already down to 52
    key = f"key:{uuid.uuid4()}"
    db.execute(
        "insert into public.rate_limit_buckets (key, tokens, updated_at) values (%s, 52, statement_timestamp())", (key,)
    )
    # When a request comes: taking 8 would leave less than half
    ratelimit.consume(key, rate_per_s=SLOW, burst=100)
    # Then it took one
    assert bucket(db, key)["taken"] == 1 and 50.9 < bucket(db, key)["tokens"] < 51.1


def test_given_prepaid_tokens_when_their_time_is_over_then_the_bucket_is_asked_again(
    db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given prepaid tokens that last 50 ms
    monkeypatch.setattr(ratelimit, "PREPAID_TTL_S", 0.05)
    key = f"key:{uuid.uuid4()}"
    ratelimit.consume(key, rate_per_s=SLOW, burst=100)
    first = bucket(db, key)
    # When the next request comes after they expired
    time.sleep(0.06)
    ratelimit.consume(key, rate_per_s=SLOW, burst=100)
    # Then it went to the bucket (the 7 left were lost: 100 - 8 - 8)
    assert bucket(db, key)["updated_at"] > first["updated_at"]
    assert 83.9 < bucket(db, key)["tokens"] < 84.1


def test_given_a_small_bucket_when_requests_come_then_nothing_is_prepaid(db: psycopg.Connection) -> None:
    key = f"key:{uuid.uuid4()}"
    assert ratelimit.prepay_size(15) == 1
    ratelimit.consume(key, rate_per_s=SLOW, burst=15)
    assert bucket(db, key)["taken"] == 1 and not ratelimit._prepaid
