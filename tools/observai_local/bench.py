"""API latency benchmark (the HTTP part of `make bench`), as ratios against a ceiling measured in the same run.

    python -m observai_local.bench [-n 300] [--warmup 30]

Starts the embedded Postgres in a temporary directory (deleted at exit) unless DATABASE_URL is set,
applies the migrations, creates a user (auth.users), a development JWT, and through the API an
organization, a project and an API key; then serves the template's routes with the local runner on
a free port and times N sequential requests over one keep-alive connection for each scenario:

    ceiling   GET /v1/health                 no auth, no database: runner + resolver + envelope
    orgs      GET /v1/orgs                   JWT (user)
    whoami    GET /v1/whoami                 API key
    projects  GET /v1/orgs/{id}/projects     JWT (user)

Each scenario's p50 is also given as a ratio to the ceiling's p50. The handlers are then called
in-process (``lambda_handler(event, context)``, no HTTP) for the ceiling and GET /v1/orgs, to separate
the runner's HTTP cost from the handler's. Rate limits are raised so the benchmark is not throttled.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from observai_local.template import ROOT

BENCH_ENVIRONMENT = {
    "STAGE": "local",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "RATE_LIMIT_BURST": "1000000000",
    "RATE_LIMIT_PER_SECOND": "1000000000",
}


@dataclass
class Stats:
    name: str
    samples_ms: list[float]
    elapsed_s: float

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile."""
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    @property
    def rps(self) -> float:
        return len(self.samples_ms) / self.elapsed_s if self.elapsed_s else float("inf")


class Client:
    """One keep-alive HTTP/1.1 connection to the runner."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body)
        hdrs = dict(headers or {})
        if payload is not None:
            hdrs["content-type"] = "application/json"
        self.conn.request(method, path, body=payload, headers=hdrs)
        response = self.conn.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str, headers: dict[str, str], body: Any = None, expect: int = 200) -> Any:
        status, raw = self.request(method, path, headers, body)
        if status != expect:
            raise RuntimeError(f"{method} {path}: expected {expect}, got {status}: {raw[:500]!r}")
        return json.loads(raw)["data"]

    def close(self) -> None:
        self.conn.close()


def time_calls(name: str, call: Callable[[], None], n: int, warmup: int) -> Stats:
    for _ in range(warmup):
        call()
    samples = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return Stats(name, samples, time.perf_counter() - started)


def http_scenario(client: Client, path: str, headers: dict[str, str]) -> Callable[[], None]:
    def call() -> None:
        status, raw = client.request("GET", path, headers)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {raw[:300]!r}")

    return call


def prepare_database(keep_dir: bool) -> tuple[str, str]:
    """DATABASE_URL, else an embedded Postgres in a temporary directory removed at exit; migrated.

    Returns the URL and a label saying which one it is.
    """
    from observai.db.migrations import apply_migrations

    from observai_local.pg import embedded_database_url

    url = os.environ.get("DATABASE_URL")
    label = "$DATABASE_URL"
    if not url:
        tmp = Path(tempfile.mkdtemp(prefix="observai-bench-"))
        if not keep_dir:
            # Registered before pgserver's own exit handler, so it runs after it (atexit is LIFO).
            atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        url = embedded_database_url(tmp / "pgdata", cleanup_mode="delete")
        label = f"embedded, {tmp}" + ("" if keep_dir else " (deleted at exit)")
    apply_migrations(url, ROOT / "migrations")
    return url, label


@dataclass
class BenchWorkspace:
    """A demo organization and project, an API key reading it, and an invoker of the template's functions."""

    demo: Any  # observai.tenancy.bootstrap.DemoWorkspace
    read_key: str
    invoker: Any  # observai_local.functions.Invoker


def bench_workspace(url: str) -> BenchWorkspace:
    """A fresh workspace in the migrated database at ``url`` (the benchmarks' common first step)."""
    from observai.db.connection import transaction
    from observai.tenancy.api_keys import insert_key
    from observai.tenancy.bootstrap import create_demo_workspace

    from observai_local.functions import Invoker, local_overrides
    from observai_local.template import load_template

    demo = create_demo_workspace(f"Bench {uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}@observai.local")
    with transaction() as cur:
        reader = insert_key(
            cur, org_id=demo.org_id, project_id=demo.project_id, name="bench reader", scopes=["read"],
            expires_at=None, created_by=None,
        )  # fmt: skip
    return BenchWorkspace(demo, reader.key, Invoker(load_template(), local_overrides(stage="local", database_url=url)))


