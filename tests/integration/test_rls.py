"""Row Level Security: for every table, a tenant sees its own rows and never another tenant's.

Rows are arranged as the superuser (``db``); reads run as role ``authenticated`` (or ``anon``) with
the caller's JWT claims set for the transaction, exactly as PostgREST and tenant_transaction do.
Every check compares against the exact set of rows the caller should see, so a policy that is too
open fails as surely as one that is too closed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from observai.db import tenant_transaction

pytestmark = pytest.mark.integration

# For every table with RLS: how to list the rows a caller can see, one identifying key per row.
VISIBLE_KEYS_SQL = {
    "organizations": "select id::text as k from public.organizations",
    "projects": "select id::text as k from public.projects",
    "memberships": "select org_id::text || ':' || user_id::text as k from public.memberships",
    "invitations": "select id::text as k from public.invitations",
    "api_keys": "select id::text as k from public.api_keys",
    "audit_log": "select id::text as k from public.audit_log",
    "rate_limit_buckets": "select key as k from public.rate_limit_buckets",
    # Telemetry and usage (migration 0005); service-only tables and plans: test_telemetry_schema.py
    "metric_series": "select series_id::text as k from public.metric_series",
    "metric_points": "select series_id::text as k from public.metric_points",
    "logs": "select id::text as k from public.logs",
    "spans": "select span_id as k from public.spans",
    "usage_daily": "select org_id::text || ':' || signal as k from public.usage_daily",
    # Log volume (migration 0014)
    "log_volume": "select project_id::text as k from public.log_volume",
    "log_volume_rolled": "select project_id::text as k from public.log_volume_rolled",
    # Alerting and incidents (migration 0018); outbox_events is the service's alone: tested apart below
    "alert_rules": "select id::text as k from public.alert_rules",
    "alert_rule_versions": "select rule_id::text || ':' || version as k from public.alert_rule_versions",
    "alert_instances": "select id::text as k from public.alert_instances",
    "alert_transitions": "select id::text as k from public.alert_transitions",
    "notification_policies": "select project_id::text as k from public.notification_policies",
    "silences": "select id::text as k from public.silences",
    "notification_groups": "select id::text as k from public.notification_groups",
    "notification_group_alerts": "select group_id::text || ':' || instance_id::text as k"
    " from public.notification_group_alerts",
    "notification_log": "select id::text as k from public.notification_log",
    "incidents": "select id::text as k from public.incidents",
    "incident_alerts": "select incident_id::text || ':' || instance_id::text as k from public.incident_alerts",
    "incident_events": "select id::text as k from public.incident_events",
}
ALERTING = {
    "alert_rules",
    "alert_rule_versions",
    "alert_instances",
    "alert_transitions",
    "notification_policies",
    "silences",
    "notification_groups",
    "notification_group_alerts",
    "notification_log",
    "incidents",
    "incident_alerts",
    "incident_events",
}
TABLES = list(VISIBLE_KEYS_SQL)


@dataclass
class Tenant:
    org_id: uuid.UUID
    project_id: uuid.UUID
    owner: uuid.UUID
    viewer: uuid.UUID
    api_key_id: uuid.UUID
    # table -> keys (as VISIBLE_KEYS_SQL returns them) of this tenant's rows
    keys: dict[str, set[str]] = field(default_factory=dict)

    def user_claims(self, user: uuid.UUID) -> dict[str, Any]:
        return {"sub": str(user), "role": "authenticated", "aud": "authenticated"}

    def api_key_claims(self) -> dict[str, Any]:
        return {
            "role": "authenticated",
            "api_key": {
                "id": str(self.api_key_id),
                "org_id": str(self.org_id),
                "project_id": str(self.project_id),
                "scopes": ["ingest", "read"],
            },
        }


def _arrange_telemetry(db: psycopg.Connection, t: Tenant) -> dict[str, set[str]]:
    """One row of each telemetry table for the tenant's project, and a day of its usage."""
    series_id = uuid.uuid4().int >> 65
    span_id = uuid.uuid4().hex[:16]
    ids = (t.org_id, t.project_id)
    db.execute(
        "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
        " values (%s, %s, %s, 'cpu', 'gauge', '{}')",
        (*ids, series_id),
    )
    db.execute(
        "insert into public.metric_points (org_id, project_id, series_id, time, value) values (%s, %s, %s, now(), 1)",
        (*ids, series_id),
    )
    log = db.execute(
        "insert into public.logs (org_id, project_id, time, body) values (%s, %s, now(), 'hi') returning id", ids
    ).fetchone()
    db.execute(
        "insert into public.spans (org_id, project_id, trace_id, span_id, name, kind, start_time, end_time,"
        " duration_ns, status_code) values (%s, %s, %s, %s, 'op', 'server', now(), now(), 0, 'ok')",
        (*ids, uuid.uuid4().hex, span_id),
    )
    db.execute(
        "insert into public.usage_daily (org_id, day, signal, events, bytes) values (%s, current_date, 'logs', 1, 1)",
        (t.org_id,),
    )
    for table in ("log_volume", "log_volume_rolled"):
        db.execute(
            f"insert into public.{table} (org_id, project_id, minute, service, level, retention_days, count)"
            " values (%s, %s, date_trunc('minute', now()), 'api', 3, 3, 1)",
            ids,
        )
    assert log is not None
    return {
        "metric_series": {str(series_id)},
        "metric_points": {str(series_id)},
        "logs": {str(log["id"])},
        "spans": {span_id},
        "usage_daily": {f"{t.org_id}:logs"},
        "log_volume": {str(t.project_id)},
        "log_volume_rolled": {str(t.project_id)},
    }


