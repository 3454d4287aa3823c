"""Latency under ingest load (the `mixed` part of `make bench`): the query targets, with and without ingestion.

    python -m observai_local.bench_mixed [--logs 2000000] [--spans 200000] [--series 200] [-n 30]

1. A dataset like the other parts' (log lines and spans over 24 h, gauge series over 2 days, rolled up and
   vacuumed), in one project read through the handlers in-process.
2. The ingest ceiling of this machine: the native ingest handler, batches of 1,000 mixed events sent back to back
   by one process (its events/s is "the maximum rate").
3. Quiet: ingestion alone at half that rate (background processes, paced), its latency per batch; then every query
   with nothing else running.
4. Loaded: the same queries while the background processes keep ingesting at half the maximum rate.

It prints p50/p95 of each query quiet and loaded against its target (p95 ≤ 50 ms metrics, ≤ 100 ms trace fetch and
filtered log search, ≤ 300 ms free text), and ingest p50/p95 per batch alone and beside the queries (target: p95 <
3× p50).
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from observai_local.bench import BENCH_ENVIRONMENT, bench_workspace, prepare_database

BATCH_SIZE = 1000
WARMUP = 3


def _percentile(samples: list[float], p: float) -> float:
    from observai_local.bench_ingest import percentile

    return percentile(samples, p)


# ---------------------------------------------------------------------------------------------------------------
# The background ingestion: its own process (its own GIL and Postgres backend), paced at a rate.


def _ingest_process(
    url: str, api_key: str, seq0: int, rate: float, stop: Any, ready: Any, out: Any, max_batches: int
) -> None:
    """Send native batches at ``rate`` events/s (or back to back when rate is 0) until ``stop`` is set or
    ``max_batches`` were sent; put the per-batch latencies (s) and the start/end times on ``out``."""
    os.environ.update(BENCH_ENVIRONMENT)
    os.environ["DATABASE_URL"] = url
    from observai_local.bench_ingest import _handler, native_events
    from observai_local.events import http_event

    call = _handler()
    headers = {"x-api-key": api_key, "content-type": "application/json", "content-encoding": "gzip"}
    # native_events offsets a batch by seq × 10 ms: the seqs used here (< 40,000) stay within the past hour.
    base = datetime.now(UTC) - timedelta(minutes=30)
    # Bodies built ahead, so the pacing measures the handler, not the generator.
    bodies = [
        gzip.compress(json.dumps(native_events(BATCH_SIZE, seq, base)).encode()) for seq in range(seq0, seq0 + 40)
    ]
    ready.set()
    interval = BATCH_SIZE / rate if rate > 0 else 0.0
    latencies: list[float] = []
    started = time.perf_counter()
    next_at = started
    sent = 0
    while not stop.is_set() and sent < max_batches:
        body = bodies[sent % len(bodies)] if sent < len(bodies) else None
        if body is None:  # fresh ids and times past the prepared ones, so nothing is deduplicated away
            body = gzip.compress(json.dumps(native_events(BATCH_SIZE, seq0 + sent, base)).encode())
        event = http_event("POST", "/v1/ingest", headers=headers, body=body)
        t0 = time.perf_counter()
        result = call(event)
        latencies.append(time.perf_counter() - t0)
        if result["statusCode"] != 202:
            out.put({"error": f"{result['statusCode']} {result['body'][:200]}"})
            return
        sent += 1
        if interval:
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.perf_counter()  # behind: never burst to catch up
    out.put({"latencies": latencies, "elapsed": time.perf_counter() - started, "events": sent * BATCH_SIZE})


class BackgroundIngest:
    """``processes`` paced senders sharing ``rate`` events/s between them."""

    def __init__(self, url: str, api_key: str, rate: float, processes: int, seq0: int, max_batches: int = 10**6):
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.out: Any = ctx.Queue()
        self.readies = [ctx.Event() for _ in range(processes)]
        self.procs = [
            ctx.Process(
                target=_ingest_process,
                args=(
                    url,
                    api_key,
                    seq0 + i * 5_000,
                    rate / processes,
                    self.stop,
                    self.readies[i],
                    self.out,
                    max_batches,
                ),
                daemon=True,
            )
            for i in range(processes)
        ]

    def __enter__(self) -> BackgroundIngest:
        for proc in self.procs:
            proc.start()
        for ready in self.readies:
            if not ready.wait(120):
                raise RuntimeError("a background ingest process did not start")
        return self

    def finish(self) -> tuple[list[float], float]:
        """Stop and collect: every batch's latency (s), and events/s over the run."""
        self.stop.set()
        latencies: list[float] = []
        events = 0
        elapsed = 0.0
        for _ in self.procs:
            result = self.out.get(timeout=120)
            if "error" in result:
                raise RuntimeError(f"background ingest failed: {result['error']}")
            latencies += result["latencies"]
            events += result["events"]
            elapsed = max(elapsed, result["elapsed"])
        for proc in self.procs:
            proc.join(30)
        return latencies, events / elapsed if elapsed else 0.0

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()


# ---------------------------------------------------------------------------------------------------------------
# The queries


