"""Live updates: incidents and alert instances stream to dashboards through Supabase Realtime, which reads the
``supabase_realtime`` publication and delivers each change only to subscribers whose RLS lets them select the row.

Checked three ways: the publication lists both tables with full row images; their select policies, as role
``authenticated`` with a subscriber's claims, show a member of org A A's rows and not B's; and end to end, in a
database of its own with ``wal_level = logical``, the changes of the publication are read through a ``pgoutput``
slot (what Realtime consumes) and each is checked against each subscriber's RLS as Realtime does: the row selected
by its key as that subscriber."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush
from tests.helpers.ingest import make_project
from tests.helpers.pgoutput import Change, decode
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LIVE_TABLES = {"incidents", "alert_instances"}


def test_the_publication_streams_incidents_and_alert_instances_with_full_rows(db: psycopg.Connection[Any]) -> None:
    # Given the migrated database / When reading the publication Realtime listens to
    tables = db.execute(
        "select tablename from pg_publication_tables where pubname = 'supabase_realtime' and schemaname = 'public'"
    ).fetchall()
    publication = db.execute(
        "select pubinsert, pubupdate, pubdelete from pg_publication where pubname = 'supabase_realtime'"
    ).fetchone()
    identity = db.execute(
        "select relname, relreplident from pg_class where relnamespace = 'public'::regnamespace and relname = any(%s)",
        (list(LIVE_TABLES),),
    ).fetchall()

    # Then both tables are in it, inserts, updates and deletes are published, with full row images
    assert {row["tablename"] for row in tables} >= LIVE_TABLES
    assert publication == {"pubinsert": True, "pubupdate": True, "pubdelete": True}
    assert {row["relname"]: row["relreplident"] for row in identity} == {"incidents": "f", "alert_instances": "f"}


def test_their_policies_are_select_only_for_authenticated(db: psycopg.Connection[Any]) -> None:
    # Given the policies of the live tables / Then each is a select policy for authenticated, and nothing else
    policies = db.execute(
        "select tablename, cmd, roles from pg_policies where schemaname = 'public' and tablename = any(%s)",
        (list(LIVE_TABLES),),
    ).fetchall()
    assert sorted((p["tablename"], p["cmd"], list(p["roles"])) for p in policies) == [
        ("alert_instances", "SELECT", ["authenticated"]),
        ("incidents", "SELECT", ["authenticated"]),
    ]


def _visible(db: psycopg.Connection[Any], claims: dict[str, Any], table: str, ids: list[UUID]) -> set[UUID]:
    """The rows among ``ids`` the subscriber with ``claims`` may select: what Realtime checks per subscriber."""
    with db.transaction(force_rollback=True):
        db.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            (json.dumps(claims),),
        )
        rows = db.execute(f"select id from public.{table} where id = any(%s)", (ids,)).fetchall()
    return {row["id"] for row in rows}


def test_members_see_their_organizations_rows_only(db: psycopg.Connection[Any]) -> None:
    # Given orgs A and B, each with an incident and its firing alert instance, a member of A and a member of B
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rows: dict[str, dict[str, UUID]] = {}
    members: dict[str, dict[str, Any]] = {}
    for label in ("A", "B"):
        project = make_project(("read",), label=f"Live {label}")
        rule = arrange_rule(db, project.org_id, project.project_id)
        alert = arrange_alert(db, rule, at=now)
        incident = flush(arrange_group(db, project.org_id, project.project_id), firing=[alert], now=now)
        rows[label] = {"incidents": incident["id"], "alert_instances": alert.instance_id}
        member = make_user(db)
        add_membership(db, project.org_id, member.id, "viewer")
        members[label] = {"sub": str(member.id), "role": "authenticated", "aud": "authenticated"}

    for table in LIVE_TABLES:
        both = [rows["A"][table], rows["B"][table]]
        # When each member selects the rows, as Realtime does for a subscriber
        # Then A's member sees A's row only, B's member B's only, and an unknown user nothing
        assert _visible(db, members["A"], table, both) == {rows["A"][table]}
        assert _visible(db, members["B"], table, both) == {rows["B"][table]}
        stranger = {"sub": str(uuid.uuid4()), "role": "authenticated", "aud": "authenticated"}
        assert _visible(db, stranger, table, both) == set()


# --- end to end through logical decoding -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logical_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own (never the shared test database) with wal_level = logical, migrated."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver._commands import pg_ctl
    from observai.db.migrations import apply_migrations

    server = pgserver.get_server(str(tmp_path_factory.mktemp("pglogical")), cleanup_mode="delete")
    url = server.get_uri()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("alter system set wal_level = logical")
        pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=30)
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("show wal_level").fetchone()
        if row is None or row[0] != "logical":
            pytest.skip("this Postgres cannot run with wal_level = logical")
        apply_migrations(url, ROOT / "migrations")
        yield url
    finally:
        server.cleanup()


@dataclass
class LiveTenant:
    org_id: UUID
    project_id: UUID
    member: dict[str, Any]  # the subscriber's JWT claims
    incident_id: UUID
    instance_id: UUID


def _arrange(conn: psycopg.Connection[Any], label: str) -> LiveTenant:
    org_id, project_id, member = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    suffix = uuid.uuid4().hex[:8]
    conn.execute(
        "insert into public.organizations (id, name, slug) values (%s, %s, %s)", (org_id, label, f"o-{suffix}")
    )
    conn.execute(
        "insert into public.projects (id, org_id, name, slug) values (%s, %s, %s, %s)",
        (project_id, org_id, label, f"p-{suffix}"),
    )
    conn.execute("insert into public.memberships (org_id, user_id, role) values (%s, %s, 'member')", (org_id, member))
    rule = conn.execute(
        "insert into public.alert_rules (org_id, project_id, name, kind, spec)"
        " values (%s, %s, 'HighLatency', 'metric', '{}') returning id",
        (org_id, project_id),
    ).fetchone()
    assert rule is not None
    instance = conn.execute(
        "insert into public.alert_instances (org_id, project_id, rule_id, rule_version, fingerprint, labels, state,"
        " last_eval_at) values (%s, %s, %s, 1, %s, '{}', 'pending', now()) returning id",
        (org_id, project_id, rule["id"], uuid.uuid4().hex[:16]),
    ).fetchone()
    incident = conn.execute(
        "insert into public.incidents (org_id, project_id, number, title) values (%s, %s, 1, %s) returning id",
        (org_id, project_id, f"{label}: p95 latency above 500 ms"),
    ).fetchone()
    assert instance is not None and incident is not None
    claims = {"sub": str(member), "role": "authenticated", "aud": "authenticated"}
    return LiveTenant(org_id, project_id, claims, incident["id"], instance["id"])


def _received(conn: psycopg.Connection[Any], subscriber: dict[str, Any], changes: list[Change]) -> list[Change]:
    """The changes Realtime would send the subscriber: those whose row the subscriber's RLS lets them select."""
    received = []
    for change in changes:
        row_id = (change.new or change.old)["id"]
        with conn.transaction(force_rollback=True):
            conn.execute(
                "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
                (json.dumps(subscriber),),
            )
            visible = conn.execute(
                f"select exists (select 1 from public.{change.table} where id = %s) as visible", (row_id,)
            ).fetchone()
        if visible and visible["visible"]:
            received.append(change)
    return received