def _arrange_alerting(db: psycopg.Connection, t: Tenant) -> dict[str, set[str]]:
    """One row of each alerting table for the tenant's project: a rule and its version, a firing alert and its
    transition, a policy, a silence, a group with the alert and a log entry, an incident with the alert and an
    event, and an outbox event (service-only)."""
    ids = {"org": t.org_id, "project": t.project_id}

    def one(statement: str, **values: Any) -> dict[str, Any]:
        row = db.execute(statement, {**ids, **values}).fetchone()
        assert row is not None
        return dict(row)

    rule = one(
        "insert into public.alert_rules (org_id, project_id, name, kind, spec)"
        " values (%(org)s, %(project)s, 'HighLatency', 'metric', '{}') returning id"
    )["id"]
    db.execute(
        "insert into public.alert_rule_versions (rule_id, version, org_id, project_id, definition)"
        " values (%(rule)s, 1, %(org)s, %(project)s, '{}')",
        {**ids, "rule": rule},
    )
    instance = one(
        "insert into public.alert_instances (org_id, project_id, rule_id, rule_version, fingerprint, labels, state,"
        " last_eval_at) values (%(org)s, %(project)s, %(rule)s, 1, %(fp)s, '{}', 'firing', now()) returning id",
        rule=rule,
        fp=uuid.uuid4().hex,
    )["id"]
    transition = one(
        "insert into public.alert_transitions (org_id, project_id, rule_id, rule_version, instance_id, fingerprint,"
        " labels, from_state, to_state, at) values (%(org)s, %(project)s, %(rule)s, 1, %(instance)s, 'f', '{}',"
        " 'pending', 'firing', now()) returning id",
        rule=rule,
        instance=instance,
    )["id"]
    db.execute(
        "insert into public.notification_policies (project_id, org_id, policy) values (%(project)s, %(org)s, '{}')",
        ids,
    )
    silence = one(
        "insert into public.silences (org_id, project_id, matchers, starts_at, ends_at)"
        " values (%(org)s, %(project)s, '[]', now(), now() + interval '1 hour') returning id"
    )["id"]
    group = one(
        "insert into public.notification_groups (org_id, project_id, route_id, group_key)"
        " values (%(org)s, %(project)s, '0', %(key)s) returning id",
        key=uuid.uuid4().hex,
    )["id"]
    db.execute(
        "insert into public.notification_group_alerts (group_id, instance_id, org_id, project_id)"
        " values (%(group)s, %(instance)s, %(org)s, %(project)s)",
        {**ids, "group": group, "instance": instance},
    )
    log_entry = one(
        "insert into public.notification_log (org_id, project_id, group_id, seq, reason)"
        " values (%(org)s, %(project)s, %(group)s, 1, 'first') returning id",
        group=group,
    )["id"]
    incident = one(
        "insert into public.incidents (org_id, project_id, number, title, group_id)"
        " values (%(org)s, %(project)s, 1, 'HighLatency', %(group)s) returning id",
        group=group,
    )["id"]
    db.execute(
        "insert into public.incident_alerts (incident_id, instance_id, org_id, project_id, rule_id, rule_version,"
        " fingerprint, labels, first_fired_at) values (%(incident)s, %(instance)s, %(org)s, %(project)s, %(rule)s,"
        " 1, 'f', '{}', now())",
        {**ids, "incident": incident, "instance": instance, "rule": rule},
    )
    event = one(
        "insert into public.incident_events (org_id, project_id, incident_id, kind)"
        " values (%(org)s, %(project)s, %(incident)s, 'triggered') returning id",
        incident=incident,
    )["id"]
    db.execute(
        "insert into public.outbox_events (org_id, project_id, type, payload)"
        " values (%(org)s, %(project)s, 'incident.triggered', '{}')",
        ids,
    )
    return {
        "alert_rules": {str(rule)},
        "alert_rule_versions": {f"{rule}:1"},
        "alert_instances": {str(instance)},
        "alert_transitions": {str(transition)},
        "notification_policies": {str(t.project_id)},
        "silences": {str(silence)},
        "notification_groups": {str(group)},
        "notification_group_alerts": {f"{group}:{instance}"},
        "notification_log": {str(log_entry)},
        "incidents": {str(incident)},
        "incident_alerts": {f"{incident}:{instance}"},
        "incident_events": {str(event)},
    }


