"""Erasing deleted tenants' telemetry: deleting a project (or an organization) records it, the purge removes
every row of that project from every telemetry table and no row of another project, in bounded runs that
resume, marks the project purged once nothing is left (after a grace period), and two overlapping runs
never delete or count a row twice.

Every run is limited to the test's own projects (``project_ids``): other tests delete projects too.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.db.connection import transaction
from observai.retention import purge
from observai.retention.purge import PURGE_TABLES, run_purge
from observai.telemetry import usage
from observai.tenancy import store

from tests.helpers.ingest import IngestProject, ago, log, make_project, metric, post_native, span

pytestmark = pytest.mark.integration

NO_GRACE = timedelta(0)


@pytest.fixture(autouse=True)
def _fresh_plan_cache() -> None:
    usage.reset_caches()


def second_project(first: IngestProject) -> UUID:
    """Another project of the same organization."""
    from observai.tenancy.projects import insert_project_with_unique_slug

    with transaction() as cur:
        return insert_project_with_unique_slug(cur, first.org_id, f"Sibling {uuid.uuid4().hex[:6]}", None)["id"]


def fill(db: psycopg.Connection, project: IngestProject | tuple[UUID, UUID], tag: str = "x") -> dict[str, int]:
    """Rows of the project in every table the purge covers; returns the count per table.

    Logs, spans, metric points and series, the log volume and the Idempotency-Key record come from real ingest
    requests (days apart, several log levels: several partitions and retention sub-partitions); a log from 2001
    lands in the default partition; the rollup tables and the rolled-up log volume are inserted directly."""
    if isinstance(project, IngestProject):
        org_id, project_id = project.org_id, project.project_id
        for seconds in (60, 2 * 86_400, 5 * 86_400):
            events = [
                log(f"{tag} debug", at=ago(seconds), severity="debug"),
                log(f"{tag} info", at=ago(seconds), severity="info"),
                log(f"{tag} error", at=ago(seconds), severity="error", service="api"),
                span(f"{tag} GET /", start=ago(seconds)),
                metric(f"{tag}.requests", 1.0, at=ago(seconds), attributes={"route": "/"}),
                metric(f"{tag}.latency", 2.0, at=ago(seconds)),
            ]
            result = post_native(project.headers, events, idempotency_key=f"{tag}-{seconds}-{uuid.uuid4()}")
            assert result.status == 202, result.text
    else:
        org_id, project_id = project
        db.execute(
            "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
            " values (%s, %s, 1, 'bare', 'gauge', '{}')",
            (org_id, project_id),
        )
    keys = {"org": org_id, "project": project_id}
    db.execute(
        "insert into public.logs (org_id, project_id, time, body) values (%(org)s, %(project)s, '2001-02-03', 'old')",
        keys,
    )
    for minutes in (1, 2, 3):
        db.execute(
            "insert into public.metric_rollups (org_id, project_id, series_id, resolution, bucket_start, count)"
            " values (%(org)s, %(project)s, 1, 60, date_trunc('minute', now()) - %(m)s * interval '1 minute', 1)",
            {**keys, "m": minutes},
        )
        db.execute(
            "insert into public.metric_group_rollups (org_id, project_id, name, group_key, group_value, resolution,"
            " bucket_start, series, count) values (%(org)s, %(project)s, 'm', 'route', '/', 60,"
            " date_trunc('minute', now()) - %(m)s * interval '1 minute', 1, 1)",
            {**keys, "m": minutes},
        )
        db.execute(
            "insert into public.metric_group_pending (org_id, project_id, name, bucket_start)"
            " values (%(org)s, %(project)s, 'm', date_trunc('minute', now()) - %(m)s * interval '1 minute')",
            {**keys, "m": minutes},
        )
        db.execute(
            "insert into public.log_volume_rolled (org_id, project_id, minute, service, level, retention_days, count)"
            " values (%(org)s, %(project)s, date_trunc('minute', now()) - %(m)s * interval '1 minute', 'api', 5, 7, 3)",
            {**keys, "m": minutes},
        )
        db.execute(
            "insert into public.log_volume (org_id, project_id, minute, service, level, retention_days, count)"
            " values (%(org)s, %(project)s, date_trunc('minute', now()) - %(m)s * interval '1 minute', 'api', 5, 7, 1)",
            {**keys, "m": minutes},
        )
        db.execute(
            "insert into public.ingest_idempotency (project_id, key, org_id, request_hash, status, response)"
            " values (%(project)s, %(key)s, %(org)s, 'h', 202, '{}')",
            {**keys, "key": f"direct-{minutes}-{uuid.uuid4()}"},
        )
        db.execute(
            "insert into public.anomaly_points (series_id, time, org_id, project_id, detector_id, value, score,"
            " is_anomaly) values (%(series)s, date_trunc('minute', now()) - %(m)s * interval '1 minute', %(org)s,"
            " %(project)s, gen_random_uuid(), 1.5, 0.25, false)",
            {**keys, "m": minutes, "series": -(uuid.uuid4().int >> 66)},
        )
    db.execute(
        "insert into public.metric_group_keys (org_id, project_id, name, group_key, cardinality, complete_from)"
        " values (%(org)s, %(project)s, 'm', 'route', 1, '-infinity')",
        keys,
    )
    return rows_of(db, project_id)


def rows_of(db: psycopg.Connection, project_id: UUID) -> dict[str, int]:
    return {
        table: db.execute(f"select count(*) as n from {table} where project_id = %s", (project_id,)).fetchone()["n"]
        for table in PURGE_TABLES
    }


def delete_project(project_id: UUID) -> None:
    """As the API does (observai.tenancy.store)."""
    with transaction() as cur:
        store.delete_project(cur, project_id)


def record_of(db: psycopg.Connection, project_id: UUID) -> dict[str, Any] | None:
    return db.execute("select * from public.deleted_projects where project_id = %s", (project_id,)).fetchone()


def purge_until_done(project_ids: list[UUID], **bounds: Any) -> list[purge.PurgeReport]:
    reports = []
    for _ in range(200):
        report = run_purge(grace=NO_GRACE, project_ids=project_ids, **bounds)
        reports.append(report)
        if all(p.done for p in report.projects):
            return reports
    raise AssertionError("the purge never finished")


# ---------------------------------------------------------------------------------------------
# Recording deletions


def test_deleting_a_project_records_it_for_the_service_only(db: psycopg.Connection) -> None:
    # Given a project
    project = make_project()
    before = datetime.now(UTC)

    # When its owner deletes it
    delete_project(project.project_id)

    # Then it is recorded as deleted, not purged yet
    record = record_of(db, project.project_id)
    assert record is not None
    assert record["org_id"] == project.org_id
    assert before - timedelta(seconds=5) <= record["deleted_at"] <= datetime.now(UTC)
    assert record["purged_at"] is None and record["rows_purged"] == 0
    # And the API roles can neither read nor write the record
    for role in ("authenticated", "anon"):
        with db.transaction(force_rollback=True), pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("select set_config('role', %s, true)", (role,))
            db.execute("select count(*) from public.deleted_projects")
    rls = db.execute("select relrowsecurity from pg_class where oid = 'public.deleted_projects'::regclass").fetchone()
    assert rls["relrowsecurity"] is True


def test_deleting_an_organization_records_each_of_its_projects(db: psycopg.Connection) -> None:
    # Given an organization with two projects, and another organization
    project = make_project()
    sibling = second_project(project)
    other = make_project()

    # When the organization is deleted (its projects go by cascade)
    with transaction() as cur:
        store.delete_org(cur, project.org_id)

    # Then both its projects are recorded, and nothing of the other organization
    assert record_of(db, project.project_id)["org_id"] == project.org_id
    assert record_of(db, sibling)["org_id"] == project.org_id
    assert record_of(db, other.project_id) is None


def test_every_table_with_project_rows_and_no_cascade_is_purged(db: psycopg.Connection) -> None:
    # Given the public tables carrying project_id (our migrations')
    rows = db.execute(
        """
        select c.relname from pg_class c join pg_attribute a on a.attrelid = c.oid
        where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and not c.relispartition
          and a.attname = 'project_id' and not a.attisdropped
          and not exists (select 1 from pg_constraint k where k.conrelid = c.oid and k.contype = 'f'
                          and k.confrelid = 'public.projects'::regclass and k.confdeltype = 'c')
        """
    ).fetchall()
    # Then those without a cascading foreign key to projects are the purge's tables, but usage_increments (the
    # organization's usage: rolled up into usage_daily within minutes, gone with the organization), ai_usage (the
    # organization's model tokens, counted against its monthly budget whichever project spent them; gone with the
    # organization) and the record of deletions itself
    unpurged = {r["relname"] for r in rows} - {t.split(".")[1] for t in PURGE_TABLES}
    assert unpurged == {"usage_increments", "ai_usage", "deleted_projects"}


# ---------------------------------------------------------------------------------------------
# Purging


def test_purge_removes_every_row_of_the_deleted_project_and_no_other(db: psycopg.Connection) -> None:
    # Given a project with rows in every telemetry table, a sibling project of its organization and another
    # organization's project, with rows too
    project, other = make_project(), make_project()
    sibling = second_project(project)
    rows = fill(db, project, "gone")
    assert all(n > 0 for n in rows.values()), rows
    partitions = db.execute(
        "select count(distinct tableoid) as n from public.logs where project_id = %s", (project.project_id,)
    ).fetchone()["n"]
    assert partitions >= 4  # days, levels and the default partition
    kept = {other.project_id: fill(db, other, "kept"), sibling: fill(db, (project.org_id, sibling), "sib")}

    # When the project is deleted and the purge runs
    delete_project(project.project_id)
    report = run_purge(grace=NO_GRACE, project_ids=[project.project_id])

    # Then none of its rows is left, and the report counts them
    assert rows_of(db, project.project_id) == dict.fromkeys(PURGE_TABLES, 0)
    (done,) = report.projects
    assert done.rows_deleted == rows and report.rows_deleted == sum(rows.values())
    assert done.complete and not done.done  # rows were found: a later run confirms nothing is left
    assert record_of(db, project.project_id)["rows_purged"] == sum(rows.values())
    # And every row of the other projects is still there
    assert {p: rows_of(db, p) for p in kept} == kept

    # When the next run finds nothing left
    again = run_purge(grace=NO_GRACE, project_ids=[project.project_id])
    # Then the project is marked purged, the record kept, and the erasure audited
    assert again.rows_deleted == 0 and again.projects[0].done
    record = record_of(db, project.project_id)
    assert record["purged_at"] is not None and record["rows_purged"] == sum(rows.values())
    audit = db.execute(
        "select org_id, details from public.audit_log where action = 'retention.project_purged' and target_id = %s",
        (str(project.project_id),),
    ).fetchall()
    assert [(a["org_id"], a["details"]["rows_purged"]) for a in audit] == [(project.org_id, sum(rows.values()))]
    # And a purged project is not looked at again
    assert run_purge(grace=NO_GRACE, project_ids=[project.project_id]).projects == []


def test_purge_of_a_deleted_organization_removes_all_its_projects_rows(db: psycopg.Connection) -> None:
    # Given an organization with two projects with rows, and another organization
    project, other = make_project(), make_project()
    sibling = second_project(project)
    fill(db, project, "org")
    fill(db, (project.org_id, sibling), "org-sib")
    kept = fill(db, other, "org-kept")

    # When the organization is deleted and the purge runs to the end
    with transaction() as cur:
        store.delete_org(cur, project.org_id)
    purge_until_done([project.project_id, sibling])

    # Then nothing of either project is left, and the other organization keeps everything
    for gone in (project.project_id, sibling):
        assert rows_of(db, gone) == dict.fromkeys(PURGE_TABLES, 0)
        assert record_of(db, gone)["purged_at"] is not None
    assert rows_of(db, other.project_id) == kept


def test_bounded_runs_resume_until_nothing_is_left(db: psycopg.Connection) -> None:
    # Given a deleted project with rows in every table
    project = make_project()
    rows = fill(db, project, "bounded")
    delete_project(project.project_id)

    # When the purge runs with tiny bounds (batches of 2, at most 3 rows per table and run)
    reports = purge_until_done([project.project_id], batch_size=2, max_rows_per_table=3)

    # Then each run stayed within its bound, several runs were needed (each resuming where the last stopped) and
    # said so, and every row was deleted exactly once
    working = [r for r in reports if r.rows_deleted]
    assert len(working) == math.ceil(max(rows.values()) / 3)
    for report in reports:
        assert all(n <= 3 for n in report.projects[0].rows_deleted.values())
    assert all(r.more_pending for r in working[:-1])
    deleted: dict[str, int] = {}
    for report in reports:
        for table, n in report.projects[0].rows_deleted.items():
            deleted[table] = deleted.get(table, 0) + n
    assert deleted == rows
    assert rows_of(db, project.project_id) == dict.fromkeys(PURGE_TABLES, 0)
    assert record_of(db, project.project_id)["rows_purged"] == sum(rows.values())


def test_rows_written_after_the_deletion_are_purged_and_the_grace_period_waits_for_them(
    db: psycopg.Connection,
) -> None:
    # Given a deleted project whose rows were purged
    project = make_project()
    fill(db, (project.org_id, project.project_id), "late")
    delete_project(project.project_id)
    assert run_purge(project_ids=[project.project_id]).rows_deleted > 0

    # When a write in flight at the deletion lands afterwards, and the purge runs within the grace period
    db.execute(
        "insert into public.logs (org_id, project_id, time, body) values (%s, %s, now(), 'late')",
        (project.org_id, project.project_id),
    )
    report = run_purge(project_ids=[project.project_id])
    # Then the late row is deleted too, and the project is not marked purged while the grace period lasts
    assert report.projects[0].rows_deleted == {"public.logs": 1}
    assert not run_purge(project_ids=[project.project_id]).projects[0].done
    assert record_of(db, project.project_id)["purged_at"] is None

    # When the deletion is older than the grace period
    db.execute(
        "update public.deleted_projects set deleted_at = now() - %s - interval '1 second' where project_id = %s",
        (purge.GRACE, project.project_id),
    )
    # Then the next run marks it purged
    assert run_purge(project_ids=[project.project_id]).projects[0].done


def test_a_run_stops_while_another_holds_the_lock(database_url: str, db: psycopg.Connection) -> None:
    # Given a deleted project with rows
    project = make_project()
    rows = fill(db, (project.org_id, project.project_id), "locked")
    delete_project(project.project_id)

    # Given another run holds the purge lock
    with psycopg.connect(database_url) as other, other.transaction():
        other.execute("select pg_advisory_xact_lock(%s)", (purge.LOCK_KEY,))
        # When a run starts / Then it stops rather than racing, and deletes nothing
        report = run_purge(grace=NO_GRACE, project_ids=[project.project_id])
        assert report.ran is False and report.rows_deleted == 0
        assert rows_of(db, project.project_id) == rows
    # And once the other run is gone, the next run does the work
    assert run_purge(grace=NO_GRACE, project_ids=[project.project_id]).rows_deleted == sum(rows.values())


def test_two_overlapping_runs_delete_and_count_each_row_once(database_url: str, db: psycopg.Connection) -> None:
    # Given two deleted projects with rows
    projects = [make_project(), make_project()]
    total = 0
    for p in projects:
        total += sum(fill(db, p, "overlap").values())
        delete_project(p.project_id)
    ids = [str(p.project_id) for p in projects]

    # When two runs start at the same time (two processes, as two Lambda invocations would), in small batches
    script = (
        "import json, sys, uuid; from datetime import timedelta; from observai.retention.purge import run_purge;"
        "r = run_purge(grace=timedelta(0), batch_size=2, project_ids=[uuid.UUID(i) for i in sys.argv[1:]]);"
        "print(json.dumps(r.model_dump(mode='json')))"
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *ids], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))

    # Then neither failed, and together they deleted each row once (a run that met the lock stopped)
    assert sum(r["rows_deleted"] for r in reports) <= total
    finish = purge_until_done([p.project_id for p in projects])
    assert sum(r["rows_deleted"] for r in reports) + sum(r.rows_deleted for r in finish) == total
    assert sum(record_of(db, p.project_id)["rows_purged"] for p in projects) == total
    for p in projects:
        assert rows_of(db, p.project_id) == dict.fromkeys(PURGE_TABLES, 0)
    # And each project's erasure is audited once
    audited = db.execute(
        "select count(*) as n from public.audit_log where action = 'retention.project_purged' and target_id = any(%s)",
        (ids,),
    ).fetchone()
    assert audited["n"] == 2


def test_the_scheduled_function_runs_the_purge(db: psycopg.Connection) -> None:
    from observai_local.lambda_context import LambdaContext

    from tests.helpers.inprocess import load_function

    # Given a deleted project with rows
    project = make_project()
    fill(db, (project.org_id, project.project_id), "fn")
    delete_project(project.project_id)

    # When the scheduled function is invoked as EventBridge Scheduler would
    module = load_function("purge_deleted")
    result = module.lambda_handler(
        {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
        LambdaContext("observai-test-purge-deleted", memory_limit_in_mb=512, timeout_s=300),
    )

    # Then the project's rows are gone
    assert result["ran"] is True
    assert rows_of(db, project.project_id) == dict.fromkeys(PURGE_TABLES, 0)
