"""Ingestion benchmark (the ingest part of `make bench`): events per second against a ceiling measured in the same run.

    python -m observai_local.bench_ingest [--batches 30] [--size 1000]

Every scenario writes the same kind of batch (a third metric points, a third logs, a third spans,
realistic attributes) into the same tables, each batch with fresh timestamps and ids so nothing is
deduplicated away:

    ceiling     raw binary COPY of pre-built rows, one transaction per batch: no parsing, no checks
                (the writer's own row tuples, values already in their wire form: no encoding either)
    ceiling/3   the same, one transaction per signal: what OTLP's three requests per batch cost at least
    ceiling/o   the ceiling of the OTLP batch's own rows (what the otlp scenario stores: a resource and a
                scope on every log and span, eight attributes a span), one transaction per batch
    native      the ingest handler in-process: an API Gateway event carrying a gzip JSON body of the
                batch → decoded, validated, deduplicated, committed (what a deployed function does)
    otlp        the same handler with OTLP protobuf bodies (/v1/metrics, /v1/logs, /v1/traces; one
                request per signal, the batch split three ways)
    otlp/json   the same requests as OTLP/JSON (the Python decoder; no target, for comparison)
    naive       row-by-row INSERT of the same rows, one transaction per batch

It prints events/s for each, the ratio of native and OTLP to the ceiling (and OTLP's to ceiling/o and ceiling/3), and
p50/p95 latency of a batch.
With the embedded Postgres it also prints the CPU time a batch costs, in this process (client) and in its
Postgres backend (server, from /proc), and the events/s that makes on one core: figures that hold on a busy
machine, where wall-clock times swing with what else runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from observai_local.bench import BENCH_ENVIRONMENT, prepare_database

SERVICES = ("checkout", "payments", "search", "auth")


def native_events(size: int, seq: int, base: datetime) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(size):
        t = (base + timedelta(milliseconds=seq * 10 + i % 10, microseconds=i)).isoformat()
        service = SERVICES[i % len(SERVICES)]
        kind = i % 3
        if kind == 0:
            events.append(
                {
                    "type": "metric",
                    "name": f"http.server.duration.{i % 25}",
                    "kind": "gauge",
                    "value": (i * 7919) % 1000 / 10,
                    "time": t,
                    "service": service,
                    "unit": "ms",
                    "attributes": {
                        "http.route": f"/api/v1/items/{i % 40}",
                        "http.method": "GET",
                        "region": "eu-west-1",
                    },
                }
            )
        elif kind == 1:
            events.append(
                {
                    "type": "log",
                    "time": t,
                    "severity": ("info", "warn", "error")[i % 3],
                    "service": service,
                    "body": f"request {seq}-{i} handled for user {i % 977} in {i % 250} ms",
                    "attributes": {"http.status_code": 200 + (i % 5), "user.id": f"u{i % 977}", "path": "/api/v1"},
                    "trace_id": f"{seq:016x}{i:016x}",
                    "span_id": f"{i:016x}",
                }
            )
        else:
            events.append(
                {
                    "type": "span",
                    "trace_id": f"{seq:016x}{i:016x}",
                    "span_id": f"{i + 1:016x}",
                    "name": f"GET /api/v1/items/{i % 40}",
                    "kind": "server",
                    "start_time": t,
                    "duration_ms": i % 90,
                    "status": "error" if i % 50 == 0 else "ok",
                    "service": service,
                    "attributes": {"http.method": "GET", "http.status_code": 200, "net.peer.ip": "10.0.0.1"},
                }
            )
    return events


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def run(batches: int, size: int) -> str:
    os.environ.update(BENCH_ENVIRONMENT)
    url, label = prepare_database(keep_dir=False)
    os.environ["DATABASE_URL"] = url
    from observai.tenancy.bootstrap import create_demo_workspace

    demo = create_demo_workspace(f"Bench {uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}@observai.local")
    base = datetime.now(UTC) - timedelta(minutes=30)
    scenarios = {
        "ceiling": _ceiling(demo, batches, size, base, seq0=0),
        "ceiling/3": _ceiling(demo, batches, size, base, seq0=40_000, per_signal=True),
        "native": _native(demo, batches, size, base, seq0=10_000),
        "otlp": _otlp(demo, batches, size, seq0=20_000),
        "otlp/json": _otlp(demo, batches, size, seq0=60_000, json=True),
        "ceiling/o": _otlp_ceiling(demo, batches, size, seq0=50_000),
        "naive": _naive(demo, batches, size, base, seq0=30_000),
    }
    # Interleaved rounds: every scenario writes into tables of the same size (indexes grow as rows arrive,
    # so running one scenario after another would favour the first). The naive baseline runs every 5th round.
    results: dict[str, list[float]] = {name: [] for name in scenarios}
    # CPU from the second round on: the first call of each scenario warms caches (schemas, plans, memos).
    client_cpu: dict[str, float] = dict.fromkeys(scenarios, 0.0)
    server_cpu: dict[str, float] = dict.fromkeys(scenarios, 0.0)
    cpu_samples: dict[str, int] = dict.fromkeys(scenarios, 0)
    for round_ in range(batches):
        for name, step in scenarios.items():
            if name == "naive" and round_ % 5:
                continue
            server_before, client_before = _backend_cpu_s(), time.process_time()
            results[name].append(step(round_))
            client_after, server_after = time.process_time(), _backend_cpu_s()
            if round_ and server_before is not None and server_after is not None:
                client_cpu[name] += client_after - client_before
                server_cpu[name] += server_after - server_before
                cpu_samples[name] += 1
    with_cpu = all(cpu_samples.values())
    ceiling_rate = size / statistics.median(results["ceiling"])
    lines = [
        f"Ingest: {batches} batches of {size} mixed events per scenario (1/3 metrics, logs, spans); Postgres {label}",
        "",
        f"{'scenario':<10} {'batches':>7} {'p50 ms':>8} {'p95 ms':>8} {'events/s':>10} {'vs ceiling':>10}"
        + (f" {'client cpu':>10} {'server cpu':>10} {'1-core ev/s':>11} {'vs ceiling':>10}" if with_cpu else ""),
    ]
    ceiling_cpu = (client_cpu["ceiling"] + server_cpu["ceiling"]) / max(1, cpu_samples["ceiling"])
    for name, samples in results.items():
        rate = size / statistics.median(samples)
        line = (
            f"{name:<10} {len(samples):>7} {statistics.median(samples) * 1000:>8.1f}"
            f" {percentile(samples, 95) * 1000:>8.1f} {rate:>10,.0f} {rate / ceiling_rate:>9.0%}"
        )
        if with_cpu:
            client, server = client_cpu[name] / cpu_samples[name], server_cpu[name] / cpu_samples[name]
            line += (
                f" {client * 1000:>8.1f}ms {server * 1000:>8.1f}ms {size / (client + server):>11,.0f}"
                f" {ceiling_cpu / (client + server):>9.0%}"
            )
        lines.append(line)
    per_signal_rate = size / statistics.median(results["ceiling/3"])
    otlp_rate = size / statistics.median(results["otlp"])
    otlp_rows_rate = size / statistics.median(results["ceiling/o"])
    lines += [
        "",
        f"otlp vs ceiling/o (a raw COPY of the same OTLP rows): {otlp_rate / otlp_rows_rate:.0%}",
        f"otlp vs ceiling/3 (one transaction per signal, as OTLP sends a batch): {otlp_rate / per_signal_rate:.0%}",
        "",
        "ceiling: raw binary COPY of the pre-built rows of the native batch (ceiling/3: one transaction per signal;",
        "ceiling/o: of the OTLP batch's rows, one transaction); native: gzip JSON through the ingest handler; otlp:",
        "protobuf through the ingest handler (3 requests per batch; otlp/json: the same as OTLP/JSON); naive:",
        "row-by-row INSERT.",
    ]
    if with_cpu:
        lines.append(
            "cpu: mean CPU time per batch in this process and in its Postgres backend (10 ms clock ticks, summed"
            " over the run); 1-core ev/s: events per second if both ran on one core."
        )
    return "\n".join(lines)


def _backend_cpu_s() -> float | None:
    """CPU seconds used so far by the Postgres backend of this process's connection (local server on Linux)."""
    from observai.db.connection import get_connection

    try:
        pid = get_connection().info.backend_pid
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _decoded(size: int, seq: int, base: datetime) -> Any:
    from observai.telemetry.limits import now_ns
    from observai.telemetry.native import decode_native

    return decode_native(json.dumps(native_events(size, seq, base)).encode(), now_ns=now_ns())