def _arrange_tenant(db: psycopg.Connection, label: str) -> Tenant:
    t = Tenant(
        org_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        owner=uuid.uuid4(),
        viewer=uuid.uuid4(),
        api_key_id=uuid.uuid4(),
    )
    suffix = uuid.uuid4().hex[:10]
    invitation_id = uuid.uuid4()
    db.execute(
        "insert into public.organizations (id, name, slug) values (%s, %s, %s)",
        (t.org_id, f"Org {label}", f"org-{label.lower()}-{suffix}"),
    )
    db.execute(
        "insert into public.projects (id, org_id, name, slug) values (%s, %s, %s, %s)",
        (t.project_id, t.org_id, f"Project {label}", f"proj-{suffix}"),
    )
    db.execute(
        "insert into public.memberships (org_id, user_id, role) values (%s, %s, 'owner'), (%s, %s, 'viewer')",
        (t.org_id, t.owner, t.org_id, t.viewer),
    )
    db.execute(
        "insert into public.invitations (id, org_id, email, role, invited_by) values (%s, %s, %s, 'member', %s)",
        (invitation_id, t.org_id, f"invitee-{suffix}@example.com", t.owner),
    )
    db.execute(
        "insert into public.api_keys (id, org_id, project_id, name, prefix, key_hash, scopes, created_by)"
        " values (%s, %s, %s, 'ci', %s, %s, array['ingest', 'read'], %s)",
        (t.api_key_id, t.org_id, t.project_id, f"obs_{suffix}", hashlib.sha256(suffix.encode()).digest(), t.owner),
    )
    audit = db.execute(
        "insert into public.audit_log (org_id, actor_type, actor_id, action, target_type, target_id)"
        " values (%s, 'user', %s, 'project.create', 'project', %s) returning id",
        (t.org_id, str(t.owner), str(t.project_id)),
    ).fetchone()
    assert audit is not None
    db.execute(
        "insert into public.rate_limit_buckets (key, tokens, updated_at) values (%s, 10, now())",
        (f"user:{t.owner}",),
    )
    t.keys = {
        "organizations": {str(t.org_id)},
        "projects": {str(t.project_id)},
        "memberships": {f"{t.org_id}:{t.owner}", f"{t.org_id}:{t.viewer}"},
        "invitations": {str(invitation_id)},
        "api_keys": {str(t.api_key_id)},
        "audit_log": {str(audit["id"])},
        "rate_limit_buckets": {f"user:{t.owner}"},
        **_arrange_telemetry(db, t),
    }
    t.keys.update(_arrange_alerting(db, t))
    return t