def create_user(url: str) -> tuple[str, str]:
    import psycopg

    email = f"bench-{uuid.uuid4().hex[:8]}@observai.local"
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("insert into auth.users (email) values (%s) returning id", (email,)).fetchone()
    assert row is not None
    return str(row[0]), email


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)


def stats_table(results: list[Stats], ceiling: Stats) -> str:
    rows = [
        [
            s.name,
            str(len(s.samples_ms)),
            f"{s.percentile(50):.2f}",
            f"{s.percentile(95):.2f}",
            f"{s.percentile(99):.2f}",
            f"{statistics.fmean(s.samples_ms):.2f}",
            f"{s.rps:.0f}",
            f"{s.percentile(50) / ceiling.percentile(50):.2f}x",
        ]
        for s in results
    ]
    return _table(rows, ["scenario", "n", "p50 ms", "p95 ms", "p99 ms", "mean ms", "req/s", "p50/ceiling"])


def run(n: int, warmup: int, keep_dir: bool) -> str:
    t_start = time.perf_counter()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - pgserver's runtime directory
    url, database = prepare_database(keep_dir)
    os.environ.update(BENCH_ENVIRONMENT)
    os.environ["DATABASE_URL"] = url
    t_db = time.perf_counter()

    from observai.auth.jwt import issue_dev_token

    from observai_local.events import http_event
    from observai_local.functions import applied_environment, local_overrides
    from observai_local.lambda_context import LambdaContext
    from observai_local.server import start_server
    from observai_local.template import load_template

    overrides = {**local_overrides("local", url), **BENCH_ENVIRONMENT, "DATABASE_URL": url}
    template = load_template()
    server, base_url = start_server("127.0.0.1", 0, template=template, overrides=overrides, quiet=True)
    client = Client(base_url)
    try:
        user_id, email = create_user(url)
        bearer = {"authorization": f"Bearer {issue_dev_token(user_id, email)}"}
        org = client.json("POST", "/v1/orgs", bearer, {"name": "Bench org"}, expect=201)
        project = client.json("POST", f"/v1/orgs/{org['id']}/projects", bearer, {"name": "Bench project"}, expect=201)
        key = client.json(
            "POST",
            f"/v1/projects/{project['id']}/api-keys",
            bearer,
            {"name": "bench", "scopes": ["read"]},
            expect=201,
        )
        api_key = {"x-api-key": key["key"]}
        t_setup = time.perf_counter()

        scenarios = [
            ("ceiling GET /v1/health", "/v1/health", {}),
            ("GET /v1/orgs (JWT)", "/v1/orgs", bearer),
            ("GET /v1/whoami (API key)", "/v1/whoami", api_key),
            ("GET /v1/orgs/{id}/projects (JWT)", f"/v1/orgs/{org['id']}/projects", bearer),
        ]
        over_http = [time_calls(name, http_scenario(client, path, hdrs), n, warmup) for name, path, hdrs in scenarios]

        # The same requests without HTTP: the handler alone, in this process, with its function's environment.
        invoker = server.invoker
        in_process = []
        for name, logical_id, path, hdrs in (
            ("in-process ceiling /v1/health", "HealthFunction", "/v1/health", {}),
            ("in-process GET /v1/orgs (JWT)", "OrgsFunction", "/v1/orgs", bearer),
        ):
            spec = template.function(logical_id)
            handler = invoker.handler(spec)
            with applied_environment(invoker.environment(spec)):

                def call(handler: Any = handler, spec: Any = spec, path: str = path, hdrs: dict = hdrs) -> None:
                    event = http_event("GET", path, headers=hdrs, route_key=f"GET {path}")
                    result = handler(event, LambdaContext(spec.function_name, memory_limit_in_mb=spec.memory_size))
                    if result["statusCode"] != 200:
                        raise RuntimeError(f"in-process GET {path}: {result['statusCode']} {result.get('body')!r}")

                in_process.append(time_calls(name, call, n, warmup))
        t_done = time.perf_counter()
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        from observai.db import close_connection

        close_connection()

    ceiling, orgs_http = over_http[0], over_http[1]
    orgs_inproc = in_process[1]
    http_overhead = orgs_http.percentile(50) - orgs_inproc.percentile(50)
    lines = [
        f"API latency: {n} sequential requests per scenario after {warmup} warm-up, one keep-alive connection,",
        f"local runner at {base_url}, Postgres {database}, Python {sys.version.split()[0]}",
        "",
        stats_table(over_http, ceiling),
        "",
        "Handler alone (lambda_handler called in-process, no HTTP):",
        stats_table(in_process, in_process[0]),
        "",
        f"GET /v1/orgs p50: {orgs_http.percentile(50):.2f} ms over HTTP = {orgs_inproc.percentile(50):.2f} ms in the "
        f"handler + {http_overhead:.2f} ms runner/HTTP ({http_overhead / orgs_http.percentile(50):.0%})",
        f"time: database {t_db - t_start:.1f} s, setup {t_setup - t_db:.1f} s, measuring {t_done - t_setup:.1f} s",
    ]
    if ceiling.percentile(50) > 20 and in_process[0].percentile(50) < 5:
        lines.append(
            f"WARNING: the ceiling costs {ceiling.percentile(50):.0f} ms over HTTP but "
            f"{in_process[0].percentile(50):.2f} ms in-process: ~40 ms per request is Nagle's algorithm meeting "
            "delayed ACKs (headers and body leave in separate small writes). The runner's request handler "
            "needs disable_nagle_algorithm = True (or one write per response)."
        )
    return "\n".join(lines)


