"""Retention (issue 5, section 3): rows carry their plan's retention per signal and log level and land in
the matching sub-partition; the cleanup drops exactly the expired sub-partitions and days (never today's),
audits every drop, lists without dropping in a dry run, purges expired idempotency keys and old usage,
is bounded and resumes, and two overlapping runs never do anything twice.

Cleanup tests work on a "today" years ahead (2090s, a different one per test, other partition tests use
2060-2080) and limit the run to their own days (``since``), so tests never touch each other's partitions.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from observai.retention import cleanup
from observai.retention.cleanup import run_cleanup
from observai.retention.policy import SeverityClass, severity_class
from observai.telemetry import usage

from tests.helpers.ingest import ago, log, make_project, metric, post_native, span
from tests.helpers.inprocess import load_function

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Plan → (warn+/spans/metrics, info, debug) retention days, as migration 0010 seeds them.
PLANS = {"free": (7, 3, 1), "pro": (30, 14, 7), "enterprise": (90, 30, 14)}
LOG_VALUES = sorted({v for values in PLANS.values() for v in values})  # 1, 3, 7, 14, 30, 90
SIGNAL_VALUES = sorted({values[0] for values in PLANS.values()})  # 7, 30, 90
TWO_LEVEL = {"logs": "time", "spans": "start_time", "metric_points": "time"}


@pytest.fixture(autouse=True)
def _fresh_plan_cache() -> None:
    usage.reset_caches()


# Each test's "today" starts its own 200-day window (a test reaches 101 days back): a partition another test left
# behind never falls in this test's range. A random first window keeps reruns on a reused DATABASE_URL apart too.
_WINDOWS = itertools.count(random.randrange(0, 20))


@pytest.fixture
def far_today() -> date:
    return date(2090, 6, 1) + timedelta(days=200 * next(_WINDOWS))


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def set_plan(db: psycopg.Connection, org_id: uuid.UUID, plan: str) -> None:
    db.execute("update public.organizations set plan = %s where id = %s", (plan, org_id))
    usage.reset_caches()


def leaf_counts(db: psycopg.Connection, table: str, project_id: uuid.UUID) -> dict[str, int]:
    rows = db.execute(
        f"select tableoid::regclass::text as part, count(*) as n from public.{table} where project_id = %s group by 1",
        (project_id,),
    ).fetchall()
    return {r["part"]: r["n"] for r in rows}


def relations(db: psycopg.Connection, pattern: str) -> set[str]:
    rows = db.execute(
        "select relname from pg_class"
        " where relnamespace = 'public'::regnamespace and relkind in ('r', 'p') and relname like %s",
        (pattern,),
    )
    return {r["relname"] for r in rows}


# ---------------------------------------------------------------------------------------------
# Where rows land


def test_severity_classes_follow_otlp_severity_numbers() -> None:
    assert [severity_class(n) for n in (0, 1, 8, 9, 12, 13, 16, 17, 24, 25, -1)] == [
        SeverityClass.INFO, SeverityClass.DEBUG, SeverityClass.DEBUG, SeverityClass.INFO, SeverityClass.INFO,
        SeverityClass.WARN, SeverityClass.WARN, SeverityClass.WARN, SeverityClass.WARN, SeverityClass.INFO,
        SeverityClass.INFO,
    ]  # fmt: skip


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_rows_of_each_plan_and_level_land_in_their_subpartition(db: psycopg.Connection, plan: str) -> None:
    # Given an organization on `plan`
    project = make_project()
    set_plan(db, project.org_id, plan)
    keep, info, debug = PLANS[plan]
    when = ago(120)
    day = f"p{when:%Y%m%d}"

    # When it sends logs of every level, a span and a metric point
    events = [
        log("trace line", at=when, severity="trace"),
        log("debug line", at=when, severity="debug"),
        log("info line", at=when, severity="info"),
        log("no level", at=when),
        log("warning", at=when, severity="warn"),
        log("error", at=when, severity="error"),
        log("fatal", at=when, severity=24),
        span("GET /", start=when),
        metric("requests", 1.0, at=when),
    ]
    result = post_native(project.headers, events)
    assert result.status == 202, result.text

    # Then each row carries the plan's retention for its level and sits in that sub-partition of its day
    by_body = {
        r["body"]: (r["retention_days"], r["part"])
        for r in db.execute(
            "select body, retention_days, tableoid::regclass::text as part from public.logs where project_id = %s",
            (project.project_id,),
        ).fetchall()
    }
    expected = {
        "trace line": debug, "debug line": debug, "info line": info, "no level": info,
        "warning": keep, "error": keep, "fatal": keep,
    }  # fmt: skip
    assert by_body == {body: (days, f"logs_{day}_r{days}") for body, days in expected.items()}
    assert leaf_counts(db, "spans", project.project_id) == {f"spans_{day}_r{keep}": 1}
    assert leaf_counts(db, "metric_points", project.project_id) == {f"metric_points_{day}_r{keep}": 1}


def test_a_plan_change_applies_to_new_rows_only(db: psycopg.Connection) -> None:
    # Given a free organization that stored an info log (3 days)
    project = make_project()
    assert post_native(project.headers, [log("before", severity="info")]).status == 202
    # When it moves to pro and sends another
    set_plan(db, project.org_id, "pro")
    assert post_native(project.headers, [log("after", severity="info")]).status == 202
    # Then the new row gets pro's 14 days and the stored one keeps its 3
    rows = db.execute(
        "select body, retention_days from public.logs where project_id = %s", (project.project_id,)
    ).fetchall()
    assert {r["body"]: r["retention_days"] for r in rows} == {"before": 3, "after": 14}


def test_ingest_still_deduplicates_retried_events(db: psycopg.Connection) -> None:
    # Given a pro organization that sent a log with an event id, a span and a point
    project = make_project()
    set_plan(db, project.org_id, "pro")
    when = ago(30)
    events = [
        log("once", at=when, severity="debug", event_id="evt-1"),
        span("op", trace_id="ab" * 16, span_id="cd" * 8, start=when),
        metric("m", 1.0, at=when),
    ]
    assert post_native(project.headers, events).status == 202
    # When the same events are sent again (a retry without Idempotency-Key)
    again = post_native(project.headers, events)
    # Then nothing is stored twice: the dedup keys (which hold retention_days) still catch the retry
    assert again.status == 202, again.text
    assert again.data["duplicates"] == 3
    for table in TWO_LEVEL:
        n = db.execute(f"select count(*) as n from public.{table} where project_id = %s", (project.project_id,))
        assert n.fetchone()["n"] == 1


def test_upkeep_adds_the_subpartition_of_a_new_plan_value_and_moves_waiting_rows(
    db: psycopg.Connection, far_today: date
) -> None:
    # Given a day partition, and rows with a retention no plan uses yet (they wait in the day's default)
    db.execute("select private.ensure_daily_partitions('public.logs', %s, %s)", (far_today, far_today))
    project = uuid.uuid4()
    for i in range(3):
        db.execute(
            "insert into public.logs (org_id, project_id, time, body, retention_days) values (%s, %s, %s, 'x', 45)",
            (uuid.uuid4(), project, at(far_today, i)),
        )
    assert leaf_counts(db, "logs", project) == {f"logs_p{far_today:%Y%m%d}_default": 3}
    try:
        # When a plan starts using that value and upkeep runs again
        db.execute("update public.plans set logs_info_retention_days = 45 where plan = 'enterprise'")
        created = db.execute(
            "select private.ensure_daily_partitions('public.logs', %s, %s) as n", (far_today, far_today)
        ).fetchone()["n"]
        # Then the day gains that sub-partition (closed to the API roles) and the waiting rows moved into it
        assert created == 1
        leaf = f"logs_p{far_today:%Y%m%d}_r45"
        assert leaf_counts(db, "logs", project) == {leaf: 3}
        row = db.execute(
            "select relrowsecurity, has_table_privilege('authenticated', oid, 'select') as auth_select"
            " from pg_class where relname = %s",
            (leaf,),
        ).fetchone()
        assert row == {"relrowsecurity": True, "auth_select": False}
    finally:
        db.execute("update public.plans set logs_info_retention_days = 30 where plan = 'enterprise'")


def test_every_new_table_is_closed_to_the_api_roles(db: psycopg.Connection, far_today: date) -> None:
    db.execute("select private.ensure_daily_partitions('public.spans', %s, %s)", (far_today, far_today))
    names = relations(db, f"spans_p{far_today:%Y%m%d}%")
    assert names == {f"spans_p{far_today:%Y%m%d}"} | {f"spans_p{far_today:%Y%m%d}_r{v}" for v in SIGNAL_VALUES} | {
        f"spans_p{far_today:%Y%m%d}_default"
    }
    rows = db.execute(
        "select relname, relrowsecurity, has_table_privilege('authenticated', oid, 'select') as a,"
        " has_table_privilege('anon', oid, 'select') as b from pg_class where relname = any(%s)",
        (list(names),),
    ).fetchall()
    assert all(r["relrowsecurity"] and not r["a"] and not r["b"] for r in rows) and len(rows) == len(names)


def test_plans_refuse_a_level_kept_longer_than_the_plan(db: psycopg.Connection) -> None:
    with db.transaction(force_rollback=True), pytest.raises(psycopg.errors.CheckViolation):
        db.execute("update public.plans set logs_info_retention_days = 8 where plan = 'free'")
    with db.transaction(force_rollback=True), pytest.raises(psycopg.errors.CheckViolation):
        db.execute("update public.plans set logs_debug_retention_days = 4 where plan = 'free'")


# ---------------------------------------------------------------------------------------------
# The cleanup

# Days (as "today - k") the cleanup tests give partitions and rows.
AGES = (0, 1, 2, 3, 4, 8, 15, 30, 31, 90, 91)


def arrange(db: psycopg.Connection, today: date, ages: tuple[int, ...] = AGES) -> uuid.UUID:
    """Partitions for today-k (k in ages), and in each one row per table and retention value; a rollup per day."""
    project = uuid.uuid4()
    for k in ages:
        day = today - timedelta(days=k)
        for table in (*TWO_LEVEL, "metric_rollups"):
            db.execute(f"select private.ensure_daily_partitions('public.{table}', %s, %s)", (day, day))
        t = at(day)
        for r in LOG_VALUES:
            db.execute(
                "insert into public.logs (org_id, project_id, time, body, retention_days) values (%s, %s, %s, %s, %s)",
                (uuid.uuid4(), project, t, f"k{k} r{r}", r),
            )
        for r in SIGNAL_VALUES:
            db.execute(
                "insert into public.spans (org_id, project_id, trace_id, span_id, name, kind, start_time, end_time,"
                " duration_ns, status_code, retention_days)"
                " values (%s, %s, %s, %s, 'op', 'server', %s, %s, 1, 'ok', %s)",
                (uuid.uuid4(), project, uuid.uuid4().hex, uuid.uuid4().hex[:16], t, t, r),
            )
            db.execute(
                "insert into public.metric_points (org_id, project_id, series_id, time, value, retention_days)"
                " values (%s, %s, %s, %s, 1, %s)",
                (uuid.uuid4(), project, r, t, r),
            )
        db.execute(
            "insert into public.metric_rollups (org_id, project_id, series_id, resolution, bucket_start, count)"
            " values (%s, %s, 1, 86400, %s, 1)",
            (uuid.uuid4(), project, at(day, 0)),
        )
    return project


def kept(db: psycopg.Connection, table: str, project: uuid.UUID, today: date) -> set[tuple[int, int]]:
    """(age in days, retention_days) of the project's rows still stored."""
    column = TWO_LEVEL[table]
    rows = db.execute(
        f"select {column} as t, retention_days as r from public.{table} where project_id = %s", (project,)
    ).fetchall()
    return {((today - r["t"].astimezone(UTC).date()).days, r["r"]) for r in rows}


