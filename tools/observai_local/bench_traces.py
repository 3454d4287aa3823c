"""Traces benchmark: a realistic span dataset, then trace fetch, trace search and service statistics latency.

    python -m observai_local.bench_traces [--spans 1000000] [--days 7] [-n 50] [--explain]

Builds SPANS spans (traces of 10 spans: a server root, client and internal children two levels deep, over
5 services, 2% errors, 6 attributes each) spread evenly over the last DAYS days (daily partitions), plus one
log line for every second span carrying its trace and span id, written server-side with generate_series,
one transaction per day. Then times N calls of each kind through the traces handler in-process (an API
Gateway event → the resolver → SQL → the envelope), with an API key:

    trace                 GET a random trace by id, no time hint (recent days probed first)
    trace (old)           GET a random trace of the oldest day, no time hint (every partition probed)
    trace + hint          GET a random trace with from/to covering its day
    search service 1h     GET traces?service=&from=now-1h, 50 per page
    search attribute 24h  GET traces?match[http.route]=&status=error over 24 h
    search no match 7d    GET traces?match[net.peer]=<absent> over DAYS days: one page, cut by the examine bound
    services 1h           GET services over the last hour

and prints p50/p95 of each (target: trace fetch p95 ≤ 100 ms). --explain prints EXPLAIN ANALYZE of the
trace-fetch statements.
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
from datetime import UTC, datetime, timedelta
from typing import Any

from observai_local.bench import BENCH_ENVIRONMENT, bench_workspace, prepare_database

TARGET_P95_MS = 100.0
SPANS_PER_TRACE = 10


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def trace_id_of(n: int) -> str:
    return f"{n:032x}"


def load_dataset(demo: Any, spans: int, days: int, now: datetime) -> tuple[int, int, float, list[range]]:
    """Spans and logs day by day; returns spans, logs, seconds, and the trace numbers of each day (oldest first)."""
    from observai.db.connection import transaction

    traces = spans // SPANS_PER_TRACE
    per_day = traces // days
    started = time.perf_counter()
    span_rows = log_rows = 0
    ranges = []
    for day in range(days, 0, -1):
        day_end = now - timedelta(days=day - 1)
        first = (days - day) * per_day + 1
        numbers = range(first, first + per_day)
        ranges.append(numbers)
        params = {"org": demo.org_id, "project": demo.project_id, "first": numbers.start, "last": numbers.stop - 1,
                  "end": day_end, "per_trace": SPANS_PER_TRACE}  # fmt: skip
        with transaction() as cur:
            cur.execute("select set_config('statement_timeout', '900000', true)")
            # (The laterals mention g: an uncorrelated one would be computed once for all rows.)
            # Trace g starts at a random time of its day; span i: 0 the server root, 1-3 its children, the
            # rest children of 1-3; offsets within the parent, durations lognormal-ish.
            cur.execute(
                "insert into public.spans (org_id, project_id, trace_id, span_id, parent_span_id, name, kind, service,"
                " start_time, end_time, duration_ns, status_code, attributes, resource)"
                " select %(org)s, %(project)s, lpad(to_hex(g), 32, '0'), lpad(to_hex(g * 16 + i), 16, '0'),"
                "  case when i = 0 then null when i <= 3 then lpad(to_hex(g * 16), 16, '0')"
                "   else lpad(to_hex(g * 16 + 1 + i %% 3), 16, '0') end,"
                "  case when i = 0 then 'GET /api/r' || (g %% 20) else 'op ' || i end,"
                "  case when i = 0 then 'server' when i <= 3 then 'client' else 'internal' end,"
                "  'svc-' || ((g + i) %% 5),"
                "  t0 + i * interval '2 ms', t0 + i * interval '2 ms' + d * interval '1 microsecond', d * 1000,"
                "  case when random() < 0.02 then 'error' else 'ok' end,"
                "  jsonb_build_object('http.method', case when g %% 4 = 0 then 'POST' else 'GET' end,"
                "   'http.route', '/api/r' || (g %% 20), 'http.status_code', 200, 'net.peer', 'host-' || (g %% 50),"
                "   'thread', i, 'user.id', g %% 1000),"
                "  jsonb_build_object('service.name', 'svc-' || ((g + i) %% 5))"
                " from generate_series(%(first)s::bigint, %(last)s::bigint) g"
                " cross join lateral (select %(end)s::timestamptz - random() * interval '1 day' + g * interval '0'"
                "  as t0) s"
                " cross join generate_series(0, %(per_trace)s - 1) i"
                " cross join lateral (select (exp(random() * 3 + 5) * (case when i = 0 then 4 else 1 end)"
                "  + g * 0)::bigint as d) x",
                params,
            )
            span_rows += cur.rowcount
            cur.execute(
                "insert into public.logs (org_id, project_id, time, severity_number, severity_text, service, body,"
                " trace_id, span_id)"
                " select %(org)s, %(project)s, s.start_time, 9, 'INFO', s.service, 'did ' || s.name,"
                "  s.trace_id, s.span_id"
                " from public.spans s where s.project_id = %(project)s"
                "  and s.trace_id between lpad(to_hex(%(first)s::bigint), 32, '0')"
                "  and lpad(to_hex(%(last)s::bigint), 32, '0')"
                "  and ('x' || right(s.span_id, 1))::bit(4)::int %% 2 = 0",
                params,
            )
            log_rows += cur.rowcount
    with transaction() as cur:
        cur.execute("select set_config('statement_timeout', '900000', true)")
        cur.execute("analyze public.spans; analyze public.logs")  # as autovacuum would
    return span_rows, log_rows, time.perf_counter() - started, ranges


def explain(url: str, project_id: Any, trace_id: str) -> str:
    """EXPLAIN ANALYZE of the trace-fetch statements as the service role runs them (the plans RLS adds to are
    the same shape)."""
    import psycopg

    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        for label, bounds in (
            ("recent days", "and s.start_time >= now() - interval '2 days'"),
            ("every partition", ""),
        ):
            rows = conn.execute(
                "explain (analyze, costs off, timing off, summary on) with trace as materialized ("
                " select s.* from public.spans s where s.project_id = %s and s.trace_id = %s "
                + bounds
                + " limit 100010) select * from trace order by start_time, span_id limit 10001",
                (project_id, trace_id),
            ).fetchall()
            out.append(f"-- spans, {label}\n" + "\n".join(r[0] for r in rows))
        rows = conn.execute(
            "explain (analyze, costs off, timing off, summary on) select * from public.logs l"
            " where l.project_id = %s and l.trace_id = %s and l.time >= now() - interval '9 days' limit 1001",
            (project_id, trace_id),
        ).fetchall()
        out.append("-- logs\n" + "\n".join(r[0] for r in rows))
    return "\n\n".join(out)


def run(spans: int, days: int, n: int, show_plans: bool) -> str:
    os.environ.update(BENCH_ENVIRONMENT)
    url, label = prepare_database(keep_dir=False)
    os.environ["DATABASE_URL"] = url
    from observai_local.events import http_event

    bench = bench_workspace(url)
    demo, invoker = bench.demo, bench.invoker
    now = datetime.now(UTC)
    span_rows, log_rows, load_s, ranges = load_dataset(demo, spans, days, now)

    invoker.module("TracesFunction")
    base = f"/v1/projects/{demo.project_id}"
    headers = {"x-api-key": bench.read_key}
    rng = random.Random(5)  # noqa: S311 - picking traces to fetch, not secrets
    everything = range(ranges[0].start, ranges[-1].stop)

    def fetch(numbers: range, hint: bool = False) -> tuple[str, str]:
        tid = trace_id_of(rng.choice(numbers))
        if not hint:
            return f"{base}/traces/{tid}", ""
        return f"{base}/traces/{tid}", f"from={(now - timedelta(days=days + 1)).isoformat()}&to={now.isoformat()}"

    def hinted_day() -> tuple[str, str]:
        day = rng.randrange(len(ranges))
        tid = trace_id_of(rng.choice(ranges[day]))
        day_end = now - timedelta(days=len(ranges) - 1 - day)
        start, end = day_end - timedelta(days=1), day_end
        return f"{base}/traces/{tid}", f"from={start.isoformat()}&to={end.isoformat()}".replace("+", "%2B")

    def q(query: str) -> str:
        return query.replace("+", "%2B")

    hour_ago, day_ago = (now - timedelta(hours=1)).isoformat(), (now - timedelta(days=1)).isoformat()
    scenarios = {
        "trace": lambda: fetch(everything),
        "trace (old)": lambda: fetch(ranges[0]),
        "trace + hint": hinted_day,
        "search service 1h": lambda: (f"{base}/traces", q(f"service=svc-{rng.randrange(5)}&from={hour_ago}")),
        "search attribute 24h": lambda: (
            f"{base}/traces",
            q(f"match[http.route]=/api/r{rng.randrange(20)}&status=error&from={day_ago}"),
        ),
        "search no match 7d": lambda: (
            f"{base}/traces",
            q(f"match[net.peer]=nowhere-{rng.randrange(99)}&from={(now - timedelta(days=days)).isoformat()}"),
        ),
        "services 1h": lambda: (f"{base}/services", q(f"from={hour_ago}")),
    }
    lines = [
        f"Traces: {span_rows:,} spans ({span_rows // SPANS_PER_TRACE:,} traces) and {log_rows:,} logs over {days} d;"
        f" Postgres {label}; load {load_s:.1f} s",
        "",
        f"{'call':<22} {'n':>3} {'p50 ms':>7} {'p95 ms':>7} {'items':>6}  target",
    ]
    for name, make in scenarios.items():
        samples = []
        items = 0
        for i in range(n + 3):
            path, query = make()
            event = http_event("GET", path, raw_query=query, headers=headers)
            started = time.perf_counter()
            response = invoker.invoke("TracesFunction", event)
            elapsed = (time.perf_counter() - started) * 1000
            if response["statusCode"] != 200:
                raise RuntimeError(f"{name} {path}?{query}: {response['statusCode']} {response['body'][:300]}")
            if i >= 3:  # warm-up
                samples.append(elapsed)
            data = json.loads(response["body"])["data"]
            items = len(data) if isinstance(data, list) else len(data.get("spans", data.get("services", [])))
        p95 = _percentile(samples, 95)
        verdict = ("ok" if p95 <= TARGET_P95_MS else "MISSED") if name.startswith("trace") else "-"
        lines.append(
            f"{name:<22} {len(samples):>3} {statistics.median(samples):>7.1f} {p95:>7.1f} {items:>6}  {verdict}"
        )
    if show_plans:
        lines += ["", explain(url, demo.project_id, trace_id_of(rng.choice(ranges[0])))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local.bench_traces", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7, choices=range(1, 8), metavar="1..7")
    parser.add_argument("-n", "--queries", type=int, default=50, help="timed calls per kind (default 50)")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the trace fetch")
    args = parser.parse_args(argv)
    print(run(args.spans, args.days, args.queries, args.explain), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
