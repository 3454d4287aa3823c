"""Metrics benchmark (the query part of `make bench`): a realistic dataset, the aggregation job, query latency.

    python -m observai_local.bench_metrics [--series 500] [--days 7] [-n 30]

Builds SERIES gauge series (50 hosts × 10 routes) with one point a minute for DAYS days (500 × 7 d =
5.04 M points, written server-side with generate_series, one transaction per 6 hours), then measures, in the same
run:

    ceiling         one plain SQL statement computing count/sum/min/max per series and minute over the same points
                    (INSERT … SELECT … GROUP BY into a plain, unindexed scratch table): the least a roll-up costs
    job             the aggregation job rolling them up (1m/5m/1h/1d per series, sketches, group rollups), as the
                    scheduled function runs it: the per-series runs and the group stage side by side
    ingest          the metric points per second ingestion writes: mixed batches (a third metric points) through
                    the ingest handler in-process, as bench_ingest's "native" scenario

and prints the job's points/s against its targets (≥ 150,000 points/s, ≥ 0.5 of the ceiling, ≥ 3× ingestion's
metric points/s), also per CPU second of the whole Postgres cluster and this process (figures that hold on a
shared machine). It then vacuums what it wrote (``settle``; not with --no-vacuum), and
times N queries of each kind through the metrics handler in-process (an API Gateway event → the resolver → SQL →
the envelope), with an API key:

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
from dataclasses import dataclass
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
    import psycopg
    from observai.config import get_settings

    # What autovacuum has long done to a live database's points, each batch soon after it arrived: their statistics
    # (the job's plans depend on them) and their first vacuum (the visibility map). Left to autovacuum here, the
    # first vacuum of millions of just-loaded rows would run beside whatever is measured next.
    url = get_settings().database_url
    assert url is not None
    with psycopg.connect(url.get_secret_value(), autocommit=True) as conn:
        conn.execute("vacuum (analyze) public.metric_points")
        conn.execute("analyze public.metric_series")
    return points, time.perf_counter() - started


TARGET_POINTS_S = 150_000
TARGET_VS_CEILING = 0.5
TARGET_VS_INGEST = 3.0
INGEST_BATCHES = 100  # a median over ~5 s of batches: 20 moved ±20 % between runs
INGEST_SIZE = 1000


@dataclass
class Timed:
    points: int
    seconds: float
    cpu_s: float | None = None  # the Postgres cluster's CPU (every process), plus this process's
    stages: tuple[float, float] | None = None  # the job's: seconds its per-series runs and its group runs took

    @property
    def rate(self) -> float:
        return self.points / self.seconds

    @property
    def cpu_rate(self) -> float | None:
        return self.points / self.cpu_s if self.cpu_s else None


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cluster_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds of the whole Postgres cluster so far: the postmaster with its reaped children (cutime + cstime:
    backends that have exited, such as the group stage's), plus every child alive now (backends, parallel workers,
    the WAL writer, autovacuum)."""
    own = _stat(postmaster) if postmaster is not None else None
    if own is None:
        return None
    ticks = int(own[11]) + int(own[12]) + int(own[13]) + int(own[14])
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None and fields[1] == str(postmaster):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postmaster(conn: Any) -> int | None:
    """The postmaster's pid (from its data directory's postmaster.pid), None when this process cannot read it."""
    (data_directory,) = conn.execute("show data_directory").fetchone()
    try:
        with open(os.path.join(data_directory, "postmaster.pid")) as pidfile:
            return int(pidfile.readline())
    except (OSError, ValueError):
        return None


def _cpu_since(postmaster: int | None, server: float | None, client: float) -> float | None:
    after = _cluster_cpu_s(postmaster)
    return after - server + time.process_time() - client if server is not None and after is not None else None


def roll_up(url: str) -> Timed:
    """The scheduled job's two stages side by side (``observai.metrics.pipeline``), until nothing is pending."""
    import psycopg
    from observai.metrics.pipeline import run_side_by_side

    with psycopg.connect(url) as conn:
        postmaster = _postmaster(conn)
    server, client = _cluster_cpu_s(postmaster), time.process_time()
    started = time.perf_counter()
    total = 0
    series_s = groups_s = 0.0
    while True:
        # The job's own bounds per run (DEFAULT_MAX_POINTS, the group step's), no lag: every point is due.
        job = run_side_by_side(max_runs=1_000, time_left=lambda: True, lag_s=0)
        total += sum(run.points_read for run in job.series)
        series_s += sum(run.seconds for run in job.series)
        groups_s += sum(run.seconds for run in job.groups)
        if not (job.series[-1].more_pending or (job.groups and job.groups[-1].more_pending)):
            break
    elapsed = time.perf_counter() - started
    return Timed(total, elapsed, _cpu_since(postmaster, server, client), (series_s, groups_s))