def expected_kept(values: list[int], ages: tuple[int, ...] = AGES) -> set[tuple[int, int]]:
    # A row of day today-k kept R days is gone once today-k < today-R, i.e. k > R.
    return {(k, r) for k in ages for r in values if k <= r}


def audited_drops(db: psycopg.Connection, today: date) -> list[dict[str, Any]]:
    return db.execute(
        "select actor_type, actor_id, org_id, target_type, target_id, details from public.audit_log"
        " where action = 'retention.partition_dropped' and details ->> 'today' = %s order by id",
        (today.isoformat(),),
    ).fetchall()


def test_cleanup_drops_exactly_the_expired_partitions_and_nothing_of_today(
    db: psycopg.Connection, far_today: date
) -> None:
    # Given rows of every retention value on days today-0 .. today-91
    project = arrange(db, far_today)
    since = far_today - timedelta(days=max(AGES))

    # When the cleanup runs
    report = run_cleanup(today=far_today, since=since, max_drops=1000)

    # Then exactly the rows past their retention are gone, per table and value; today's are all there
    assert report.ran and not report.dry_run and not report.failed and not report.more_pending
    assert kept(db, "logs", project, far_today) == expected_kept(LOG_VALUES)
    assert kept(db, "spans", project, far_today) == expected_kept(SIGNAL_VALUES)
    assert kept(db, "metric_points", project, far_today) == expected_kept(SIGNAL_VALUES)
    rollup_days = db.execute(
        "select bucket_start from public.metric_rollups where project_id = %s", (project,)
    ).fetchall()
    assert {(far_today - r["bucket_start"].astimezone(UTC).date()).days for r in rollup_days} == {
        k for k in AGES if k <= 90
    }
    # And whole sub-partitions went, not rows: the expired leaves are gone, the others are there
    for k in AGES:
        day = far_today - timedelta(days=k)
        leaves = relations(db, f"logs_p{day:%Y%m%d}%")
        if k > max(LOG_VALUES):
            assert leaves == set(), k  # the whole day
        else:
            assert leaves == {f"logs_p{day:%Y%m%d}", f"logs_p{day:%Y%m%d}_default"} | {
                f"logs_p{day:%Y%m%d}_r{r}" for r in LOG_VALUES if k <= r
            }, k
    # And today's partitions are all there, with every sub-partition
    assert relations(db, f"logs_p{far_today:%Y%m%d}_r%") == {f"logs_p{far_today:%Y%m%d}_r{r}" for r in LOG_VALUES}
    assert not any(d.day >= far_today for d in report.drops)

    # And every drop is in the audit log, by the system, with what was dropped
    audits = audited_drops(db, far_today)
    assert sorted(a["target_id"] for a in audits) == sorted(d.partition for d in report.drops)
    assert all(d.dropped for d in report.drops)
    assert {(a["actor_type"], a["actor_id"], a["org_id"], a["target_type"]) for a in audits} == {
        ("system", None, None, "partition")
    }
    one = next(a for a in audits if a["target_id"] == f"public.logs_p{far_today - timedelta(days=4):%Y%m%d}_r3")
    assert one["details"]["retention_days"] == 3 and one["details"]["kind"] == "subpartition"
    assert one["details"]["day"] == (far_today - timedelta(days=4)).isoformat()

    # And a second run finds nothing left to drop (idempotent)
    again = run_cleanup(today=far_today, since=since)
    assert again.ran and again.drops == []


