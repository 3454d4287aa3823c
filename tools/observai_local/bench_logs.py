"""Logs and traces benchmark (the logs part of `make bench`): millions of rows, then search and trace latency.

    python -m observai_local.bench_logs [--logs 5000000] [--spans 1000000] [-n 30]

Writes LOGS log lines spread over the last 24 h (20 services, realistic severities, bodies built from
message templates, HTTP attributes, a trace id on a third of them) and SPANS spans (traces of 10 spans:
a root and nine children over three services), server-side with generate_series in 6-hour
transactions, analyses the tables as autovacuum would, then times N requests of each kind through the
logs and traces handlers in-process (an API Gateway event → the resolver → SQL → the envelope), with an
API key, each returning the newest page of 50:

    trace fetch          GET …/traces/{trace_id}: the span tree and the trace's logs   p95 ≤ 100 ms
    filtered search      service:checkout severity:error, last 24 h                    p95 ≤ 100 ms
    attribute search     attributes.http.status_code:503 service:checkout, 24 h        p95 ≤ 100 ms
    free text (common)   timeout, last 24 h (≈ 4 % of lines)                           p95 ≤ 300 ms
    free text (rare)     "card declined" 4242, last 24 h (≈ 20 lines)                   p95 ≤ 300 ms

The log histogram (24 h, 1 440 one-minute cells) reads the pre-aggregated log volume (migration 0014) for
queries on services and levels; the load writes it as the writer and the hourly compaction would leave it:
compacted up to an hour ago, per-batch increments (one per 1 000 lines) for the last hour.

    histogram, all 24 h  no query                                                      p95 ≤ 100 ms
    histogram, service   service:checkout                                              p95 ≤ 100 ms
    histogram, severity  severity>=warn                                                p95 ≤ 100 ms
    histogram, free text timeout (an estimate from a sample: exact false)            p95 ≤ 300 ms

Trace ids are drawn at random from the stored ones, so fetches are not served from one cached page.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from observai_local.bench import BENCH_ENVIRONMENT, bench_workspace, prepare_database

SPANS_PER_TRACE = 10  # as SPANS_SQL writes them
CHUNK_HOURS = 6

# One row per i; the body templates give searchable words known frequencies ("timeout" and "card declined"
# each in 1 line of 25; one customer number in ~1 of 250,000). Severities: 85 % info, 10 % warn, 5 % error,
# 5 % debug. A third of the lines carry the trace id of one of 100,000 traces.
LOGS_SQL = """
insert into public.logs (org_id, project_id, time, observed_time, severity_number, severity_text, service, body,
                         attributes, resource, trace_id, span_id, retention_days)
select %(org)s, %(project)s, t, t, sev,
       case when sev >= 17 then 'ERROR' when sev >= 13 then 'WARN' when sev >= 9 then 'INFO' else 'DEBUG' end,
       svc,
       case (i %% 25)
         when 0 then 'upstream request timeout after ' || (i %% 5000) || ' ms calling inventory'
         when 1 then 'payment for order ' || (i %% 100000) || ': card declined by issuer for customer ' || (i %% 9973)
         when 2 then 'user ' || (i %% 50000) || ' logged in from 10.' || (i %% 255) || '.' || (i %% 97) || '.1'
         when 3 then 'cache miss for key product:' || (i %% 20000)
         when 4 then 'retrying connection to db-' || (i %% 8) || ' attempt ' || (i %% 5)
         when 5 then 'slow query on orders table took ' || (i %% 3000) || ' ms'
         when 6 then 'shipment ' || (i %% 70000) || ' dispatched to warehouse ' || (i %% 40)
         else 'GET /api/v1/items/' || (i %% 100000) || ' completed with status ' || (200 + (i %% 3))
              || ' in ' || (i %% 900) || ' ms'
       end,
       jsonb_build_object('http.status_code', case when sev >= 17 then 500 + ((i / 20) %% 4) else 200 end,
                          'http.method', case when i %% 4 = 0 then 'POST' else 'GET' end,
                          'customer.id', 'c' || (i %% 9973)),
       jsonb_build_object('service.name', svc, 'host.name', 'host-' || (i %% 50)),
       case when i %% 3 = 0 then md5('trace' || (i %% 100000)) end,
       case when i %% 3 = 0 then substr(md5('span' || i), 1, 16) end,
       -- As the writer sets it: the organization's plan, by severity class.
       case when sev >= 13 then p.retention_days when sev >= 9 then p.logs_info_retention_days
            else p.logs_debug_retention_days end
