"""Partition upkeep: daily partitions created ahead, idempotent, overlap-safe, bounded, and rows that
waited in a DEFAULT partition moved into their day's partition when it is created (none lost or doubled).

Each test works on days far in the future (a window of its own), so tests never share a partition.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from observai.telemetry import partitions
from observai.telemetry.partitions import TABLES, run_partition_upkeep

from tests.helpers.inprocess import load_function

pytestmark = pytest.mark.integration


# Each test's day starts its own 30-day window (a test reaches 10 days ahead): random days could collide. A random
# first window keeps reruns on a reused DATABASE_URL apart too.
_WINDOWS = itertools.count(random.randrange(0, 200))


@pytest.fixture
def far_day() -> date:
    """A day nobody else uses: years ahead, a different window per test."""
    return date(2060, 1, 10) + timedelta(days=30 * next(_WINDOWS))


def partition_days(db: psycopg.Connection, table: str) -> set[date]:
    rows = db.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = %s::regclass and c.relname ~ '_p[0-9]{8}$'",
        (table,),
    ).fetchall()
    return {datetime.strptime(r["relname"][-8:], "%Y%m%d").date() for r in rows}


def days(first: date, last: date) -> set[date]:
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_creates_partitions_ahead_and_a_second_run_creates_nothing(db: psycopg.Connection, far_day: date) -> None:
    # Given a "today" whose surrounding days have no partitions yet
    # When upkeep runs for today-1 .. today+2
    first = run_partition_upkeep(days_back=1, days_ahead=2, today=far_day)

    # Then every time-partitioned table has exactly those four new daily partitions
    assert first.ran and first.partitions_created == 4 * len(TABLES)
    for table in TABLES:
        assert days(far_day - timedelta(days=1), far_day + timedelta(days=2)) <= partition_days(db, table)

    # And running again changes nothing (idempotent)
    second = run_partition_upkeep(days_back=1, days_ahead=2, today=far_day)
    assert second.ran and second.partitions_created == 0
    assert [t.created for t in second.tables] == [0] * len(TABLES)


def test_new_partitions_are_utc_days_with_the_parents_indexes_and_closed_to_api_roles(
    db: psycopg.Connection, far_day: date
) -> None:
    # Given upkeep created far_day's partition of logs
    run_partition_upkeep(days_back=0, days_ahead=0, today=far_day)
    name = f"logs_p{far_day:%Y%m%d}"

    # Then its bounds are that UTC day, whatever the session time zone
    db.execute("set timezone = 'UTC'")
    bound = db.execute("select pg_get_expr(relpartbound, oid) as b from pg_class where relname = %s", (name,))
    assert bound.fetchone()["b"] == (
        f"FOR VALUES FROM ('{far_day} 00:00:00+00') TO ('{far_day + timedelta(days=1)} 00:00:00+00')"
    )
    # And it carries every index of the parent (time, full text, trace, service, dedup, id BRIN)
    count = db.execute(
        "select count(*) as n from pg_inherits i join pg_index x on x.indexrelid = i.inhrelid"
        " where x.indrelid = %s::regclass",
        (f"public.{name}",),
    ).fetchone()
    parent_count = db.execute("select count(*) as n from pg_index where indrelid = 'public.logs'::regclass")
    assert count["n"] == parent_count.fetchone()["n"] == 6
    # And RLS is on, with no grant to the API roles (naming a partition directly reveals nothing)
    row = db.execute(
        "select relrowsecurity, has_table_privilege('authenticated', oid, 'select') as auth_select,"
        " has_table_privilege('anon', oid, 'select') as anon_select from pg_class where relname = %s",
        (name,),
    ).fetchone()
    assert row == {"relrowsecurity": True, "auth_select": False, "anon_select": False}


def test_overlapping_run_skips(database_url: str, db: psycopg.Connection, far_day: date) -> None:
    # Given another run holds the upkeep lock
    with psycopg.connect(database_url) as other:
        other.execute("select pg_advisory_xact_lock(%s)", (partitions.LOCK_KEY,))
        # When a second run starts
        report = run_partition_upkeep(days_back=0, days_ahead=1, today=far_day)
        # Then it does nothing rather than racing
        assert report.ran is False and report.partitions_created == 0
        assert report.tables[0].skipped
        assert far_day not in partition_days(db, "public.logs")
    # And once the other run is gone, the next run does the work
    assert run_partition_upkeep(days_back=0, days_ahead=1, today=far_day).partitions_created == 2 * len(TABLES)


def test_never_touches_days_older_than_days_back(db: psycopg.Connection, far_day: date) -> None:
    # Given partitions for an early window
    run_partition_upkeep(days_back=0, days_ahead=1, today=far_day)
    before = partition_days(db, "public.spans")

    # When upkeep runs ten days later with days_back=2
    later = far_day + timedelta(days=10)
    report = run_partition_upkeep(days_back=2, days_ahead=1, today=later)

    # Then it creates only later-2 .. later+1, leaves the old partitions alone and fills no gap before
    after = partition_days(db, "public.spans")
    assert report.partitions_created == 4 * len(TABLES)
    assert after - before == days(later - timedelta(days=2), later + timedelta(days=1))
    assert before <= after
    assert not (days(far_day + timedelta(days=2), later - timedelta(days=3)) & after)


def test_bounded_whatever_it_is_asked() -> None:
    with pytest.raises(ValueError, match="between 0 and"):
        run_partition_upkeep(days_back=10_000)


def _insert_rows(db: psycopg.Connection, project: uuid.UUID, day: date, n: int) -> None:
    org = uuid.uuid4()
    for i in range(n):
        t = at(day, hour=i % 24)
        db.execute(
            "insert into public.logs (org_id, project_id, time, body, event_id) values (%s, %s, %s, %s, %s)",
            (org, project, t, f"moved log {i} marker{day:%Y%m%d}", f"e{i}"),
        )
        db.execute(
            "insert into public.spans (org_id, project_id, trace_id, span_id, name, kind, start_time, end_time,"
            " duration_ns, status_code) values (%s, %s, %s, %s, 'op', 'server', %s, %s, 1000, 'ok')",
            (org, project, uuid.uuid4().hex, uuid.uuid4().hex[:16], t, t),
        )
        db.execute(
            "insert into public.metric_points (org_id, project_id, series_id, time, value) values (%s, %s, %s, %s, %s)",
            (org, project, i, t, float(i)),
        )


def _where(db: psycopg.Connection, table: str, project: uuid.UUID) -> dict[str, int]:
    rows = db.execute(
        f"select tableoid::regclass::text as part, count(*) as n from public.{table} where project_id = %s group by 1",
        (project,),
    ).fetchall()
    return {r["part"]: r["n"] for r in rows}


def test_rows_waiting_in_the_default_partition_are_moved_none_lost_or_duplicated(
    db: psycopg.Connection, far_day: date
) -> None:
    # Given rows for two days that have no partition: they sit in each table's default partition
    project = uuid.uuid4()
    day, next_day = far_day, far_day + timedelta(days=1)
    _insert_rows(db, project, day, 30)
    _insert_rows(db, project, next_day, 5)
    ids_before = {r["id"] for r in db.execute("select id from public.logs where project_id = %s", (project,))}
    assert _where(db, "logs", project) == {"logs_default": 35}

    # When upkeep creates the first day's partition (only that day)
    report = run_partition_upkeep(days_back=0, days_ahead=0, today=day)

    # Then that day's rows moved into the new partition (into the sub-partition of their retention_days, here
    # the column default 90; metric_rollups has no sub-partitions), the other day's stayed in default
    assert report.partitions_created == len(TABLES)
    suffix = f"p{day:%Y%m%d}"
    assert _where(db, "logs", project) == {f"logs_{suffix}_r90": 30, "logs_default": 5}
    assert _where(db, "spans", project) == {f"spans_{suffix}_r90": 30, "spans_default": 5}
    assert _where(db, "metric_points", project) == {f"metric_points_{suffix}_r90": 30, "metric_points_default": 5}
    # And no row was lost or duplicated: same log ids, and the generated full-text column was recomputed
    ids_after = [r["id"] for r in db.execute("select id from public.logs where project_id = %s", (project,))]
    assert len(ids_after) == len(set(ids_after)) == 35 and set(ids_after) == ids_before
    hits = db.execute(
        "select count(*) as n from public.logs where project_id = %s and search @@ to_tsquery('simple', %s)",
        (project, f"marker{day:%Y%m%d}"),
    ).fetchone()
    assert hits["n"] == 30
    # And the dedup keys still hold across the move (the moved rows are in the new partition's unique index)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "insert into public.logs (org_id, project_id, time, body, event_id) values (%s, %s, %s, 'dup', 'e0')",
            (uuid.uuid4(), project, at(day, 0)),
        )


def test_postgres_refuses_a_plain_partition_over_rows_in_default(db: psycopg.Connection, far_day: date) -> None:
    # Given a row in the default partition for a day without a partition
    project = uuid.uuid4()
    _insert_rows(db, project, far_day, 1)

    # When creating that day's partition the plain way / Then Postgres refuses: why the upkeep moves rows first
    with db.transaction(force_rollback=True), pytest.raises(psycopg.errors.CheckViolation, match="default partition"):
        db.execute(
            f"create table public.logs_p{far_day:%Y%m%d} partition of public.logs"
            f" for values from ('{far_day} 00:00:00+00') to ('{far_day + timedelta(days=1)} 00:00:00+00')"
        )


def test_scheduled_handler_runs_upkeep_and_roll_up() -> None:
    # Given the function's handler and its sample schedule event
    import json
    from pathlib import Path

    from observai_local.lambda_context import LambdaContext

    app = load_function("partition_upkeep")
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "partition_upkeep_schedule.json").read_text())

    # When it is invoked as EventBridge Scheduler would
    result = app.lambda_handler(
        event, LambdaContext("observai-test-partition-upkeep", memory_limit_in_mb=512, timeout_s=300)
    )

    # Then it reports the run: today-8 .. today+3, nothing missing after the migration, and the roll-up ran
    today = datetime.now(UTC).date()
    assert result["ran"] is True
    assert result["first_day"] == str(today - timedelta(days=8)) and result["last_day"] == str(
        today + timedelta(days=3)
    )
    assert {t["table"] for t in result["tables"]} == set(TABLES)
    assert all(t["error"] is None for t in result["tables"])
    assert result["usage_rows_rolled_up"] >= 0