def test_dry_run_lists_the_same_drops_and_changes_nothing(db: psycopg.Connection, far_today: date) -> None:
    # Given expired partitions
    project = arrange(db, far_today, ages=(0, 2, 8, 91))
    since = far_today - timedelta(days=91)
    before = relations(db, "%_p%")

    # When a dry run runs
    dry = run_cleanup(dry_run=True, today=far_today, since=since)

    # Then it lists what it would drop, and nothing changed: tables, rows, audit log
    assert dry.dry_run and dry.ran and dry.drops and not any(d.dropped for d in dry.drops)
    assert relations(db, "%_p%") == before
    assert kept(db, "logs", project, far_today) == {(k, r) for k in (0, 2, 8, 91) for r in LOG_VALUES}
    assert audited_drops(db, far_today) == []
    # And a real run drops exactly the listed partitions
    real = run_cleanup(today=far_today, since=since)
    assert [(d.kind, d.partition) for d in real.drops] == [(d.kind, d.partition) for d in dry.drops]
    assert all(d.dropped for d in real.drops)
    # (a dropped day's sub-partitions go with it: the list names the day)
    gone = {f"public.{n}" for n in before - relations(db, "%_p%")}
    listed_days = {d.partition for d in dry.drops if d.kind == "day"}
    assert {d.partition for d in dry.drops} <= gone
    assert all(n in {d.partition for d in dry.drops} or n.rsplit("_", 1)[0] in listed_days for n in gone)


