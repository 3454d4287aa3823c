"""Token buckets per API key and per user, kept in Postgres: one statement per check.

The statement refills the bucket for the time elapsed since its last update and takes one token;
a negative balance means refused. Concurrent requests serialise on the bucket's row.
"""

from __future__ import annotations

import math

from observai.db.connection import execute_autocommit
from observai.errors import RateLimited

# Every request takes a token; a refused one leaves the bucket at most one token in debt (floor -1),
# so a client hammering a full bucket waits at most 2/rate seconds once it stops.
_CONSUME_SQL = """
insert into public.rate_limit_buckets as b (key, tokens, updated_at)
values (%(key)s, %(burst)s - 1, clock_timestamp())
on conflict (key) do update set
    tokens = greatest(
        -1,
        least(%(burst)s, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * %(rate)s) - 1
    ),
    updated_at = clock_timestamp()
returning tokens
"""


def consume(key: str, *, rate_per_s: float, burst: int) -> float:
    """Take one token from ``key``'s bucket; RateLimited (429 + Retry-After) when it is empty."""
    rows = execute_autocommit(_CONSUME_SQL, {"key": key, "rate": rate_per_s, "burst": float(burst)})
    tokens = float(rows[0]["tokens"]) if rows else 0.0
    if tokens < 0:
        retry_after = math.ceil((1 - tokens) / rate_per_s)
        raise RateLimited(
            "Too many requests: slow down",
            retry_after_s=retry_after,
            details={"limit_per_second": rate_per_s, "burst": burst},
        )
    return tokens
