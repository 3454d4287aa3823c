"""Token buckets per API key and per user, kept in Postgres: one statement per check, or per few checks.

The statement refills the bucket for the time elapsed since its last update and takes one token;
a negative balance means refused. Concurrent requests serialise on the bucket's row.

Prepaid tokens: while a bucket is at least half full, the statement takes up to PREPAY_MAX tokens at once, and
this container spends the extra ones on its next requests with that key (within PREPAID_TTL_S), without a
statement: an ingest exporter's steady stream then costs one round trip every few requests. No request is ever
admitted without its token taken from the bucket first. A prepaid token not spent in time is lost, at most
PREPAY_MAX - 1 per container and key, and only from a bucket at least half full: it never causes a 429. Small
buckets (burst under 16) take one token at a time.
"""

from __future__ import annotations

import math
import time

from observai.db.connection import execute_autocommit
from observai.errors import RateLimited

PREPAY_MAX = 8
PREPAID_TTL_S = 1.0
_PREPAID_KEYS_MAX = 10_000

# key → (prepaid tokens left, time.monotonic() deadline), this container's
_prepaid: dict[str, tuple[int, float]] = {}

# Every request takes a token; a refused one leaves the bucket at most one token in debt (floor -1),
# so a client hammering a full bucket waits at most 2/rate seconds once it stops. The level is computed at the
# statement's timestamp (the same in every expression; clock_timestamp() would differ between them), and takes
# %(take)s tokens only if that leaves the bucket at least half full.
_LEVEL = (
    "least(%(burst)s, b.tokens"
    " + greatest(0, extract(epoch from statement_timestamp() - b.updated_at))::float8 * %(rate)s)"
)
_TAKEN = f"case when {_LEVEL} - %(take)s >= %(burst)s / 2 then %(take)s else 1 end"
_CONSUME_SQL = f"""
insert into public.rate_limit_buckets as b (key, tokens, updated_at, taken)
values (%(key)s, %(burst)s - %(take)s, statement_timestamp(), %(take)s)
on conflict (key) do update set
    tokens = greatest(-1, {_LEVEL} - {_TAKEN}),
    taken = {_TAKEN},
    updated_at = statement_timestamp()
returning tokens, taken
"""


def prepay_size(burst: int) -> int:
    """Tokens one statement may take for this bucket size: an eighth of the burst, capped; 1 below 16."""
    take = min(PREPAY_MAX, burst // 8)
    return take if take >= 2 else 1


def consume(key: str, *, rate_per_s: float, burst: int) -> None:
    """Take one token from ``key``'s bucket (a prepaid one if this container holds one); RateLimited (429 +
    Retry-After) when it is empty."""
    if _spend_prepaid(key):
        return
    take = prepay_size(burst)
    rows = execute_autocommit(_CONSUME_SQL, {"key": key, "rate": rate_per_s, "burst": float(burst), "take": take})
    tokens = float(rows[0]["tokens"]) if rows else 0.0
    if tokens < 0:
        retry_after = math.ceil((1 - tokens) / rate_per_s)
        raise RateLimited(
            "Too many requests: slow down",
            retry_after_s=retry_after,
            details={"limit_per_second": rate_per_s, "burst": burst},
        )
    taken = int(rows[0]["taken"])
    if taken > 1:
        if len(_prepaid) >= _PREPAID_KEYS_MAX:
            _prepaid.clear()
        _prepaid[key] = (taken - 1, time.monotonic() + PREPAID_TTL_S)


def _spend_prepaid(key: str) -> bool:
    held = _prepaid.get(key)
    if held is None:
        return False
    left, deadline = held
    if time.monotonic() >= deadline:
        del _prepaid[key]
        return False
    if left > 1:
        _prepaid[key] = (left - 1, deadline)
    else:
        del _prepaid[key]
    return True


def clear_prepaid() -> None:
    """Forget this container's prepaid tokens (tests)."""
    _prepaid.clear()