def test_the_handler_takes_dry_run_from_the_event(db: psycopg.Connection) -> None:
    # Given the function and a manual invocation asking for a dry run
    from observai_local.lambda_context import LambdaContext

    app = load_function("cleanup_retention")
    context = LambdaContext("observai-test-cleanup-retention", memory_limit_in_mb=512, timeout_s=300)
    before = db.execute("select count(*) as n from public.audit_log").fetchone()["n"]
    # When it is invoked with {"dry_run": true}, or a schedule's detail says so
    # Then it reports a dry run and writes nothing
    for event in ({"dry_run": True}, json.loads((ROOT / "events" / "cleanup_retention_dry_run.json").read_text())):
        result = app.lambda_handler(event, context)
        assert result["dry_run"] is True and result["ran"] is True
    assert db.execute("select count(*) as n from public.audit_log").fetchone()["n"] == before
    # And the scheduled event runs for real (today's UTC date)
    scheduled = app.lambda_handler(
        json.loads((ROOT / "events" / "cleanup_retention_schedule.json").read_text()), context
    )
    assert scheduled["dry_run"] is False and scheduled["today"] == str(datetime.now(UTC).date())


def test_a_day_whose_default_subpartition_still_keeps_rows_is_not_dropped(
    db: psycopg.Connection, far_today: date
) -> None:
    # Given two days past every plan's retention: one with a default-sub-partition row kept 120 days, one with 95
    old, older = far_today - timedelta(days=100), far_today - timedelta(days=101)
    project = uuid.uuid4()
    for day, days_kept in ((old, 120), (older, 95)):
        db.execute("select private.ensure_daily_partitions('public.logs', %s, %s)", (day, day))
        db.execute(
            "insert into public.logs (org_id, project_id, time, body, retention_days) values (%s, %s, %s, 'x', %s)",
            (uuid.uuid4(), project, at(day), days_kept),
        )

    # When the cleanup runs
    report = run_cleanup(today=far_today, since=older)

    # Then the day still keeping a row loses only its value sub-partitions; the other goes whole
    assert {(d.kind, d.partition) for d in report.drops} == {("day", f"public.logs_p{older:%Y%m%d}")} | {
        ("subpartition", f"public.logs_p{old:%Y%m%d}_r{r}") for r in LOG_VALUES
    }
    assert relations(db, f"logs_p{old:%Y%m%d}%") == {f"logs_p{old:%Y%m%d}", f"logs_p{old:%Y%m%d}_default"}
    assert relations(db, f"logs_p{older:%Y%m%d}%") == set()
    assert kept(db, "logs", project, far_today) == {(100, 120)}