def _scenarios(bench: Any, now: datetime, start: datetime, trace_count: int) -> list[tuple[str, str, Any, float]]:
    import hashlib
    import random

    from observai_local.events import http_event

    demo = bench.demo
    headers = {"x-api-key": bench.read_key}
    base = f"/v1/projects/{demo.project_id}"
    window = f"from={quote(start.isoformat())}&to={quote(now.isoformat())}"
    rng = random.Random(11)  # noqa: S311 (which trace to fetch, not a secret)

    def logs(path: str, q: str, extra: str = "") -> Callable[[], dict[str, Any]]:
        return lambda: http_event(
            "GET", f"{base}/logs{path}", headers=headers, raw_query=f"q={quote(q)}&{window}{extra}"
        )

    def trace() -> dict[str, Any]:
        k = rng.randrange(trace_count)
        return http_event("GET", f"{base}/traces/{hashlib.md5(f'trace{k}'.encode()).hexdigest()}", headers=headers)  # noqa: S324

    def metrics(hours: float, step: int, aggregation: str, group_by: list[str] | None = None) -> Callable[[], Any]:
        from observai_local.bench_metrics import query_body

        body = json.dumps(query_body(now, hours, step, aggregation, group_by))
        json_headers = headers | {"content-type": "application/json"}
        return lambda: http_event("POST", f"{base}/metrics/query", headers=json_headers, body=body)

    return [
        ("metrics 24h @ 1m", "MetricsFunction", metrics(24, 60, "avg"), 50.0),
        ("metrics p99 by host", "MetricsFunction", metrics(48, 3600, "p99", ["host"]), 50.0),
        ("trace fetch", "TracesFunction", trace, 100.0),
        ("filtered search", "LogsFunction", logs("", "service:checkout severity:error", "&limit=50"), 100.0),
        ("free text search", "LogsFunction", logs("", "timeout", "&limit=50"), 300.0),
        ("histogram, free text", "LogsFunction", logs("/histogram", "timeout"), 300.0),
    ]


def _time_queries(invoker: Any, scenarios: list[tuple[str, str, Any, float]], n: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    for name, function, build, _target in scenarios:
        invoker.module(function)
        samples: list[float] = []
        for i in range(n + WARMUP):
            event = build()
            started = time.perf_counter()
            response = invoker.invoke(function, event)
            elapsed = (time.perf_counter() - started) * 1000
            if response["statusCode"] != 200:
                raise RuntimeError(f"{name}: {response['statusCode']} {response['body'][:300]}")
            if i >= WARMUP:
                samples.append(elapsed)
        results[name] = samples
    return results


# ---------------------------------------------------------------------------------------------------------------


def run(logs: int, spans: int, series: int, n: int, processes: int = 2) -> str:
    os.environ.update(BENCH_ENVIRONMENT)
    url, label = prepare_database(keep_dir=False)
    os.environ["DATABASE_URL"] = url
    from observai_local import bench_logs, bench_metrics

    bench = bench_workspace(url)
    demo = bench.demo
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=24)
    bench_logs.load_logs(demo.org_id, demo.project_id, logs, start, now)
    bench_logs.load_spans(demo.org_id, demo.project_id, spans, start, now)
    bench_logs.load_volume(demo.project_id, now - timedelta(hours=1))
    points, _ = bench_metrics.load_dataset(demo, series, 2, now)
    bench_metrics.roll_up(url)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum (analyze) public.logs, public.spans, public.metric_points, public.metric_rollups")

    # The maximum rate: one process, back to back.
    with BackgroundIngest(url, demo.api_key, rate=0, processes=1, seq0=0, max_batches=15) as probe:
        while probe.procs[0].is_alive() and probe.out.empty():
            time.sleep(0.2)
        max_latencies, max_rate = probe.finish()
    half = max_rate / 2

    scenarios = _scenarios(bench, now, start, spans // bench_logs.SPANS_PER_TRACE)
    quiet = _time_queries(bench.invoker, scenarios, n)
    with BackgroundIngest(url, demo.api_key, rate=half, processes=processes, seq0=1_000) as alone:
        time.sleep(20)
        alone_latencies, alone_rate = alone.finish()
    with BackgroundIngest(url, demo.api_key, rate=half, processes=processes, seq0=20_000) as load:
        time.sleep(2)
        loaded = _time_queries(bench.invoker, scenarios, n)
        loaded_latencies, loaded_rate = load.finish()

    lines = [
        f"Mixed: {logs:,} log lines, {spans:,} spans over 24 h, {series} series × 2 d ({points:,} points);"
        f" Postgres {label}",
        f"ingest maximum (1 process, back to back, batches of {BATCH_SIZE}): {max_rate:,.0f} events/s"
        f" (p50 {statistics.median(max_latencies) * 1000:.0f} ms a batch); the load: {half:,.0f} events/s from"
        f" {processes} paced processes",
        "",
        f"{'query':<22} {'quiet p50':>9} {'p95':>7} {'loaded p50':>10} {'p95':>7}  target",
    ]
    for name, _function, _build, target in scenarios:
        q, lo = quiet[name], loaded[name]
        q95, l95 = _percentile(q, 95), _percentile(lo, 95)
        verdict = "ok" if l95 <= target and q95 <= target else "MISSED"
        lines.append(
            f"{name:<22} {statistics.median(q):>9.1f} {q95:>7.1f} {statistics.median(lo):>10.1f} {l95:>7.1f}"
            f"  p95 ≤ {target:.0f} ms {verdict}"
        )
    lines.append("")
    for title, lat, rate in (
        ("ingest alone at half rate", alone_latencies, alone_rate),
        ("ingest beside the queries", loaded_latencies, loaded_rate),
    ):
        p50, p95 = statistics.median(lat) * 1000, _percentile(lat, 95) * 1000
        lines.append(
            f"{title:<27} {len(lat):>4} batches, {rate:>7,.0f} events/s: p50 {p50:.0f} ms, p95 {p95:.0f} ms ="
            f" {p95 / p50:.1f}× p50 (target < 3×) {'ok' if p95 < 3 * p50 else 'MISSED'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local bench_mixed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=2_000_000)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--series", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2, help="background ingest processes (default 2)")
    parser.add_argument("-n", "--queries", type=int, default=30, help="timed queries per kind (default 30)")
    args = parser.parse_args(argv)
    try:
        print(run(args.logs, args.spans, args.series, args.queries, args.processes), flush=True)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