from (
    select i,
           %(lo)s::timestamptz + (%(hi)s::timestamptz - %(lo)s::timestamptz) * ((i - %(off)s)::float8 / %(n)s) as t,
           case when i %% 20 = 0 then 5 when i %% 20 = 1 then 17 when i %% 20 in (2, 3) then 13 else 9 end as sev,
           (array['checkout', 'payments', 'inventory', 'search', 'auth', 'shipping', 'email', 'cart', 'pricing',
                  'reviews', 'catalog', 'ads', 'frontend', 'gateway', 'orders', 'users', 'billing', 'reports',
                  'media', 'recs'])[1 + (i * 7 + i / 13) %% 20] as svc
    from generate_series(%(off)s::bigint, %(off)s::bigint + %(n)s - 1) as i
) g, public.organizations o join public.plans p on p.plan = o.plan
where o.id = %(org)s
"""

# Trace k is md5('trace' || k); its root span (j = 0, gateway, 5–500 ms) has nine children over three
# services starting inside it; one trace in 50 fails at its root.
SPANS_SQL = """
insert into public.spans (org_id, project_id, trace_id, span_id, parent_span_id, name, kind, service, start_time,
                          end_time, duration_ns, status_code, attributes, resource, retention_days)
select %(org)s, %(project)s, md5('trace' || k), substr(md5('span' || k || ':' || j), 1, 16),
       case when j > 0 then substr(md5('span' || k || ':0'), 1, 16) end,
       case when j = 0 then 'GET /api/v1/items' else 'child op ' || j end,
       case when j = 0 then 'server' else 'internal' end,
       (array['gateway', 'checkout', 'payments'])[1 + j %% 3],
       t0 + make_interval(secs => j * 0.001), t0 + make_interval(secs => j * 0.001 + d / 1e9), d::bigint,
       case when j = 0 and k %% 50 = 0 then 'error' else 'ok' end,
       jsonb_build_object('http.method', 'GET', 'http.status_code', case when k %% 50 = 0 then 500 else 200 end),
       jsonb_build_object('service.name', (array['gateway', 'checkout', 'payments'])[1 + j %% 3]),
       (select p.retention_days from public.organizations o join public.plans p on p.plan = o.plan
        where o.id = %(org)s)