def test_bounded_per_run_and_the_next_run_resumes(db: psycopg.Connection, far_today: date) -> None:
    # Given more expired partitions than one run may drop
    arrange(db, far_today, ages=(8, 15))
    since = far_today - timedelta(days=15)
    planned = run_cleanup(dry_run=True, today=far_today, since=since).drops
    assert len(planned) > 3

    # When a run may drop 3
    first = run_cleanup(today=far_today, since=since, max_drops=3)
    # Then it drops the 3 oldest and says more is pending; the next run continues where it stopped
    assert [d.partition for d in first.drops] == [d.partition for d in planned[:3]] and first.more_pending
    second = run_cleanup(today=far_today, since=since)
    assert [d.partition for d in second.drops] == [d.partition for d in planned[3:]] and not second.more_pending
    assert run_cleanup(dry_run=True, today=far_today, since=since).drops == []


def test_a_run_stops_while_another_holds_the_lock(database_url: str, db: psycopg.Connection, far_today: date) -> None:
    # Given expired partitions and another run holding the cleanup lock
    arrange(db, far_today, ages=(0, 8))
    since = far_today - timedelta(days=8)
    before = relations(db, "%_p%")
    with psycopg.connect(database_url) as other:
        other.execute("select pg_advisory_xact_lock(%s)", (cleanup.LOCK_KEY,))
        # When a run starts / Then it stops rather than racing, and drops nothing
        report = run_cleanup(today=far_today, since=since)
        assert report.ran is False and not any(d.dropped for d in report.drops)
        assert relations(db, "%_p%") == before
    # And once the other run is gone, the next run does the work
    assert all(d.dropped for d in run_cleanup(today=far_today, since=since).drops)


def test_a_drop_blocked_by_a_long_query_gives_up_quickly_and_the_next_run_does_it(
    database_url: str, db: psycopg.Connection, far_today: date
) -> None:
    # Given expired sub-partitions on two days, and a long query reading one of those days
    arrange(db, far_today, ages=(4, 5))
    since = far_today - timedelta(days=5)
    busy = f"public.logs_p{far_today - timedelta(days=4):%Y%m%d}"
    with psycopg.connect(database_url) as reader:
        reader.execute(f"select count(*) from {busy}")  # holds its lock until the transaction ends
        # When the cleanup runs
        started = datetime.now(UTC)
        report = run_cleanup(today=far_today, since=since)
        waited = (datetime.now(UTC) - started).total_seconds()
        # Then the blocked drops fail after the lock timeout instead of queueing ingestion behind them,
        # and the other day's drops go through
        failed = {d.partition for d in report.drops if d.error}
        assert failed and all(p.startswith(busy + "_r") for p in failed)
        assert all(d.dropped for d in report.drops if not d.partition.startswith(busy))
        assert waited < 5 * len(failed) + 10
    # And once the query is over, the next run drops what was left
    retry = run_cleanup(today=far_today, since=since)
    assert {d.partition for d in retry.drops} == failed and all(d.dropped for d in retry.drops)