def ceiling(url: str, project_id: Any) -> Timed:
    """The least a roll-up of the points costs: count/sum/min/max per series and minute in one statement."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        postmaster = _postmaster(conn)
        conn.execute("set statement_timeout = 0")
        conn.execute("drop table if exists public.bench_rollup_ceiling")
        conn.execute(
            "create table public.bench_rollup_ceiling (project_id uuid, series_id bigint, bucket_start timestamptz,"
            " count bigint, sum float8, min float8, max float8)"
        )
        before, client = _cluster_cpu_s(postmaster), time.process_time()
        started = time.perf_counter()
        conn.execute(
            "insert into public.bench_rollup_ceiling"
            " select project_id, series_id, date_bin(interval '60 seconds', time, timestamptz '2000-01-01'),"
            "   count(*), sum(value), min(value), max(value)"
            " from public.metric_points where project_id = %s group by 1, 2, 3",
            (project_id,),
        )
        elapsed = time.perf_counter() - started
        cpu = _cpu_since(postmaster, before, client)
        row = conn.execute("select coalesce(sum(count), 0)::bigint from public.bench_rollup_ceiling").fetchone()
        conn.execute("drop table public.bench_rollup_ceiling")
    points = int(row[0]) if row else 0
    return Timed(points, elapsed, cpu)


def ingest_metric_points(demo: Any) -> Timed:
    """Metric points per second through the ingest handler (mixed batches, as bench_ingest's native scenario):
    the median batch, a third of whose events are metric points."""
    from observai_local.bench_ingest import _native

    base = datetime.now(UTC) - timedelta(minutes=30)
    step = _native(demo, INGEST_BATCHES + 3, INGEST_SIZE, base, seq0=90_000)
    samples = [step(i) for i in range(INGEST_BATCHES + 3)][3:]  # three to warm up
    metric_points = len(range(0, INGEST_SIZE, 3))  # native_events: every third event is a metric point
    return Timed(metric_points, statistics.median(samples))


def query_body(
    now: datetime, hours: float, step: int, aggregation: str, group_by: list[str] | None = None
) -> dict[str, Any]:
    """The metric query request the benches time: bench.latency over the last ``hours`` before ``now``."""
    q: dict[str, Any] = {
        "id": "q", "name": "bench.latency", "aggregation": aggregation, "step": step,
        "from": (now - timedelta(hours=hours)).isoformat(), "to": now.isoformat(),
    }  # fmt: skip
    if group_by:
        q["group_by"] = group_by
    return {"queries": [q]}


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def settle(url: str) -> float:
    """VACUUM (ANALYZE) what the dataset wrote; returns seconds. A live database's last week was vacuumed by
    autovacuum long ago (visibility maps set: index-only scans of rollups without heap fetches); built here in
    minutes, it would otherwise be vacuumed while the queries are timed, and read with heap fetches."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum (analyze) public.metric_points, public.metric_rollups, public.metric_group_rollups")
    return time.perf_counter() - started


def run(series: int, days: int, n: int, *, vacuum: bool = True) -> str:
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
    least = ceiling(url, demo.project_id)
    job = roll_up(url)
    # Ingestion's rate in a settled database: right after the job, autovacuum works through its millions of fresh
    # rows and the figure moved ±20 % from run to run with it.
    vacuum_s = settle(url) if vacuum else None
    ingest = ingest_metric_points(demo)
    vs_ceiling, vs_ingest = job.rate / least.rate, job.rate / ingest.rate

    invoker = Invoker(load_template(), local_overrides(stage="local", database_url=url))
    invoker.module("MetricsFunction")
    path = f"/v1/projects/{demo.project_id}/metrics/query"
    headers = {"x-api-key": reader.key, "content-type": "application/json"}

    def query(hours: float, step: int, aggregation: str, group_by: list[str] | None = None) -> dict[str, Any]:
        return query_body(now, hours, step, aggregation, group_by)

    scenarios = {
        "raw 1h": query(1, 15, "avg"),
        "24h @ 1m": query(24, 60, "avg"),
        "7d @ 1h": query(24 * days, 3600, "avg"),
        "p99 7d by host": query(24 * days, 3600, "p99", ["host"]),
    }
    lines = [
        f"Metrics: {series} series × {days} d at 60 s = {points:,} points; Postgres {label}",
        f"load (generate_series, server side) {load_s:.1f} s",
        "",
        f"{'roll-ups':<34} {'points':>10} {'seconds':>8} {'points/s':>10} {'per cpu-s':>10}",
        f"{'ceiling (one INSERT … GROUP BY)':<34} {least.points:>10,} {least.seconds:>8.2f} {least.rate:>10,.0f}"
        f" {least.cpu_rate or 0:>10,.0f}",
        f"{'aggregation job':<34} {job.points:>10,} {job.seconds:>8.2f} {job.rate:>10,.0f} {job.cpu_rate or 0:>10,.0f}",
        *(
            [f"  its two stages side by side: per-series runs {job.stages[0]:.1f} s, group runs {job.stages[1]:.1f} s"]
            if job.stages
            else []
        ),
        f"{'ingest (metric points of batches)':<34} {ingest.points:>10,} {ingest.seconds:>8.3f} {ingest.rate:>10,.0f}",
        f"job ≥ {TARGET_POINTS_S:,} points/s: {job.rate:,.0f} {_verdict(job.rate >= TARGET_POINTS_S)}",
        f"job / ceiling ≥ {TARGET_VS_CEILING}: {vs_ceiling:.2f} {_verdict(vs_ceiling >= TARGET_VS_CEILING)}"
        + (f" (per cpu-s: {job.cpu_rate / least.cpu_rate:.2f})" if job.cpu_rate and least.cpu_rate else ""),
        f"job / ingest ≥ {TARGET_VS_INGEST:.0f}: {vs_ingest:.2f} {_verdict(vs_ingest >= TARGET_VS_INGEST)}",
        "",
        f"vacuum (analyze) of points and rollups before the queries (autovacuum's long done on a live week):"
        f" {vacuum_s:.1f} s"
        if vacuum_s is not None
        else "no vacuum before the queries (--no-vacuum): rollups read with heap fetches, autovacuum may run meanwhile",
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
    parser.add_argument("--no-vacuum", action="store_true", help="query the freshly written tables unvacuumed")
    args = parser.parse_args(argv)
    print(run(args.series, args.days, args.queries, vacuum=not args.no_vacuum), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