@pytest.fixture
def tenants(db: psycopg.Connection) -> Iterator[tuple[Tenant, Tenant]]:
    """Two organizations A and B, each with one row in every table (fresh ids per test)."""
    a, b = _arrange_tenant(db, "A"), _arrange_tenant(db, "B")
    yield a, b
    # Audit rows stay: the trail is append-only by design.
    db.execute("delete from public.organizations where id in (%s, %s)", (a.org_id, b.org_id))
    db.execute("delete from public.rate_limit_buckets where key in (%s, %s)", (f"user:{a.owner}", f"user:{b.owner}"))


@contextmanager
def as_role(db: psycopg.Connection, role: str, claims: dict[str, Any] | None) -> Iterator[psycopg.Connection]:
    """A transaction as ``role`` with ``claims``, always rolled back."""
    with db.transaction(force_rollback=True):
        db.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, json.dumps(claims) if claims is not None else ""),
        )
        yield db


def visible(conn: psycopg.Connection, table: str) -> set[str]:
    return {row["k"] for row in conn.execute(VISIBLE_KEYS_SQL[table]).fetchall()}


def visible_in_tenant_transaction(claims: dict[str, Any], table: str) -> set[str]:
    with tenant_transaction(claims) as cur:
        cur.execute(VISIBLE_KEYS_SQL[table])
        return {row["k"] for row in cur.fetchall()}


def test_every_public_table_has_rls_and_is_covered_here(db: psycopg.Connection) -> None:
    # Given the tables of the public schema (our migrations' only; schema_migrations is internal)
    rows = db.execute(
        "select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition"
    ).fetchall()

    # Then every one has RLS enabled
    assert [r["relname"] for r in rows if not r["relrowsecurity"]] == []
    # And every table of the tenancy/audit migrations is in this test's matrix
    assert set(TABLES) <= {r["relname"] for r in rows}


@pytest.mark.parametrize("table", TABLES)
def test_other_tenant_sees_no_row_of_org_a(tenants: tuple[Tenant, Tenant], table: str) -> None:
    # Given organizations A and B, each with rows in every table
    a, b = tenants

    # When B's owner lists the table through the shared tenant transaction (role authenticated + claims)
    seen = visible_in_tenant_transaction(b.user_claims(b.owner), table)

    # Then no row of A is visible, and exactly B's own rows are (so the check can fail)
    assert seen & a.keys[table] == set()
    assert seen == b.keys[table]


@pytest.mark.parametrize("table", TABLES)
def test_owner_sees_own_org_rows(tenants: tuple[Tenant, Tenant], table: str) -> None:
    # Given organizations A and B
    a, b = tenants

    # When A's owner lists the table
    seen = visible_in_tenant_transaction(a.user_claims(a.owner), table)

    # Then exactly A's rows are visible (positive control), none of B's
    assert seen == a.keys[table]
    assert seen & b.keys[table] == set()


# What a viewer of A may see: the organization, its projects and members, telemetry and usage; not keys,
# invitations or the audit trail.
TELEMETRY = {"metric_series", "metric_points", "logs", "spans", "log_volume", "log_volume_rolled"}
VIEWER_SEES = {"organizations", "projects", "memberships", "usage_daily"} | TELEMETRY | ALERTING