def test_two_overlapping_runs_drop_each_partition_once(
    database_url: str, db: psycopg.Connection, far_today: date
) -> None:
    # Given many expired partitions
    project = arrange(db, far_today, ages=(0, 4, 8, 15, 31, 91))
    since = far_today - timedelta(days=91)
    expected = {d.partition for d in run_cleanup(dry_run=True, today=far_today, since=since).drops}

    # When two runs start at the same time (two processes, as two Lambda invocations would)
    script = (
        "import json, sys; from datetime import date; from observai.retention.cleanup import run_cleanup;"
        "r = run_cleanup(today=date.fromisoformat(sys.argv[1]), since=date.fromisoformat(sys.argv[2]));"
        "print(json.dumps(r.model_dump(mode='json')))"
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, far_today.isoformat(), since.isoformat()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    reports = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:  # never leave a run behind to disturb the next tests
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # Then no run failed, every expired partition was dropped exactly once (one audit row each), and the
    # rows left are exactly the unexpired ones
    assert all(not any(d["error"] for d in r["drops"]) for r in reports)
    dropped = [d["partition"] for r in reports for d in r["drops"] if d["dropped"]]
    assert sorted(dropped) == sorted(expected)
    assert sorted(a["target_id"] for a in audited_drops(db, far_today)) == sorted(expected)
    assert kept(db, "logs", project, far_today) == expected_kept(LOG_VALUES, (0, 4, 8, 15, 31, 91))


# ---------------------------------------------------------------------------------------------
# Purges


def test_expired_rows_in_the_default_partitions_are_deleted(db: psycopg.Connection, far_today: date) -> None:
    # Given rows in logs' DEFAULT partition (days without a partition): expired, still kept, today's
    project = uuid.uuid4()
    rows = [(50, 7, "expired"), (50, 90, "kept"), (0, 1, "today"), (5, 7, "recent")]
    for k, r, body in rows:
        db.execute(
            "insert into public.logs (org_id, project_id, time, body, retention_days) values (%s, %s, %s, %s, %s)",
            (uuid.uuid4(), project, at(far_today - timedelta(days=k)), body, r),
        )
    assert leaf_counts(db, "logs", project) == {"logs_default": 4}

    # When a dry run, then a real run, clean up
    dry = run_cleanup(dry_run=True, today=far_today, since=far_today - timedelta(days=60))
    report = run_cleanup(today=far_today, since=far_today - timedelta(days=60))

    # Then only the expired row is gone (the dry run only counted it), and the purge is audited
    assert dry.default_rows_deleted["public.logs"] == 1
    assert report.default_rows_deleted["public.logs"] == 1
    left = db.execute("select body from public.logs where project_id = %s", (project,)).fetchall()
    assert {r["body"] for r in left} == {"kept", "today", "recent"}
    audit = db.execute(
        "select details from public.audit_log where action = 'retention.rows_purged'"
        " and target_id = 'public.logs_default' and details ->> 'today' = %s",
        (far_today.isoformat(),),
    ).fetchall()
    assert [a["details"]["rows"] for a in audit] == [1]


def test_a_late_row_of_a_dropped_subpartition_waits_in_the_day_default_and_goes_next_run(
    db: psycopg.Connection, far_today: date
) -> None:
    # Given a day 5 days back whose 1- and 3-day sub-partitions the cleanup already dropped
    day = far_today - timedelta(days=5)
    db.execute("select private.ensure_daily_partitions('public.logs', %s, %s)", (day, day))
    first = run_cleanup(today=far_today, since=day)
    assert {d.retention_days for d in first.drops} == {1, 3}
    # And late rows for that day: a debug line kept 1 day (its sub-partition is gone) and one kept 45 days
    project = uuid.uuid4()
    for body, days_kept in (("late debug", 1), ("kept 45", 45)):
        db.execute(
            "insert into public.logs (org_id, project_id, time, body, retention_days) values (%s, %s, %s, %s, %s)",
            (uuid.uuid4(), project, at(day), body, days_kept),
        )
    assert leaf_counts(db, "logs", project) == {f"logs_p{day:%Y%m%d}_default": 2}

    # When the cleanup runs again
    report = run_cleanup(today=far_today, since=day)

    # Then the expired late row is deleted (a small safety net, not a sub-partition), the other stays
    assert report.drops == [] and report.default_rows_deleted["public.logs"] == 1
    left = db.execute("select body from public.logs where project_id = %s", (project,)).fetchall()
    assert [r["body"] for r in left] == ["kept 45"]
    audit = db.execute(
        "select details from public.audit_log where action = 'retention.rows_purged' and target_id = %s",
        (f"public.logs_p{day:%Y%m%d}_default",),
    ).fetchall()
    assert [a["details"]["rows"] for a in audit] == [1]


def test_expired_idempotency_keys_and_old_usage_rows_are_purged(db: psycopg.Connection) -> None:
    # Given an expired and a live Idempotency-Key, and usage rows just past and just within the bound
    project = make_project()
    db.execute(
        "insert into public.ingest_idempotency (project_id, key, org_id, request_hash, status, response, expires_at)"
        " values (%s, 'old', %s, 'h', 202, '{}', now() - interval '1 hour'),"
        " (%s, 'live', %s, 'h', 202, '{}', now() + interval '1 hour')",
        (project.project_id, project.org_id, project.project_id, project.org_id),
    )
    keep = cleanup.USAGE_KEEP_DAYS
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes) values"
        " (%s, (now() at time zone 'UTC')::date - %s, 'logs', 1, 1),"
        " (%s, (now() at time zone 'UTC')::date - %s, 'logs', 2, 2)",
        (project.org_id, keep + 1, project.org_id, keep - 1),
    )

    # When a dry run, then a real run, clean up
    dry = run_cleanup(dry_run=True, since=date(9999, 1, 1))
    report = run_cleanup(since=date(9999, 1, 1))

    # Then the expired key and the old usage row are gone, the others stay
    assert dry.idempotency_keys_purged >= 1 and dry.usage_rows_purged >= 1
    assert report.idempotency_keys_purged >= 1 and report.usage_rows_purged >= 1
    keys = db.execute("select key from public.ingest_idempotency where project_id = %s", (project.project_id,))
    assert [r["key"] for r in keys.fetchall()] == ["live"]
    days = db.execute("select events from public.usage_daily where org_id = %s", (project.org_id,)).fetchall()
    assert [r["events"] for r in days] == [2]
    # And an expired key can be claimed afresh afterwards (ingest replays still work)
    again = post_native(project.headers, [log("x")], idempotency_key="old")
    assert again.status == 202


