"""Scheduled housekeeping (idempotent, overlap-safe, bounded) and the bootstrap command."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from observai import housekeeping
from observai.housekeeping import run_housekeeping
from observai.tenancy.bootstrap import bootstrap_organization, create_demo_workspace, main


def _bucket(db: psycopg.Connection, key: str, age: str) -> None:
    db.execute(
        "insert into public.rate_limit_buckets (key, tokens, updated_at) values (%s, 1, now() - %s::interval)",
        (key, age),
    )


def test_housekeeping_prunes_idle_buckets_only(db: psycopg.Connection) -> None:
    # Given an idle bucket and a fresh one
    idle, fresh = f"user:{uuid.uuid4()}", f"user:{uuid.uuid4()}"
    _bucket(db, idle, "2 hours")
    _bucket(db, fresh, "1 minute")
    # When housekeeping runs twice
    first = run_housekeeping()
    second = run_housekeeping()
    # Then the idle one is gone, the fresh one stays, and the second run is a no-op
    keys = {r["key"] for r in db.execute("select key from public.rate_limit_buckets").fetchall()}
    assert idle not in keys and fresh in keys
    assert first.ran and first.buckets_deleted >= 1
    assert second.ran and second.buckets_deleted == 0


def test_long_deleted_alert_rules_go_once_their_transitions_are_routed(db: psycopg.Connection) -> None:
    from tests.helpers.ingest import make_project

    # Given three deleted rules: one long ago with everything routed, one long ago with a transition the router has
    # not taken yet, one deleted yesterday; each with an alert instance
    project = make_project(("read",), label="Housekeeping rules")
    ids = {}
    for label, age, routed in (("old", "31 days", True), ("unrouted", "31 days", False), ("recent", "1 day", True)):
        rule = db.execute(
            "insert into public.alert_rules (org_id, project_id, name, kind, spec, enabled, deleted_at)"
            " values (%s, %s, %s, 'metric', '{}', false, now() - %s::interval) returning id",
            (project.org_id, project.project_id, f"{label} {uuid.uuid4().hex[:6]}", age),
        ).fetchone()["id"]
        instance = db.execute(
            "insert into public.alert_instances (org_id, project_id, rule_id, rule_version, fingerprint, labels,"
            " state, last_eval_at) values (%s, %s, %s, 1, %s, '{}', 'resolved', now()) returning id",
            (project.org_id, project.project_id, rule, uuid.uuid4().hex),
        ).fetchone()["id"]
        db.execute(
            "insert into public.alert_transitions (org_id, project_id, rule_id, rule_version, instance_id,"
            " fingerprint, labels, from_state, to_state, at, routed_at)"
            " values (%s, %s, %s, 1, %s, 'f', '{}', 'firing', 'resolved', now(), case when %s then now() end)",
            (project.org_id, project.project_id, rule, instance, routed),
        )
        ids[label] = rule
    # When housekeeping runs
    report = run_housekeeping()
    # Then only the long-deleted, fully routed rule is gone, with its instances
    left = {r["id"] for r in db.execute("select id from public.alert_rules where project_id = %s",
                                        (project.project_id,)).fetchall()}  # fmt: skip
    assert left == {ids["unrouted"], ids["recent"]} and report.rules_deleted >= 1
    gone = db.execute("select count(*) as n from public.alert_instances where rule_id = %s", (ids["old"],))
    assert gone.fetchone()["n"] == 0


def test_overlapping_run_skips(db: psycopg.Connection, database_url: str) -> None:
    # Given another run holds the housekeeping lock
    idle = f"user:{uuid.uuid4()}"
    _bucket(db, idle, "3 hours")
    with psycopg.connect(database_url) as other:
        other.execute("select pg_advisory_xact_lock(%s)", (housekeeping.LOCK_KEY,))
        # When a second run starts
        report = run_housekeeping()
        # Then it does nothing rather than racing
        assert report.ran is False
        assert db.execute("select 1 from public.rate_limit_buckets where key = %s", (idle,)).fetchone()
    assert run_housekeeping().ran


def test_housekeeping_is_bounded_and_resumes(db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given more idle buckets than one run may delete
    monkeypatch.setattr(housekeeping, "BATCH_SIZE", 5)
    monkeypatch.setattr(housekeeping, "MAX_BATCHES", 2)
    db.execute(
        "insert into public.rate_limit_buckets (key, tokens, updated_at)"
        " select 'user:' || gen_random_uuid(), 1, now() - interval '5 hours' from generate_series(1, 25)"
    )
    # When it runs, it stops at its bound and says more is pending; later runs finish the work
    first = run_housekeeping()
    assert first.buckets_deleted == 10 and first.more_pending
    total = first.buckets_deleted
    while True:
        report = run_housekeeping()
        total += report.buckets_deleted
        if not report.more_pending:
            break
    assert total >= 25
    left = db.execute(
        "select count(*) as n from public.rate_limit_buckets where updated_at < now() - interval '1 hour'"
    ).fetchone()
    assert left["n"] == 0


def test_bootstrap_creates_org_and_owner_once(db: psycopg.Connection, capsys: pytest.CaptureFixture) -> None:
    # Given a fresh e-mail
    email = f"owner-{uuid.uuid4().hex[:8]}@acme.test"
    name = f"Acme {uuid.uuid4().hex[:6]}"
    # When the bootstrap command runs
    assert main(["--org-name", name, "--owner-email", email]) == 0
    printed = json.loads(capsys.readouterr().out)
    # Then the org exists with the user as owner, and the action is audited as the system
    row = db.execute(
        "select m.role, u.email from public.memberships m join auth.users u on u.id = m.user_id where m.org_id = %s",
        (printed["org_id"],),
    ).fetchone()
    assert row == {"role": "owner", "email": email}
    audit = db.execute("select actor_type, action from public.audit_log where org_id = %s", (printed["org_id"],))
    assert {"actor_type": "system", "action": "org.bootstrap"} in audit.fetchall()
    # And running it again changes nothing
    again = bootstrap_organization(name, email)
    assert again.created is False and str(again.org_id) == printed["org_id"]


def test_demo_workspace_has_a_working_key(db: psycopg.Connection) -> None:
    from observai.auth.api_keys import verify_api_key
    from observai.config import get_settings

    demo = create_demo_workspace(f"Demo {uuid.uuid4().hex[:6]}", f"dev-{uuid.uuid4().hex[:6]}@observai.local")
    record = verify_api_key(demo.api_key, get_settings())
    assert record.project_id == demo.project_id and record.scopes == {"ingest", "read"}