from (
    select k, %(lo)s::timestamptz + (%(hi)s::timestamptz - %(lo)s::timestamptz) * ((k - %(off)s)::float8 / %(n)s) as t0
    from generate_series(%(off)s::bigint, %(off)s::bigint + %(n)s - 1) as k
) tr,
generate_series(0, 9) as j,
lateral (select case when j = 0 then 5e6 + (k %% 495) * 1e6 else 1e6 + (k * j %% 97) * 1e4 end as d) dd
"""


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _chunks(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    out = []
    t = start
    while t < end:
        out.append((t, min(end, t + timedelta(hours=CHUNK_HOURS))))
        t += timedelta(hours=CHUNK_HOURS)
    return out


def _load_in_chunks(
    statement: str, org: uuid.UUID, project: uuid.UUID, total: int, start: datetime, end: datetime
) -> float:
    """``statement`` writes TOTAL units (lines, traces) evenly over [start, end), one transaction per 6 h
    (each given its [lo, hi) slice, its first unit number and count); returns seconds."""
    from observai.db.connection import transaction

    span_s = (end - start).total_seconds()
    started = time.perf_counter()
    offset = 0
    for lo, hi in _chunks(start, end):
        n = round(total * (hi - lo).total_seconds() / span_s)
        with transaction() as cur:
            cur.execute("select set_config('statement_timeout', '0', true)")
            cur.execute(statement, {"org": org, "project": project, "lo": lo, "hi": hi, "off": offset, "n": n})
        offset += n
    return time.perf_counter() - started


def load_logs(org: uuid.UUID, project: uuid.UUID, total: int, start: datetime, end: datetime) -> float:
    """TOTAL log lines evenly over [start, end), one transaction per 6 h; returns seconds."""
    return _load_in_chunks(LOGS_SQL, org, project, total, start, end)


# The log volume of the loaded lines, as the ingest writer (increments, one per batch of ~1 000 lines and key)
# and the hourly compaction (one row per key) leave it: compacted up to an hour ago, increments since.
VOLUME_ROLLED_SQL = """
insert into public.log_volume_rolled (org_id, project_id, minute, service, level, retention_days, count)
select org_id, project_id, date_bin('1 minute', time, timestamptz '2000-01-01 00:00:00+00'), service,
       least((severity_number + 3) / 4, 6), retention_days, count(*)
from public.logs where project_id = %(project)s and time < %(compacted)s
group by 1, 2, 3, 4, 5, 6
"""
VOLUME_INCREMENTS_SQL = """
insert into public.log_volume (org_id, project_id, minute, service, level, retention_days, count)
select org_id, project_id, date_bin('1 minute', time, timestamptz '2000-01-01 00:00:00+00'), service,
       least((severity_number + 3) / 4, 6), retention_days, count(*)