def _rows(cur: Any, demo: Any, batch: Any) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the writer would COPY for ``batch`` (series created beforehand, untimed)."""
    from observai.retention.policy import row_retention
    from observai.telemetry import usage, writer

    keep = row_retention(usage.plan_limits(demo.org_id))
    batch.complete()
    _, ids, _ = writer._resolve_series(cur, demo.org_id, demo.project_id, batch.metrics)
    points = {(sid, writer.pg_time(p.time_ns)): p for sid, p in zip(ids, batch.metrics, strict=True)}
    return {
        "metric_points": writer._metric_rows(demo.org_id, demo.project_id, points, keep.metrics),
        "logs": list(writer._log_rows(demo.org_id, demo.project_id, batch.logs, keep, Counter())),
        "spans": list(writer._span_rows(demo.org_id, demo.project_id, batch.spans, keep.spans)),
    }


# table → the writer's (column list, wire types, real column types)
_COLUMNS = {
    "metric_points": ("_METRIC_COLUMNS", "_METRIC_TYPES", "_METRIC_COLUMN_TYPES"),
    "logs": ("_LOG_COLUMNS", "_LOG_TYPES", "_LOG_COLUMN_TYPES"),
    "spans": ("_SPAN_COLUMNS", "_SPAN_TYPES", "_SPAN_COLUMN_TYPES"),
}


def _prepared_rows(demo: Any, batches: int, size: int, base: datetime, seq0: int) -> list[dict[str, list[Any]]]:
    """Each batch's rows, built before timing starts (series created, untimed)."""
    from observai.db.connection import transaction

    prepared = []
    for seq in range(seq0, seq0 + batches):
        with transaction() as cur:
            prepared.append(_rows(cur, demo, _decoded(size, seq, base)))
    return prepared