def test_changes_reach_only_the_subscribers_allowed_to_see_them(logical_db: str) -> None:
    with psycopg.connect(logical_db, autocommit=True, row_factory=dict_row) as conn:
        # Given orgs A and B with an incident and an alert instance each, and a pgoutput slot on the publication
        a, b = _arrange(conn, "Alpha"), _arrange(conn, "Beta")
        slot = f"observai_rt_{uuid.uuid4().hex[:8]}"
        conn.execute("select pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        try:
            # When A's incident is acknowledged and A's alert fires, B's incident is resolved, and a row of a table
            # outside the publication changes
            conn.execute(
                "update public.incidents set status = 'acknowledged', acknowledged_at = now() where id = %s",
                (a.incident_id,),
            )
            conn.execute(
                "update public.alert_instances set state = 'firing', fired_at = now() where id = %s", (a.instance_id,)
            )
            conn.execute(
                "update public.incidents set status = 'resolved', resolved_at = now() where id = %s", (b.incident_id,)
            )
            conn.execute("update public.alert_rules set name = 'Renamed' where org_id = %s", (a.org_id,))
            messages = conn.execute(
                "select data from pg_logical_slot_get_binary_changes(%s, null, null,"
                " 'proto_version', '1', 'publication_names', 'supabase_realtime')",
                (slot,),
            ).fetchall()
        finally:
            conn.execute("select pg_drop_replication_slot(%s)", (slot,))
        changes = decode([row["data"] for row in messages])

        # Then the slot carries exactly the three changes of the live tables, with full rows (old and new)
        assert [(c.kind, c.table, c.new["id"]) for c in changes] == [
            ("update", "incidents", str(a.incident_id)),
            ("update", "alert_instances", str(a.instance_id)),
            ("update", "incidents", str(b.incident_id)),
        ]
        assert (changes[0].old["status"], changes[0].new["status"]) == ("triggered", "acknowledged")
        assert changes[0].new["title"] == "Alpha: p95 latency above 500 ms"  # every column, not only the changed
        assert changes[1].new["state"] == "firing"

        # And A's member would receive A's two changes only, B's member B's only, an outsider nothing
        assert _received(conn, a.member, changes) == changes[:2]
        assert _received(conn, b.member, changes) == changes[2:]
        outsider = {"sub": str(uuid.uuid4()), "role": "authenticated", "aud": "authenticated"}
        assert _received(conn, outsider, changes) == []
