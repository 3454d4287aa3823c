"""observai.oncall.resolve.on_call: who an escalation step targeting a schedule pages, read from the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from observai.db.jsonb import jsonb_dumps
from observai.oncall.resolve import on_call

from tests.helpers.users import add_membership, make_user


def _org(db) -> uuid.UUID:
    org = uuid.uuid4()
    db.execute(
        "insert into public.organizations (id, name, slug) values (%s, 'oncall', %s)", (org, f"oc-{org.hex[:12]}")
    )
    return org


def _schedule(db, org: uuid.UUID, layers: list[dict]) -> uuid.UUID:
    row = db.execute(
        "insert into public.oncall_schedules (org_id, name, time_zone, layers) values (%s, 'primary', 'Europe/Berlin',"
        " %s::jsonb) returning id",
        (org, jsonb_dumps(layers)),
    ).fetchone()
    return row["id"]


def test_on_call_follows_the_rotation_overrides_and_deletion(db):
    # Given a daily 09:00 Berlin rotation of two members and an override for a third
    org = _org(db)
    a, b, c = (make_user(db).id for _ in range(3))
    for user in (a, b, c):
        add_membership(db, org, user, "member")
    schedule = _schedule(
        db,
        org,
        [
            {
                "name": "primary",
                "users": [str(a), str(b)],
                "rotation": {"unit": "days", "length": 1},
                "start": "2026-03-02T09:00:00+01:00",
                "handoff_time": "09:00",
                "time_zone": None,
                "restrictions": [],
            }
        ],
    )
    db.execute(
        "insert into public.oncall_overrides (org_id, schedule_id, user_id, start_at, end_at)"
        " values (%s, %s, %s, '2026-03-04T12:00:00Z', '2026-03-04T13:00:00Z')",
        (org, schedule, c),
    )
    with db.cursor() as cur:
        # Then the rotation answers, the override wins over it, and before the start nobody is on call
        assert on_call(cur, schedule, datetime(2026, 3, 2, 8, 30, tzinfo=UTC)) == a
        assert on_call(cur, schedule, datetime(2026, 3, 3, 8, 30, tzinfo=UTC)) == b
        assert on_call(cur, schedule, datetime(2026, 3, 3, 8, 30)) == b  # naive: UTC
        assert on_call(cur, schedule, datetime(2026, 3, 4, 12, 30, tzinfo=UTC)) == c
        assert on_call(cur, schedule, datetime(2026, 3, 4, 13, 0, tzinfo=UTC)) == a
        assert on_call(cur, schedule, datetime(2026, 3, 1, tzinfo=UTC)) is None
        # And someone who left the organization is not on call (nor is anyone below them here)
        db.execute("delete from public.memberships where org_id = %s and user_id = %s", (org, c))
        assert on_call(cur, schedule, datetime(2026, 3, 4, 12, 30, tzinfo=UTC)) == a
        db.execute("delete from public.memberships where org_id = %s and user_id = %s", (org, a))
        assert on_call(cur, schedule, datetime(2026, 3, 4, 12, 30, tzinfo=UTC)) is None
        assert on_call(cur, schedule, datetime(2026, 3, 3, 8, 30, tzinfo=UTC)) == b
        # And an unknown schedule, or a deleted one, has nobody
        assert on_call(cur, uuid.uuid4(), datetime(2026, 3, 3, tzinfo=UTC)) is None
        db.execute("update public.oncall_schedules set deleted_at = now() where id = %s", (schedule,))
        assert on_call(cur, schedule, datetime(2026, 3, 3, 8, 30, tzinfo=UTC)) is None