def _ceiling(
    demo: Any, batches: int, size: int, base: datetime, seq0: int, *, per_signal: bool = False
) -> Callable[[int], float]:
    """Raw binary COPY of pre-built rows: one transaction per batch, or (``per_signal``) one per table, as OTLP
    sends a batch: three requests, three transactions."""
    return _copying(_prepared_rows(demo, batches, size, base, seq0), per_signal=per_signal)


def _copying(prepared: list[dict[str, list[Any]]], *, per_signal: bool) -> Callable[[int], float]:
    from observai.db.connection import transaction
    from observai.telemetry import writer

    def step(round_: int) -> float:
        started = time.perf_counter()
        if per_signal:
            for table, table_rows in prepared[round_].items():
                with transaction() as cur:
                    columns, types, _ = (getattr(writer, name) for name in _COLUMNS[table])
                    writer._copy(cur, table, columns, types, table_rows)
        else:
            with transaction() as cur:
                for table, table_rows in prepared[round_].items():
                    columns, types, _ = (getattr(writer, name) for name in _COLUMNS[table])
                    writer._copy(cur, table, columns, types, table_rows)
        return time.perf_counter() - started

    return step


def _naive(demo: Any, batches: int, size: int, base: datetime, seq0: int) -> Callable[[int], float]:
    from observai.db.connection import transaction
    from observai.telemetry import writer

    prepared = [
        {table: [_plain(row, getattr(writer, _COLUMNS[table][2])) for row in rows] for table, rows in batch.items()}
        for batch in _prepared_rows(demo, batches, size, base, seq0)
    ]

    def step(round_: int) -> float:
        started = time.perf_counter()
        with transaction() as cur:
            for table, table_rows in prepared[round_].items():
                columns = getattr(writer, _COLUMNS[table][0])
                placeholders = ", ".join(["%s"] * len(columns.split(",")))
                sql = f"insert into public.{table} ({columns}) values ({placeholders})"
                for row in table_rows:
                    cur.execute(sql, row)
        return time.perf_counter() - started

    return step


def _plain(row: tuple[Any, ...], column_types: list[str]) -> tuple[Any, ...]:
    """A COPY row (values in binary wire form) as the Python values an INSERT takes."""
    from observai.telemetry import writer
    from psycopg.types.json import Jsonb

    def plain(value: Any, column_type: str) -> Any:
        if value is None:
            return None
        if column_type == "uuid":
            return uuid.UUID(bytes=value)
        if column_type == "jsonb":
            return Jsonb(json.loads(value[1:]))
        if column_type == "timestamptz":
            return writer.ts_of(value)
        return value

    return tuple(plain(v, t) for v, t in zip(row, column_types, strict=True))