# The parts `make bench` runs, in this order, each in a process of its own (``--part all``).
PARTS = (
    "api",
    "ingest",
    "metrics",
    "logs",
    "alerts",
    "alert-latency",
    "webhooks",
    "notifications",
    "anomalies",
    "anomalies-quality",
    "mixed",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=300, help="timed requests per scenario (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests first (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary embedded database directory")
    parser.add_argument("--part", choices=["all", *PARTS], default="all", help="which benchmarks (default all)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0:
        parser.error("--requests must be >= 1 and --warmup >= 0")
    if args.part == "all":
        return _run_all(args)
    try:
        print(_run_part(args.part, args), flush=True)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_all(args: argparse.Namespace) -> int:
    """Each part in a child process: its own embedded Postgres (a part sets DATABASE_URL for its own use, and the
    next part would otherwise inherit that database, its data and its background work), stopped when the part
    ends. A part that fails is reported, and the others still run."""
    import subprocess

    failed = []
    for i, part in enumerate(PARTS):
        if i:
            print(flush=True)
        command = [sys.executable, "-m", "observai_local", "bench", "--part", part]
        command += ["-n", str(args.requests), "--warmup", str(args.warmup)] + (["--keep"] if args.keep else [])
        if subprocess.run(command, check=False).returncode != 0:  # noqa: S603 - our own module, fixed arguments
            failed.append(part)
    if failed:
        print(f"error: {len(failed)} of {len(PARTS)} parts failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run_part(part: str, args: argparse.Namespace) -> str:
    if part == "api":
        return run(args.requests, args.warmup, args.keep)
    if part == "ingest":
        from observai_local import bench_ingest

        return bench_ingest.run(batches=30, size=1000)
    if part == "metrics":
        from observai_local import bench_metrics

        return bench_metrics.run(series=500, days=7, n=30)
    if part == "logs":
        from observai_local import bench_logs

        return bench_logs.run(logs=5_000_000, spans=1_000_000, n=30)
    if part == "alerts":
        from observai_local import bench_alerts

        # BENCH_ALERTS_PROJECTS=5: a quick smoke run (100 rules) instead of 2,000 rules over 100 projects.
        return bench_alerts.run(projects=int(os.environ.get("BENCH_ALERTS_PROJECTS", "100")))
    if part == "alert-latency":
        from observai_local import bench_alert_latency

        # With the runner's real minute schedules: a few minutes of wall time, mostly waiting.
        return bench_alert_latency.run()
    if part == "webhooks":
        from observai_local import bench_webhooks

        return bench_webhooks.run()
    if part == "notifications":
        from observai_local import bench_notifications

        return bench_notifications.run()
    if part == "anomalies":
        from observai_local import bench_anomalies

        # BENCH_ANOMALIES_SERIES=1000: a quick smoke run instead of 10,000 series.
        series = int(os.environ.get("BENCH_ANOMALIES_SERIES", "10000"))
        return bench_anomalies.run(series=series, projects=max(1, min(10, series // 100)))
    if part == "anomalies-quality":
        from observai_local import bench_anomaly_quality

        return bench_anomaly_quality.run()
    from observai_local import bench_mixed

    return bench_mixed.run(logs=2_000_000, spans=200_000, series=200, n=30)


if __name__ == "__main__":
    sys.exit(main())