@pytest.mark.parametrize("table", TABLES)
def test_viewer_sees_only_non_privileged_rows(
    db: psycopg.Connection, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    # Given a viewer of organization A
    a, _ = tenants

    # When the viewer lists the table
    with as_role(db, "authenticated", a.user_claims(a.viewer)) as conn:
        seen = visible(conn, table)

    # Then they see A's rows only where viewers may
    assert seen == (a.keys[table] if table in VIEWER_SEES else set())


# What an API key of project A sees: its organization, its project, itself, its project's telemetry and alerting.
API_KEY_SEES = {"organizations", "projects", "api_keys"} | TELEMETRY | ALERTING


@pytest.mark.parametrize("table", TABLES)
def test_api_key_sees_only_its_project_and_org(
    db: psycopg.Connection, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    # Given an API key of project A (claims carry api_key and no sub)
    a, _ = tenants

    # When a request authenticated by that key lists the table
    with as_role(db, "authenticated", a.api_key_claims()) as conn:
        seen = visible(conn, table)

    # Then it sees exactly org A, project A and the key itself, nothing else anywhere
    assert seen == (a.keys[table] if table in API_KEY_SEES else set())


@pytest.mark.parametrize("table", TABLES)
def test_anon_sees_nothing(db: psycopg.Connection, tenants: tuple[Tenant, Tenant], table: str) -> None:
    # Given rows in every table
    a, _ = tenants

    # When the anonymous role lists the table, even carrying A's owner claims
    with as_role(db, "anon", a.user_claims(a.owner)) as conn:
        seen = visible(conn, table)

    # Then nothing is visible
    assert seen == set()


@pytest.mark.parametrize("table", TABLES)
def test_superuser_sees_both_tenants(db: psycopg.Connection, tenants: tuple[Tenant, Tenant], table: str) -> None:
    # Given / When the service (RLS bypassed) lists the table
    a, b = tenants
    seen = visible(db, table)

    # Then both tenants' rows exist: the filtering above is RLS, not missing data
    assert a.keys[table] | b.keys[table] <= seen


def test_viewer_cannot_update_the_org_but_owner_can(db: psycopg.Connection, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants

    # Given A's viewer / When renaming A / Then no row is affected
    with as_role(db, "authenticated", a.user_claims(a.viewer)) as conn:
        assert (
            conn.execute("update public.organizations set name = 'hijacked' where id = %s", (a.org_id,)).rowcount == 0
        )

    # Given A's owner / When renaming A / Then the row is updated (positive control)
    with as_role(db, "authenticated", a.user_claims(a.owner)) as conn:
        assert conn.execute("update public.organizations set name = 'renamed' where id = %s", (a.org_id,)).rowcount == 1


def test_other_tenant_cannot_update_or_delete_org_a_rows(
    db: psycopg.Connection, tenants: tuple[Tenant, Tenant]
) -> None:
    # Given B's owner
    a, b = tenants
    with as_role(db, "authenticated", b.user_claims(b.owner)) as conn:
        # When trying to change or remove A's rows / Then none is affected
        assert conn.execute("update public.organizations set name = 'x' where id = %s", (a.org_id,)).rowcount == 0
        assert conn.execute("delete from public.projects where org_id = %s", (a.org_id,)).rowcount == 0
        assert conn.execute("delete from public.memberships where org_id = %s", (a.org_id,)).rowcount == 0
        assert (
            conn.execute("update public.api_keys set revoked_at = now() where org_id = %s", (a.org_id,)).rowcount == 0
        )


def test_other_tenant_cannot_join_org_a(db: psycopg.Connection, tenants: tuple[Tenant, Tenant]) -> None:
    # Given B's owner
    a, b = tenants

    # When adding themselves to A / Then RLS refuses the row
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        as_role(db, "authenticated", b.user_claims(b.owner)) as conn,
    ):
        conn.execute(
            "insert into public.memberships (org_id, user_id, role) values (%s, %s, 'owner')", (a.org_id, b.owner)
        )


def test_owner_can_create_a_project_but_viewer_cannot(db: psycopg.Connection, tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    insert = "insert into public.projects (org_id, name, slug) values (%s, 'New', %s)"

    # Given A's owner / When creating a project in A / Then it is created
    with as_role(db, "authenticated", a.user_claims(a.owner)) as conn:
        assert conn.execute(insert, (a.org_id, f"new-{uuid.uuid4().hex[:8]}")).rowcount == 1

    # Given A's viewer / When creating a project in A / Then RLS refuses it
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        as_role(db, "authenticated", a.user_claims(a.viewer)) as conn,
    ):
        conn.execute(insert, (a.org_id, f"new-{uuid.uuid4().hex[:8]}"))


@pytest.mark.parametrize(
    "statement",
    [
        "update public.audit_log set action = 'tampered' where org_id = %(org)s",
        "delete from public.audit_log where org_id = %(org)s",
        "truncate public.audit_log",
    ],
    ids=["update", "delete", "truncate"],
)
def test_audit_log_is_append_only_even_for_superuser(
    db: psycopg.Connection, tenants: tuple[Tenant, Tenant], statement: str
) -> None:
    # Given A's audit row, and the superuser (RLS and grants do not apply to it)
    a, _ = tenants

    # When changing or removing audit rows / Then the trigger refuses (rolled back regardless)
    with db.transaction(force_rollback=True), pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        db.execute(statement, {"org": a.org_id})

    # And the row is still there, unchanged
    row = db.execute("select action from public.audit_log where org_id = %s", (a.org_id,)).fetchone()
    assert row == {"action": "project.create"}


@pytest.mark.parametrize("statement", ["update public.audit_log set action = 'x'", "delete from public.audit_log"])
def test_audit_log_update_and_delete_are_not_granted_to_api_roles(
    db: psycopg.Connection, tenants: tuple[Tenant, Tenant], statement: str
) -> None:
    # Given A's owner, who can read A's trail / When changing it / Then permission is denied outright
    a, _ = tenants
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        as_role(db, "authenticated", a.user_claims(a.owner)) as conn,
    ):
        conn.execute(statement)


def test_authenticated_cannot_write_audit_rows(db: psycopg.Connection, tenants: tuple[Tenant, Tenant]) -> None:
    # Given A's owner / When forging an audit row / Then RLS refuses: only the service writes the trail
    a, _ = tenants
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        as_role(db, "authenticated", a.user_claims(a.owner)) as conn,
    ):
        conn.execute(
            "insert into public.audit_log (org_id, actor_type, action) values (%s, 'system', 'forged')", (a.org_id,)
        )


@pytest.mark.parametrize("table", sorted(ALERTING))
def test_api_roles_cannot_write_alerting_rows(
    db: psycopg.Connection, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    # Given A's owner, who reads A's alerting rows / When deleting them directly / Then permission is denied:
    # every write goes through the API's checked service transaction
    a, _ = tenants
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        as_role(db, "authenticated", a.user_claims(a.owner)) as conn,
    ):
        conn.execute(f"delete from public.{table} where org_id = %s", (a.org_id,))


@pytest.mark.parametrize(("role", "who"), [("anon", "owner"), ("authenticated", "owner"), ("authenticated", "api_key")])
def test_outbox_events_are_the_services_alone(
    db: psycopg.Connection, tenants: tuple[Tenant, Tenant], role: str, who: str
) -> None:
    # Given A's outbox event (the service sees it)
    a, _ = tenants
    assert db.execute("select count(*) as n from public.outbox_events where org_id = %s", (a.org_id,)).fetchone() == {
        "n": 1
    }
    claims = a.api_key_claims() if who == "api_key" else a.user_claims(a.owner)

    # When an API role reads the outbox, even with A's owner's or A's key's claims / Then it may not read it at all
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_role(db, role, claims) as conn:
        conn.execute("select id from public.outbox_events")