def _handler() -> Callable[[dict[str, Any]], dict[str, Any]]:
    from observai_local.functions import Invoker, local_overrides
    from observai_local.template import load_template

    invoker = Invoker(load_template(), local_overrides(stage="local", database_url=os.environ["DATABASE_URL"]))
    invoker.module("IngestFunction")  # the cold start is not part of the measurement
    # The function's environment kept for the whole run, as a Lambda container keeps it (the runner then has no
    # variable to swap per call).
    for name, value in invoker.environment(invoker.template.function("IngestFunction")).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def call(event: dict[str, Any]) -> dict[str, Any]:
        return invoker.invoke("IngestFunction", event)

    return call


def _native(demo: Any, batches: int, size: int, base: datetime, seq0: int) -> Callable[[int], float]:
    from observai_local.events import http_event

    call = _handler()
    headers = {"x-api-key": demo.api_key, "content-type": "application/json", "content-encoding": "gzip"}
    bodies = [gzip.compress(json.dumps(native_events(size, seq, base)).encode()) for seq in range(seq0, seq0 + batches)]

    def step(round_: int) -> float:
        event = http_event("POST", "/v1/ingest", headers=headers, body=bodies[round_])
        started = time.perf_counter()
        result = call(event)
        elapsed = time.perf_counter() - started
        if result["statusCode"] != 202 or '"status":"stored"' not in result["body"]:
            raise RuntimeError(f"native ingest failed: {result['statusCode']} {result['body'][:300]}")
        return elapsed

    return step


def _otlp_requests(batches: int, size: int, seq0: int, *, json: bool = False) -> list[list[tuple[str, bytes]]]:
    """Each batch as the three OTLP requests an SDK's exporters send, protobuf (or OTLP/JSON): (path, body)."""
    from observai.telemetry.limits import now_ns

    from tests.helpers.otlp_payloads import (
        many_logs_request,
        many_points_request,
        many_spans_request,
        to_otlp_json,
        to_protobuf,
    )

    encode = to_otlp_json if json else to_protobuf

    third = size // 3
    requests = []
    for seq in range(seq0, seq0 + batches):
        now = now_ns() - seq * 1_000_000  # distinct timestamps per batch: nothing is a duplicate
        requests.append(
            [
                ("/v1/metrics", encode(many_points_request(size - 2 * third, now))),
                ("/v1/logs", encode(many_logs_request(third, now))),
                ("/v1/traces", encode(many_spans_request(third, now))),
            ]
        )
    return requests


def _otlp_ceiling(demo: Any, batches: int, size: int, seq0: int) -> Callable[[int], float]:
    """Raw binary COPY of the OTLP batches' own rows (richer than the native ones: resource and scope on every
    log and span, eight attributes a span), one transaction per batch: the ceiling of the same rows for OTLP."""
    from observai.db.connection import transaction
    from observai.telemetry.limits import now_ns
    from observai.telemetry.model import Batch, Signal
    from observai.telemetry.otlp import decode_otlp

    signals = {"/v1/metrics": Signal.METRICS, "/v1/logs": Signal.LOGS, "/v1/traces": Signal.TRACES}
    prepared = []
    for requests in _otlp_requests(batches, size, seq0):
        batch = Batch()
        for path, body in requests:
            part = decode_otlp(signals[path], body, encoding="protobuf", now_ns=now_ns())
            batch.metrics += part.metrics
            batch.logs += part.logs
            batch.spans += part.spans
        with transaction() as cur:
            prepared.append(_rows(cur, demo, batch))
    return _copying(prepared, per_signal=False)


def _otlp(demo: Any, batches: int, size: int, seq0: int, *, json: bool = False) -> Callable[[int], float]:
    from observai_local.events import http_event

    call = _handler()
    headers = {"x-api-key": demo.api_key, "content-type": "application/json" if json else "application/x-protobuf"}
    requests = _otlp_requests(batches, size, seq0, json=json)

    def step(round_: int) -> float:
        events = [http_event("POST", path, headers=headers, body=body) for path, body in requests[round_]]
        started = time.perf_counter()
        results = [call(event) for event in events]
        elapsed = time.perf_counter() - started
        for (path, _), result in zip(requests[round_], results, strict=True):
            if result["statusCode"] != 200:
                raise RuntimeError(f"OTLP {path} failed: {result['statusCode']} {str(result.get('body'))[:300]}")
        return elapsed

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local.bench_ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per scenario (default 30)")
    parser.add_argument("--size", type=int, default=1000, help="events per batch (default 1000)")
    args = parser.parse_args(argv)
    print(run(args.batches, args.size), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