from public.logs where project_id = %(project)s and time >= %(compacted)s
group by id / 1000, 1, 2, 3, 4, 5, 6
"""


def load_volume(project: uuid.UUID, compacted: datetime) -> tuple[int, int]:
    """The log volume of the loaded lines; returns (rolled rows, increments)."""
    from observai.db.connection import transaction

    with transaction() as cur:
        cur.execute("select set_config('statement_timeout', '0', true)")
        cur.execute(VOLUME_ROLLED_SQL, {"project": project, "compacted": compacted})
        rolled = cur.rowcount
        cur.execute(VOLUME_INCREMENTS_SQL, {"project": project, "compacted": compacted})
        increments = cur.rowcount
        cur.execute("analyze public.log_volume_rolled")
        cur.execute("analyze public.log_volume")
    return rolled, increments


def load_spans(org: uuid.UUID, project: uuid.UUID, total: int, start: datetime, end: datetime) -> float:
    """TOTAL spans in traces of 10 over [start, end), one transaction per 6 h; returns seconds."""
    return _load_in_chunks(SPANS_SQL, org, project, total // SPANS_PER_TRACE, start, end)


def run(logs: int, spans: int, n: int) -> str:
    os.environ.update(BENCH_ENVIRONMENT)
    url, label = prepare_database(keep_dir=False)
    os.environ["DATABASE_URL"] = url
    from observai.db.connection import transaction

    from observai_local.events import http_event

    bench = bench_workspace(url)
    demo, invoker = bench.demo, bench.invoker
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=24)
    logs_s = load_logs(demo.org_id, demo.project_id, logs, start, now)
    spans_s = load_spans(demo.org_id, demo.project_id, spans, start, now)
    rolled, increments = load_volume(demo.project_id, now - timedelta(hours=1))
    with transaction() as cur:
        cur.execute("select set_config('statement_timeout', '0', true)")
        cur.execute("analyze public.logs")
        cur.execute("analyze public.spans")
        cur.execute(
            "select (select count(*) from public.logs where project_id = %(p)s) as logs,"
            " (select count(*) from public.spans where project_id = %(p)s) as spans",
            {"p": demo.project_id},
        )
        counts = cur.fetchone()
        assert counts is not None
        log_rows, span_rows = counts["logs"], counts["spans"]

    headers = {"x-api-key": bench.read_key}
    base = f"/v1/projects/{demo.project_id}"
    window = f"from={quote(start.isoformat())}&to={quote(now.isoformat())}"
    rng = random.Random(7)  # noqa: S311 (which trace to fetch, not a secret)
    trace_count = spans // SPANS_PER_TRACE

    def search(q: str) -> Callable[[], dict[str, Any]]:
        return lambda: {"path": f"{base}/logs", "query": f"q={quote(q)}&{window}&limit=50"}

    def histogram(q: str) -> Callable[[], dict[str, Any]]:
        return lambda: {"path": f"{base}/logs/histogram", "query": f"q={quote(q)}&{window}"}

    def trace() -> dict[str, Any]:
        import hashlib

        k = rng.randrange(trace_count)
        return {"path": f"{base}/traces/{hashlib.md5(f'trace{k}'.encode()).hexdigest()}"}  # noqa: S324

    scenarios: list[tuple[str, str, Callable[[], dict[str, Any]], float | None]] = [
        ("trace fetch", "TracesFunction", trace, 100.0),
        ("filtered search", "LogsFunction", search("service:checkout severity:error"), 100.0),
        ("attribute search", "LogsFunction", search("attributes.http.status_code:503 service:checkout"), 100.0),
        ("free text (common)", "LogsFunction", search("timeout"), 300.0),
        ("free text (rare)", "LogsFunction", search('"card declined" 4242'), 300.0),
    ]
    extras: list[tuple[str, str, Callable[[], dict[str, Any]], float | None]] = [
        ("histogram, all 24 h", "LogsFunction", histogram(""), 100.0),
        ("histogram, service", "LogsFunction", histogram("service:checkout"), 100.0),
        ("histogram, severity", "LogsFunction", histogram("severity>=warn"), 100.0),
        ("histogram, free text", "LogsFunction", histogram("timeout"), 300.0),
    ]
    lines = [
        f"Logs and traces: {log_rows:,} log lines and {span_rows:,} spans over 24 h; Postgres {label}",
        f"load (generate_series, server side): logs {logs_s:.1f} s ({log_rows / logs_s:,.0f}/s),"
        f" spans {spans_s:.1f} s ({span_rows / spans_s:,.0f}/s)",
        f"log volume: {rolled:,} compacted rows, {increments:,} increments (the last hour)",
        "",
        f"{'request':<20} {'n':>3} {'p50 ms':>7} {'p95 ms':>7} {'items':>6}  target",
    ]
    for name, function, build, target in scenarios + extras:
        invoker.module(function)
        samples = []
        items = 0
        failed = ""
        runs = n if target is not None else min(n, 5)  # the untargeted ones are slow: fewer samples
        for i in range(runs + 3):
            request = build()
            path, query = request["path"], request.get("query")
            event = http_event("GET", path, headers=headers, raw_query=query or "")
            started = time.perf_counter()
            response = invoker.invoke(function, event)
            elapsed = (time.perf_counter() - started) * 1000
            if response["statusCode"] != 200:
                failed = f"{response['statusCode']} {json.loads(response['body']).get('error', {}).get('code')}"
                break
            if i >= 3:  # warm-up
                samples.append(elapsed)
            data = json.loads(response["body"])["data"]
            items = len(data) if isinstance(data, list) else len(data.get("spans", data.get("buckets", [])))
        if failed or not samples:
            lines.append(f"{name:<20} failed: {failed}")
            continue
        p95 = _percentile(samples, 95)
        lines.append(
            f"{name:<20} {len(samples):>3} {statistics.median(samples):>7.1f} {p95:>7.1f} {items:>6}"
            + ("  (no target)" if target is None else f"  p95 ≤ {target:.0f} ms {'ok' if p95 <= target else 'MISSED'}")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local.bench_logs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=5_000_000)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("-n", "--requests", type=int, default=30, help="timed requests per kind (default 30)")
    args = parser.parse_args(argv)
    print(run(args.logs, args.spans, args.requests), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
