"""The telemetry schema of migrations 0005 and 0010: partitioning, partitions present after migrating, the
dedup keys, plans, and Row Level Security of the service-only tables (the tenant tables are in test_rls.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

pytestmark = pytest.mark.integration

PARTITIONED = {
    "metric_points": 'RANGE ("time")',
    "logs": 'RANGE ("time")',
    "spans": "RANGE (start_time)",
    "metric_rollups": "RANGE (bucket_start)",
    "metric_group_rollups": "RANGE (bucket_start)",
}


def test_time_tables_are_range_partitioned_by_their_time_column_with_a_default(db: psycopg.Connection) -> None:
    rows = db.execute(
        "select c.relname, pg_get_partkeydef(c.oid) as key, pt.partdefid::regclass::text as default_part"
        " from pg_partitioned_table pt join pg_class c on c.oid = pt.partrelid"
        " join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and not c.relispartition"
    ).fetchall()
    assert {r["relname"]: r["key"] for r in rows} == PARTITIONED
    assert {r["relname"]: r["default_part"] for r in rows} == {t: f"{t}_default" for t in PARTITIONED}
    # And the others are plain tables
    kinds = db.execute(
        "select relname, relkind from pg_class where relnamespace = 'public'::regnamespace and relname = any(%s)",
        (["metric_series", "ingest_idempotency", "plans", "usage_increments", "usage_daily"],),
    ).fetchall()
    assert {r["relkind"] for r in kinds} == {"r"} and len(kinds) == 5


def test_partitions_from_today_minus_8_to_today_plus_3_exist_after_migration(db: psycopg.Connection) -> None:
    today = datetime.now(UTC).date()
    for table in PARTITIONED:
        names = {
            r["relname"]
            for r in db.execute(
                "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
                " where i.inhparent = %s::regclass",
                (f"public.{table}",),
            ).fetchall()
        }
        expected = {f"{table}_p{today + timedelta(days=d):%Y%m%d}" for d in range(-8, 4)}
        assert expected <= names, sorted(expected - names)


EXPECTED_INDEXES = {
    "metric_series": {
        "metric_series_pkey": "(project_id, series_id)",
        "metric_series_project_id_name_idx": "(project_id, name)",
        "metric_series_attributes_idx": "gin (attributes jsonb_path_ops)",
        "metric_series_org_id_idx": "(org_id)",
    },
    "metric_points": {"metric_points_dedup_idx": '(project_id, series_id, "time", retention_days)'},
    "logs": {
        "logs_project_id_time_idx": '(project_id, "time" DESC)',
        "logs_search_idx": "gin (search)",
        "logs_project_id_trace_id_idx": "WHERE (trace_id IS NOT NULL)",
        "logs_project_id_service_time_idx": '(project_id, service, "time" DESC)',
        "logs_event_id_dedup_idx": '(project_id, event_id, "time", retention_days) WHERE (event_id IS NOT NULL)',
    },
    "spans": {
        "spans_dedup_idx": "(project_id, trace_id, span_id, start_time, retention_days)",
        "spans_project_id_start_time_idx": "(project_id, start_time DESC)",
        "spans_project_id_service_start_time_idx": "(project_id, service, start_time DESC)",
    },
    "ingest_idempotency": {"ingest_idempotency_pkey": "(project_id, key)", "ingest_idempotency_expires_at_idx": ""},
    "usage_increments": {"usage_increments_org_id_day_idx": "(org_id, day) INCLUDE (signal, events, bytes)"},
    "usage_daily": {"usage_daily_pkey": "(org_id, day, signal)"},
}


@pytest.mark.parametrize("table", sorted(EXPECTED_INDEXES))
def test_indexes(db: psycopg.Connection, table: str) -> None:
    defs = {
        r["indexname"]: r["indexdef"]
        for r in db.execute(
            "select indexname, indexdef from pg_indexes where schemaname = 'public' and tablename = %s", (table,)
        )
    }
    for name, fragment in EXPECTED_INDEXES[table].items():
        assert name in defs, f"{name} missing on {table}: {sorted(defs)}"
        assert fragment in defs[name], defs[name]
    for name in ("metric_points_dedup_idx", "logs_event_id_dedup_idx", "spans_dedup_idx"):
        if name in defs:
            assert defs[name].startswith("CREATE UNIQUE INDEX")


NOW = datetime.now(UTC).replace(microsecond=0)


def _metric(db: psycopg.Connection, project: uuid.UUID, value: float) -> None:
    db.execute(
        "insert into public.metric_points (org_id, project_id, series_id, time, value) values (%s, %s, 42, %s, %s)",
        (uuid.uuid4(), project, NOW, value),
    )


def _log(db: psycopg.Connection, project: uuid.UUID, event_id: str | None) -> None:
    db.execute(
        "insert into public.logs (org_id, project_id, time, body, event_id) values (%s, %s, %s, 'hello', %s)",
        (uuid.uuid4(), project, NOW, event_id),
    )


def _span(db: psycopg.Connection, project: uuid.UUID) -> None:
    db.execute(
        "insert into public.spans (org_id, project_id, trace_id, span_id, name, kind, start_time, end_time,"
        " duration_ns, status_code) values (%s, %s, 'ab', 'cd', 'op', 'server', %s, %s, 5, 'ok')",
        (uuid.uuid4(), project, NOW, NOW),
    )


@pytest.mark.parametrize(
    "insert",
    [lambda db, p: _metric(db, p, 1.0), lambda db, p: _log(db, p, "evt-1"), _span],
    ids=["metric_points", "logs_with_event_id", "spans"],
)
def test_dedup_keys_reject_a_duplicate(db: psycopg.Connection, insert) -> None:
    # Given a row / When the same key is written again / Then the unique index refuses it
    project = uuid.uuid4()
    insert(db, project)
    with pytest.raises(psycopg.errors.UniqueViolation):
        insert(db, project)
    # And the same key in another project is a different row
    insert(db, uuid.uuid4())


def test_logs_without_event_id_are_never_deduplicated_and_on_conflict_works(db: psycopg.Connection) -> None:
    project = uuid.uuid4()
    _log(db, project, None)
    _log(db, project, None)
    # The writer's form: ON CONFLICT with the partial index's predicate
    for _ in range(2):
        db.execute(
            "insert into public.logs (org_id, project_id, time, body, event_id) values (%s, %s, %s, 'x', 'k')"
            " on conflict (project_id, event_id, time, retention_days) where event_id is not null do nothing",
            (uuid.uuid4(), project, NOW),
        )
    n = db.execute("select count(*) as n from public.logs where project_id = %s", (project,)).fetchone()["n"]
    assert n == 3


def test_log_search_is_a_generated_tsvector(db: psycopg.Connection) -> None:
    project = uuid.uuid4()
    db.execute(
        "insert into public.logs (org_id, project_id, time, body) values (%s, %s, %s, 'Payment FAILED for order 17')",
        (uuid.uuid4(), project, NOW),
    )
    hit = db.execute(
        "select count(*) as n from public.logs"
        " where project_id = %s and search @@ to_tsquery('simple', 'failed & order')",
        (project,),
    ).fetchone()
    assert hit["n"] == 1
    row = db.execute(
        "select id, attributes, resource, severity_number from public.logs where project_id = %s", (project,)
    )
    r = row.fetchone()
    assert r["id"] > 0 and r["attributes"] == {} and r["resource"] == {} and r["severity_number"] == 0


def test_plans_are_seeded_and_organizations_reference_them(db: psycopg.Connection) -> None:
    rows = db.execute("select * from public.plans order by plan").fetchall()
    # (plan, events/day, bytes/day, series, cardinality, retention, info log retention, debug log retention,
    # AI tokens a month)
    assert [tuple(r.values()) for r in rows] == [
        ("enterprise", None, None, 10_000_000, 500_000, 90, 30, 14, 100_000_000),
        ("free", 1_000_000, 1024**3, 10_000, 1_000, 7, 3, 1, 250_000),
        ("pro", 100_000_000, 100 * 1024**3, 1_000_000, 50_000, 30, 14, 7, 10_000_000),
    ]
    fk = db.execute(
        "select pg_get_constraintdef(oid) as d from pg_constraint where conname = 'organizations_plan_fkey'"
    ).fetchone()
    assert fk["d"] == "FOREIGN KEY (plan) REFERENCES plans(plan)"


# Service-only tables and plans: RLS on; what each caller sees.


@pytest.fixture
def tenant(db: psycopg.Connection):
    org, project, owner = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    db.execute("insert into public.organizations (id, name, slug) values (%s, 'T', %s)", (org, f"t-{org.hex[:12]}"))
    db.execute(
        "insert into public.projects (id, org_id, name, slug) values (%s, %s, 'P', %s)",
        (project, org, f"p-{org.hex[:8]}"),
    )
    db.execute("insert into public.memberships (org_id, user_id, role) values (%s, %s, 'owner')", (org, owner))
    db.execute(
        "insert into public.ingest_idempotency (project_id, key, org_id, request_hash, status, response)"
        " values (%s, 'k1', %s, 'h', 202, '{}')",
        (project, org),
    )
    db.execute(
        "insert into public.usage_increments (org_id, project_id, day, signal, events, bytes)"
        " values (%s, %s, current_date, 'logs', 1, 1)",
        (org, project),
    )
    yield org, project, owner
    db.execute("delete from public.organizations where id = %s", (org,))
    db.execute("delete from public.ingest_idempotency where project_id = %s", (project,))


def _count_as(db: psycopg.Connection, role: str, claims: dict | None, sql: str, params: tuple = ()) -> int:
    with db.transaction(force_rollback=True):
        db.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, json.dumps(claims) if claims is not None else ""),
        )
        return db.execute(sql, params).fetchone()["n"]


@pytest.mark.parametrize("table", ["ingest_idempotency", "usage_increments"])
def test_service_only_tables_show_nothing_to_owner_or_api_key(db: psycopg.Connection, tenant, table: str) -> None:
    org, project, owner = tenant
    sql = f"select count(*) as n from public.{table} where org_id = %s"
    user = {"sub": str(owner), "role": "authenticated"}
    key = {
        "role": "authenticated",
        "api_key": {"id": str(uuid.uuid4()), "org_id": str(org), "project_id": str(project)},
    }
    # Given rows exist (the service sees them) / Then the owner, the project's key and anon see none
    assert db.execute(sql, (org,)).fetchone()["n"] == 1
    assert _count_as(db, "authenticated", user, sql, (org,)) == 0
    assert _count_as(db, "authenticated", key, sql, (org,)) == 0
    assert _count_as(db, "anon", user, sql, (org,)) == 0
    # And the API roles cannot write them
    with db.transaction(force_rollback=True), pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("select set_config('role', 'authenticated', true)")
        db.execute(f"delete from public.{table}")


def test_members_see_their_pending_usage_through_the_definer_function_only(db: psycopg.Connection, tenant) -> None:
    org, _, owner = tenant
    sql = "select count(*) as n from private.pending_usage(%s, current_date, current_date)"
    assert _count_as(db, "authenticated", {"sub": str(owner), "role": "authenticated"}, sql, (org,)) == 1
    assert _count_as(db, "authenticated", {"sub": str(uuid.uuid4()), "role": "authenticated"}, sql, (org,)) == 0


def test_plans_are_readable_by_every_signed_in_caller_only(db: psycopg.Connection) -> None:
    sql = "select count(*) as n from public.plans"
    assert _count_as(db, "authenticated", {"sub": str(uuid.uuid4()), "role": "authenticated"}, sql) == 3
    assert _count_as(db, "anon", None, sql) == 0


def test_partitions_cannot_be_read_directly_by_api_roles(db: psycopg.Connection) -> None:
    today = datetime.now(UTC).date()
    for name in (f"logs_p{today:%Y%m%d}", "logs_default", f"spans_p{today:%Y%m%d}", "metric_points_default"):
        with db.transaction(force_rollback=True), pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("select set_config('role', 'authenticated', true)")
            db.execute(f"select * from public.{name} limit 1")