# ---------------------------------------------------------------------------------------------
# Migration 0010 on a database that already holds telemetry


@pytest.fixture
def fresh_url(db: psycopg.Connection, database_url: str) -> Any:
    name = f"ret_{uuid.uuid4().hex[:12]}"
    db.execute(f'create database "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    finally:
        db.execute(f'drop database if exists "{name}" with (force)')


def test_migration_moves_existing_rows_into_the_new_layout(fresh_url: str, tmp_path: Path) -> None:
    from observai.db.migrations import apply_migrations

    # Given a database migrated up to 0009, holding rows of a pro organization (every level), of a deleted
    # organization, on today, on a day 20 days back that has its partition, and in the default partition
    before = tmp_path / "before"
    before.mkdir()
    for f in sorted((ROOT / "migrations").glob("*.sql")):
        if f.name < "0010":
            (before / f.name).write_text(f.read_text())
    apply_migrations(fresh_url, before)
    today = datetime.now(UTC).date()
    old_day, far_day = today - timedelta(days=20), today + timedelta(days=200)
    org, gone_org, project = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(fresh_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("insert into public.organizations (id, name, slug, plan) values (%s, 'o', %s, 'pro')",
                     (org, f"o-{org.hex[:8]}"))  # fmt: skip
        conn.execute("select private.ensure_daily_partitions('public.logs', %s, %s)", (old_day, old_day))
        for owner, when, severity, body in [
            (org, at(today, 0), 5, "debug"), (org, at(today, 0), 9, "info"), (org, at(today, 0), 0, "unset"),
            (org, at(today, 0), 17, "error"), (org, at(old_day), 13, "old warn"), (gone_org, at(today, 0), 9, "orphan"),
            (org, at(far_day), 9, "far"),
        ]:  # fmt: skip
            conn.execute(
                "insert into public.logs (org_id, project_id, time, severity_number, body, event_id)"
                " values (%s, %s, %s, %s, %s, %s)",
                (owner, project, when, severity, body, f"e-{body}"),
            )
        conn.execute(
            "insert into public.spans (org_id, project_id, trace_id, span_id, name, kind, start_time, end_time,"
            " duration_ns, status_code) values (%s, %s, 'ab', 'cd', 'op', 'server', %s, %s, 1, 'ok')",
            (org, project, at(today, 0), at(today, 0)),
        )
        conn.execute(
            "insert into public.metric_points (org_id, project_id, series_id, time, value) values (%s, %s, 1, %s, 1)",
            (org, project, at(today, 0)),
        )
        ids_before = {r["body"]: r["id"] for r in conn.execute("select id, body from public.logs")}

    # When migration 0010 runs
    assert apply_migrations(fresh_url, ROOT / "migrations")[0] == "0010_retention_layout"

    # Then every row is there with its id, its plan's retention for its level, in its sub-partition
    with psycopg.connect(fresh_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute(
            "select id, body, retention_days as r, tableoid::regclass::text as part, search is not null as s"
            " from public.logs"
        ).fetchall()
        got = {r["body"]: (r["id"], r["r"], r["part"]) for r in rows}
        p, po = f"logs_p{today:%Y%m%d}", f"logs_p{old_day:%Y%m%d}"
        assert got == {
            "debug": (ids_before["debug"], 7, f"{p}_r7"),
            "info": (ids_before["info"], 14, f"{p}_r14"),
            "unset": (ids_before["unset"], 14, f"{p}_r14"),
            "error": (ids_before["error"], 30, f"{p}_r30"),
            "old warn": (ids_before["old warn"], 30, f"{po}_r30"),  # its old day got its partition back
            "orphan": (ids_before["orphan"], 90, f"{p}_r90"),  # no plan any more: the column default
            "far": (ids_before["far"], 14, "logs_default"),
        }
        assert all(r["s"] for r in rows)  # the full-text column was recomputed
        span_row = conn.execute("select retention_days as r, tableoid::regclass::text as part from public.spans")
        assert span_row.fetchone() == {"r": 30, "part": f"spans_p{today:%Y%m%d}_r30"}
        point = conn.execute("select retention_days as r, tableoid::regclass::text as part from public.metric_points")
        assert point.fetchone() == {"r": 30, "part": f"metric_points_p{today:%Y%m%d}_r30"}
        # And the log id sequence goes on from where it was, owned by the new table
        new_id = conn.execute(
            "insert into public.logs (org_id, project_id, time, body) values (%s, %s, now(), 'new') returning id",
            (org, project),
        ).fetchone()["id"]
        assert new_id > max(ids_before.values())
        owner = conn.execute(
            "select d.refobjid::regclass::text as t from pg_depend d"
            " where d.objid = 'public.logs_id_seq'::regclass and d.deptype = 'a'"
        ).fetchone()
        assert owner == {"t": "logs"}
        # And no old table is left behind
        leftovers = conn.execute("select relname from pg_class where relname like '%\\_old'").fetchall()
        assert leftovers == []


def test_purges_are_bounded_batched_audited_and_resume(db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given 12 expired Idempotency-Keys, batches of 4 and at most 10 rows per purge and run
    project = make_project()
    db.execute(
        "insert into public.ingest_idempotency (project_id, key, org_id, request_hash, status, response, expires_at)"
        " select %s, 'k' || i, %s, 'h', 202, '{}', now() - interval '1 minute' from generate_series(1, 12) i",
        (project.project_id, project.org_id),
    )
    monkeypatch.setattr(cleanup, "PURGE_BATCH_SIZE", 4)
    first_audit = db.execute("select coalesce(max(id), 0) as m from public.audit_log").fetchone()["m"]

    # When a run purges / Then it stops at the bound, one audited transaction per batch
    first = run_cleanup(since=date(9999, 1, 1), max_purge_rows=10)
    assert first.idempotency_keys_purged == 10
    audits = db.execute(
        "select details from public.audit_log where id > %s and action = 'retention.rows_purged'"
        " and target_id = 'public.ingest_idempotency' order by id",
        (first_audit,),
    ).fetchall()
    assert [a["details"]["rows"] for a in audits] == [4, 4, 2]
    # And the next run takes the rest (other tests' expired keys may go with them)
    assert run_cleanup(since=date(9999, 1, 1), max_purge_rows=100).idempotency_keys_purged >= 2
    left = db.execute(
        "select count(*) as n from public.ingest_idempotency where project_id = %s", (project.project_id,)
    )
    assert left.fetchone()["n"] == 0


def test_migration_refuses_to_lose_a_column_another_migration_added(fresh_url: str, tmp_path: Path) -> None:
    from observai.db.migrations import MigrationError, apply_migrations

    # Given migrations where one before 0010 adds a column to metric_points (0010 does not know it)
    directory = tmp_path / "m"
    directory.mkdir()
    for f in sorted((ROOT / "migrations").glob("*.sql")):
        (directory / f.name).write_text(f.read_text())
    (directory / "0009_zz_extra_column.sql").write_text("alter table public.metric_points add column extra text;")

    # When they are applied / Then 0010 fails (and is rolled back) instead of dropping that column's data
    with pytest.raises(MigrationError, match=r"0010_retention_layout.*columns differ"):
        apply_migrations(fresh_url, directory)
    with psycopg.connect(fresh_url) as conn:
        row = conn.execute(
            "select count(*) from pg_attribute where attrelid = 'public.metric_points'::regclass and attname = 'extra'"
        ).fetchone()
        assert row == (1,)
