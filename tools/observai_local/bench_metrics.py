"""Metrics benchmark (the query part of `make bench`): a realistic dataset, the aggregation job, query latency.

    python -m observai_local.bench_metrics [--series 500] [--days 7] [-n 30]

Builds SERIES gauge series (50 hosts × 10 routes) with one point a minute for DAYS days (500 × 7 d =
5.04 M points, written server-side with generate_series, one transaction per 6 hours), rolls them up with
the aggregation job (points rolled per second), then times N queries of each kind through the metrics
handler in-process (an API Gateway event → the resolver → SQL → the envelope), with an API key:

    raw 1h          the last hour, step 15 s, avg over every series      (raw points)
    24h @ 1m        the last 24 h, step 60 s, avg                         (1-minute rollups)
    7d @ 1h         the last 7 days, step 3600 s, avg                     (1-hour rollups)
    p99 7d by host  the last 7 days, step 3600 s, p99 grouped by host     (1-hour rollups, merged sketches)

and prints p50/p95 of each against the target (p95 ≤ 50 ms), with the resolution each query read and its source
(group rollups, per-series rollups or raw points).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from observai_local.bench import BENCH_ENVIRONMENT, prepare_database

TARGET_P95_MS = 50.0
LOAD_CHUNK_HOURS = 6
HOSTS = 50


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def load_dataset(demo: Any, series: int, days: int, now: datetime) -> tuple[int, float]:
    """SERIES gauge series, a point a minute for DAYS days, written 6 hours at a time; returns points and seconds."""
    from observai.db.connection import transaction
    from observai.telemetry.series import series_id

    rows = []
    for i in range(series):
        attributes = {"service.name": "bench", "host": f"h{i % HOSTS:02d}", "route": f"/r/{i // HOSTS}"}
        rows.append((series_id("bench.latency", attributes), json.dumps(attributes)))
    started = time.perf_counter()
    with transaction() as cur:
        cur.execute(
            "insert into public.metric_series (org_id, project_id, series_id, name, type, unit, attributes)"
            " select %s, %s, s.id, 'bench.latency', 'gauge', 'ms', s.attrs::jsonb"
            " from unnest(%s::bigint[], %s::text[]) as s(id, attrs) on conflict do nothing",
            (demo.org_id, demo.project_id, [r[0] for r in rows], [r[1] for r in rows]),
        )
    end = now.replace(second=0, microsecond=0)
    points = 0
    # One transaction (one ingested_at) per LOAD_CHUNK: the job never splits a transaction, so this bounds what a
    # roll-up run takes on (a live database writes in far smaller transactions).
    chunks = days * 24 // LOAD_CHUNK_HOURS
    for chunk in range(chunks, 0, -1):
        chunk_end = end - timedelta(hours=(chunk - 1) * LOAD_CHUNK_HOURS)
        chunk_start = chunk_end - timedelta(hours=LOAD_CHUNK_HOURS)
        with transaction() as cur:
            cur.execute("select set_config('statement_timeout', '600000', true)")
            # Latency-like values: a lognormal-ish body with a per-host offset and a slow daily wave.
            cur.execute(
                "insert into public.metric_points (org_id, project_id, series_id, time, value)"
                " select %(org)s, %(project)s, s.id, t,"
                "   exp(random() * 1.5 + 2 + (s.n %% 7) / 10.0) * (1.2 + sin(extract(epoch from t) / 13750.0))"
                " from unnest(%(ids)s::bigint[]) with ordinality as s(id, n),"
                "   generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',"
                "     interval '1 minute') as t",
                {"org": demo.org_id, "project": demo.project_id, "ids": [r[0] for r in rows], "start": chunk_start,
                 "end": chunk_end},
            )  # fmt: skip
            points += cur.rowcount
    with transaction() as cur:
        # Fresh statistics, as autovacuum's analyze would give a live database (the job's plans depend on them).
        cur.execute("analyze public.metric_points; analyze public.metric_series")
    return points, time.perf_counter() - started


def roll_up() -> tuple[int, float]:
    from observai.metrics.rollup import run_aggregation

    started = time.perf_counter()
    total = 0
    while True:
        report = run_aggregation(lag_s=0)  # the job's own bound per run (DEFAULT_MAX_POINTS)
        total += report.points_read
        if not report.more_pending:
            break
    return total, time.perf_counter() - started


def run(series: int, days: int, n: int) -> str:
    os.environ.update(BENCH_ENVIRONMENT)
    url, label = prepare_database(keep_dir=False)
    os.environ["DATABASE_URL"] = url
    from observai.db.connection import transaction
    from observai.tenancy.api_keys import insert_key
    from observai.tenancy.bootstrap import create_demo_workspace

    from observai_local.events import http_event
    from observai_local.functions import Invoker, local_overrides
    from observai_local.template import load_template

    demo = create_demo_workspace(f"Bench {uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}@observai.local")
    with transaction() as cur:
        reader = insert_key(
            cur, org_id=demo.org_id, project_id=demo.project_id, name="bench reader", scopes=["read"],
            expires_at=None, created_by=None,
        )  # fmt: skip
    now = datetime.now(UTC)
    points, load_s = load_dataset(demo, series, days, now)
    rolled, roll_s = roll_up()

    invoker = Invoker(load_template(), local_overrides(stage="local", database_url=url))
    invoker.module("MetricsFunction")
    path = f"/v1/projects/{demo.project_id}/metrics/query"
    headers = {"x-api-key": reader.key, "content-type": "application/json"}

    def query(hours: float, step: int, aggregation: str, group_by: list[str] | None = None) -> dict[str, Any]:
        q: dict[str, Any] = {
            "id": "q", "name": "bench.latency", "aggregation": aggregation, "step": step,
            "from": (now - timedelta(hours=hours)).isoformat(), "to": now.isoformat(),
        }  # fmt: skip
        if group_by:
            q["group_by"] = group_by
        return {"queries": [q]}

    scenarios = {
        "raw 1h": query(1, 15, "avg"),
        "24h @ 1m": query(24, 60, "avg"),
        "7d @ 1h": query(24 * days, 3600, "avg"),
        "p99 7d by host": query(24 * days, 3600, "p99", ["host"]),
    }
    lines = [
        f"Metrics: {series} series × {days} d at 60 s = {points:,} points; Postgres {label}",
        f"load (generate_series, server side) {load_s:.1f} s; aggregation job: {rolled:,} points rolled in"
        f" {roll_s:.1f} s = {rolled / roll_s:,.0f} points/s",
        "",
        f"{'query':<16} {'n':>3} {'p50 ms':>7} {'p95 ms':>7} {'series':>6} {'points':>7}  {'read':<6} {'source':<6}"
        " p95 ≤ 50 ms",
    ]
    for name, body in scenarios.items():
        event = http_event("POST", path, headers=headers, body=json.dumps(body))
        samples = []
        result: dict[str, Any] = {}
        for i in range(n + 3):
            started = time.perf_counter()
            response = invoker.invoke("MetricsFunction", event)
            elapsed = (time.perf_counter() - started) * 1000
            if response["statusCode"] != 200:
                raise RuntimeError(f"{name}: {response['statusCode']} {response['body'][:300]}")
            if i >= 3:  # warm-up
                samples.append(elapsed)
            result = json.loads(response["body"])["data"]["results"][0]
        p95 = _percentile(samples, 95)
        lines.append(
            f"{name:<16} {len(samples):>3} {statistics.median(samples):>7.1f} {p95:>7.1f}"
            f" {len(result['series']):>6} {sum(len(s['points']) for s in result['series']):>7}"
            f"  {result.get('resolution')!s:<6} {result.get('source')!s:<6}"
            f" {'ok' if p95 <= TARGET_P95_MS else 'MISSED'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m observai_local.bench_metrics", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--days", type=int, default=7, choices=range(1, 8), metavar="1..7")
    parser.add_argument("-n", "--queries", type=int, default=30, help="timed queries per kind (default 30)")
    args = parser.parse_args(argv)
    print(run(args.series, args.days, args.queries), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
