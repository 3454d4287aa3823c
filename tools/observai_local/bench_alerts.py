"""Alert evaluation benchmark (the ``alerts`` part of `make bench`): many rules, one evaluation run.

    python -m observai_local.bench_alerts [--projects 100] [--minutes 12]
    BENCH_ALERTS_PROJECTS=5 make bench   (a quick smoke run; --part alerts of observai_local.bench)

Builds PROJECTS projects (one organization each), each with 500 gauge series (5 metrics × 20 hosts × 5 regions) and
a point a minute for the last MINUTES minutes, rolled up by the aggregation job and vacuumed; then 20 metric rules
per project, four on each metric sharing its query (same filters, aggregation, group_by and window; thresholds and
comparisons differ), every rule due:

    http.latency  p95 by region, 5m       cpu     avg by host, 5m         mem  max, 10m
    queue.depth   last by region, 5m      errors  sum of region r0 by host, 5m

and times, in this process against the same database:

    ceiling   the 5 × PROJECTS shared queries alone (each kind's read under the project's tenancy, nothing
              claimed nor written): what an evaluation must at least cost
    run 1     one evaluation run of every rule (claims, queries, instances created, transitions, outbox events)
    run 2     the next minute's run (the same rules again: instances updated, few transitions)

For each run: total seconds (target ≤ 20 s at 2,000 rules), p50/p95 per rule (the time of the rule's batch: its
shared query and its transaction), queries issued against rules, and the ratio to the ceiling.
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

TARGET_S = 20.0
RULES_PER_PROJECT = 20
HOSTS = 20
REGIONS = 5
METRICS = ("http.latency", "cpu", "mem", "queue.depth", "errors")
# Four rules per metric, sharing its query: (condition without op/threshold, [(op, threshold)...]).
RULES: list[tuple[dict[str, Any], list[tuple[str, float]]]] = [
    ({"metric": "http.latency", "aggregation": "p95", "group_by": ["region"], "window": 300},
     [(">", 80), (">", 90), (">", 95), ("<", 5)]),
    ({"metric": "cpu", "aggregation": "avg", "group_by": ["host"], "window": 300},
     [(">", 50), (">", 70), (">", 90), ("<", 10)]),
    ({"metric": "mem", "aggregation": "max", "group_by": [], "window": 600},
     [(">", 50), (">", 90), (">", 99), ("<", 1)]),
    ({"metric": "queue.depth", "aggregation": "last", "group_by": ["region"], "window": 300},
     [(">", 50), (">", 80), ("<", 20), (">=", 0)]),
    ({"metric": "errors", "aggregation": "sum", "group_by": ["host"], "window": 300,
      "filters": [{"attribute": "region", "op": "=", "value": "r0"}]},
     [(">", 100), (">", 250), (">", 400), ("<", 50)]),
]  # fmt: skip


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def make_projects(count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    from observai.db.connection import transaction
    from observai.tenancy.orgs import insert_org_with_unique_slug
    from observai.tenancy.projects import insert_project_with_unique_slug

    made = []
    tag = uuid.uuid4().hex[:6]
    with transaction() as cur:
        for i in range(count):
            org = insert_org_with_unique_slug(cur, f"Alerts bench {tag} {i}", None)
            project = insert_project_with_unique_slug(cur, org["id"], f"Alerts bench {tag} {i}", None)
            made.append((org["id"], project["id"]))
    return made


def load_dataset(projects: list[tuple[uuid.UUID, uuid.UUID]], minutes: int, end: datetime) -> int:
    """500 series per project and a point a minute for the ``minutes`` minutes before ``end`` (server-side);
    returns the points written."""
    from observai.db.connection import transaction
    from observai.telemetry.series import series_id

    series = []
    for n, (name, host, region) in enumerate(
        (name, host, region) for name in METRICS for host in range(HOSTS) for region in range(REGIONS)
    ):
        attributes = {"service.name": "bench", "host": f"h{host:02d}", "region": f"r{region}"}
        series.append((series_id(name, attributes), name, json.dumps(attributes), n))
    points = 0
    for org_id, project_id in projects:
        with transaction() as cur:
            cur.execute("select set_config('statement_timeout', '600000', true)")
            cur.execute(
                "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
                " select %s, %s, s.id, s.name, 'gauge', s.attrs::jsonb"
                " from unnest(%s::bigint[], %s::text[], %s::text[]) as s(id, name, attrs)",
                (org_id, project_id, [s[0] for s in series], [s[1] for s in series], [s[2] for s in series]),
            )
            # Values spread over 0..100 by series and minute (some rules fire, some not).
            cur.execute(
                "insert into public.metric_points (org_id, project_id, series_id, time, value)"
                " select %(org)s, %(project)s, s.id, t,"
                "   50 + 45 * sin(s.n * 0.7 + extract(epoch from t) / 600.0) + random() * 5"
                " from unnest(%(ids)s::bigint[], %(ns)s::int[]) as s(id, n),"
                "   generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') as t",
                {"org": org_id, "project": project_id, "ids": [s[0] for s in series], "ns": [s[3] for s in series],
                 "start": end - timedelta(minutes=minutes), "end": end - timedelta(seconds=30)},
            )  # fmt: skip
            points += cur.rowcount
    return points


def add_rules(projects: list[tuple[uuid.UUID, uuid.UUID]], due: datetime) -> int:
    from observai.alerts.rule_models import RuleIn
    from observai.db.connection import transaction

    rows = []
    for org_id, project_id in projects:
        for base, comparisons in RULES:
            for op, threshold in comparisons:
                rule = RuleIn.model_validate(
                    {"name": f"{base['metric']} {base['aggregation']} {op} {threshold}",
                     "condition": {"kind": "metric", **base, "op": op, "threshold": threshold},
                     "annotations": {"summary": "{{ labels.get('host', labels.get('region', 'all')) }}: {{ value }}"}}
                )  # fmt: skip
                spec = rule.condition.model_dump(mode="json")
                rows.append((org_id, project_id, rule.name, json.dumps(spec), json.dumps(rule.annotations)))
    with transaction() as cur:
        cur.execute(
            "insert into public.alert_rules (org_id, project_id, name, kind, spec, annotations, next_eval_at)"
            " select o, p, n, 'metric', s::jsonb, a::jsonb, %s"
            " from unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::text[]) as r(o, p, n, s, a)",
            (due, *([r[i] for r in rows] for i in range(5))),
        )
    return len(rows)


def ceiling(projects: list[tuple[uuid.UUID, uuid.UUID]], eval_at: datetime) -> tuple[float, list[float]]:
    """The shared queries alone, as the evaluator runs them (one tenant transaction each): seconds, per-query ms."""
    from observai.alerts.evaluation import rls_claims
    from observai.alerts.kinds import get_kind
    from observai.alerts.rule_models import RuleIn
    from observai.db.connection import tenant_transaction

    kind = get_kind("metric")
    conditions = [
        RuleIn.model_validate({"name": "c", "condition": {"kind": "metric", **base, "op": ">", "threshold": 0}})
        for base, _ in RULES
    ]
    samples = []
    started = time.perf_counter()
    for org_id, project_id in projects:
        for rule in conditions:
            at = time.perf_counter()
            with tenant_transaction(rls_claims(org_id, project_id, uuid.uuid4())) as cur:
                kind.observe(cur, project_id, rule.condition, eval_at)
            samples.append((time.perf_counter() - at) * 1000)
    return time.perf_counter() - started, samples


class StatementCount:
    """Counts the SQL statements this process sends while active (the bench's instrument: psycopg's
    Cursor.execute wrapped, the call passed on unchanged)."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> StatementCount:
        import psycopg

        self._original = psycopg.Cursor.execute
        original = self._original

        def counted(cur: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(cur, *args, **kwargs)

        psycopg.Cursor.execute = counted  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        psycopg.Cursor.execute = self._original  # type: ignore[method-assign]


def roll_up() -> float:
    """The aggregation job until nothing is pending. Setup, not measured: with nested loops allowed, the job's coarse
    step (5m/1h/1d from fresh 1m rows) plans a nested loop that costs it seconds per few thousand series here, so
    they are turned off for this session while it runs (the evaluation runs with the defaults)."""
    from observai.db.connection import get_connection
    from observai.metrics.rollup import run_aggregation

    started = time.perf_counter()
    get_connection().execute("set enable_nestloop = off")
    try:
        while run_aggregation(lag_s=0).more_pending:
            pass
    finally:
        get_connection().execute("reset enable_nestloop")
    return time.perf_counter() - started


def run(projects: int = 100, minutes: int = 12) -> str:
    os.environ.update(BENCH_ENVIRONMENT)
    url, label = prepare_database(keep_dir=False)
    os.environ["DATABASE_URL"] = url
    import psycopg
    from observai.alerts.evaluation import run_evaluation

    # The evaluation's clock is injected: the rules fall due at T, when the data ends, however long the setup takes.
    due = datetime.now(UTC).replace(second=0, microsecond=0)
    made = make_projects(projects)
    started = time.perf_counter()
    points = load_dataset(made, minutes, due)
    load_s = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("analyze public.metric_series, public.metric_points")
    roll_s = roll_up()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum (analyze) public.metric_series, public.metric_points, public.metric_rollups,"
                     " public.metric_group_rollups")  # fmt: skip
    rules = add_rules(made, due)
    with StatementCount() as ceiling_statements:
        ceiling_s, ceiling_ms = ceiling(made, due)

    lines = [
        f"Alert evaluation: {projects} projects × 500 series ({points:,} points over {minutes} min), {rules:,} metric"
        f" rules ({RULES_PER_PROJECT} per project, 4 per shared query); Postgres {label}",
        f"setup: load {load_s:.1f} s, roll-up {roll_s:.1f} s (the aggregation job, nested loops off: see roll_up)",
        "",
        f"{'run':<8} {'rules':>6} {'queries':>7} {'SQL':>6} {'trans.':>6} {'errors':>6} {'total s':>7} {'p50 ms':>7}"
        f" {'p95 ms':>7} {'/ceiling':>8}  total ≤ {TARGET_S:.0f} s",
        f"{'ceiling':<8} {'-':>6} {len(ceiling_ms):>7} {ceiling_statements.count:>6} {'-':>6} {'-':>6}"
        f" {ceiling_s:>7.2f}"
        f" {statistics.median(ceiling_ms):>7.1f} {_percentile(ceiling_ms, 95):>7.1f} {'1.00x':>8}",
    ]
    # Run 1 at T + 5 s; run 2 a minute later (every rule due again, its instances there).
    for name, at in (("run 1", due + timedelta(seconds=5)), ("run 2", due + timedelta(seconds=65))):
        with StatementCount() as statements:
            report = run_evaluation(now=at, budget_s=600, max_rules=100_000)
        lines.append(
            f"{name:<8} {report.rules_evaluated:>6} {report.queries:>7} {statements.count:>6} {report.transitions:>6}"
            f" {report.errors:>6}"
            f" {report.seconds:>7.2f} {statistics.median(report.rule_ms):>7.1f}"
            f" {_percentile(report.rule_ms, 95):>7.1f} {report.seconds / ceiling_s:>7.2f}x"
            f"  {'ok' if report.seconds <= TARGET_S else 'MISSED'}"
        )
    lines += [
        "",
        "queries: shared queries (one per rules sharing metric, filters, aggregation, group_by and window); SQL: the"
        " statements sent (BEGIN and COMMIT included).",
        "p50/p95 per rule: the time of its batch (its shared query, then one transaction for the batch's rules);"
        " the ceiling's: per query.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local.bench_alerts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=int(os.environ.get("BENCH_ALERTS_PROJECTS", "100")))
    parser.add_argument("--minutes", type=int, default=12, help="minutes of points per series (default 12)")
    args = parser.parse_args(argv)
    if args.projects < 1 or args.minutes < 11:
        parser.error("--projects must be >= 1 and --minutes >= 11 (the longest window is 10 minutes)")
    print(run(args.projects, args.minutes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
