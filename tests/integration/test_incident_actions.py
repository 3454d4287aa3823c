"""Acknowledge and resolve from a notification, in-process (IncidentActionsFunction's handler with API Gateway
events, the real database): signed link pages (a GET never acts, the POST does, as whom), Slack's buttons (the
signature, the member mapping, refusals, tenant isolation), and no 500 on garbage."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import psycopg
import pytest
from observai.config import get_settings
from observai.notify.links import make_token
from observai.notify.slack_actions import signature
from psycopg.rows import dict_row

from tests.helpers.incidents import arrange_alert, arrange_group, arrange_rule, flush
from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user
from tests.helpers.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

SLACK_SECRET = "test-slack-signing-secret-0123456789"
LINK_PATH = "/v1/actions/incidents/"
SLACK_PATH = "/v1/integrations/slack/actions"


class Tenant:
    def __init__(self, db: psycopg.Connection[Any], label: str) -> None:
        self.project: IngestProject = make_project(("read",), label=label)
        self.users: dict[str, User] = {}
        for role in ("owner", "member", "viewer"):
            self.users[role] = make_user(db)
            add_membership(db, self.project.org_id, self.users[role].id, role)
        self.rule = arrange_rule(db, self.project.org_id, self.project.project_id)
        self.slack_ids = {role: f"U{uuid.uuid4().hex[:10].upper()}" for role in ("member", "viewer")}
        for role, slack_id in self.slack_ids.items():
            db.execute(
                "insert into public.member_notification_settings (org_id, user_id, slack_user_id) values (%s, %s, %s)",
                (self.project.org_id, self.users[role].id, slack_id),
            )

    @property
    def project_id(self) -> UUID:
        return UUID(str(self.project.project_id))


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture(scope="module")
def tenant(conn: psycopg.Connection[Any]) -> Tenant:
    return Tenant(conn, "Acts")


@pytest.fixture(scope="module")
def stranger(conn: psycopg.Connection[Any]) -> Tenant:
    return Tenant(conn, "Other")


@pytest.fixture
def slack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SLACK_SECRET)
    monkeypatch.setenv("NOTIFY_ALLOW_LOOPBACK", "true")


def open_incident(db: psycopg.Connection[Any], t: Tenant, title: str | None = None) -> dict[str, Any]:
    at = datetime.now(UTC).replace(microsecond=0)
    alert = arrange_alert(db, t.rule, at=at, n=uuid.uuid4().hex[:6])
    group_id = arrange_group(db, t.project.org_id, t.project.project_id)
    incident = flush(group_id, firing=[alert], now=at)
    if title is not None:
        db.execute("update public.incidents set title = %s where id = %s", (title, incident["id"]))
    return dict(incident)


def state(db: psycopg.Connection[Any], incident_id: Any) -> dict[str, Any]:
    row = db.execute(
        "select i.status, i.acknowledged_by, i.resolved_by,"
        " (select count(*) from public.incident_events e where e.incident_id = i.id) as events"
        " from public.incidents i where i.id = %s",
        (incident_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


def last_event(db: psycopg.Connection[Any], incident_id: Any) -> dict[str, Any]:
    row = db.execute(
        "select kind, actor_type, actor_id, details from public.incident_events where incident_id = %s"
        " order by id desc limit 1",
        (incident_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


def audit_rows(db: psycopg.Connection[Any], incident_id: Any) -> list[dict[str, Any]]:
    return list(
        db.execute(
            "select action, actor_type, actor_id, details from public.audit_log where target_id = %s order by id",
            (str(incident_id),),
        ).fetchall()
    )


def token(
    action: str, t: Tenant, incident: dict[str, Any], user: User | None = None, at: datetime | None = None
) -> str:
    return make_token(
        action,  # type: ignore[arg-type]
        UUID(str(incident["id"])),
        t.project_id,
        at or datetime.now(UTC),
        get_settings(),
        user.id if user else None,
    )


def link(method: str, tok: str, body: str | None = None, headers: dict[str, str] | None = None) -> Result:
    hdrs = dict(headers or {})
    if method == "POST":
        hdrs.setdefault("content-type", "application/x-www-form-urlencoded")
    return invoke("incident_actions", method, LINK_PATH + tok, headers=hdrs, body=body if method == "POST" else None)


def html_ok(result: Result, status: int = 200) -> str:
    assert result.status == status, result.text
    assert result.header("content-type") == "text/html; charset=utf-8"
    assert result.header("cache-control") == "no-store"
    assert result.header("referrer-policy") == "no-referrer"
    csp = result.header("content-security-policy") or ""
    assert "default-src 'none'" in csp and "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    return result.text


# --- links: the GET page ----------------------------------------------------------------------------------------


def test_get_shows_the_incident_and_a_confirm_form_and_changes_nothing(
    conn: psycopg.Connection[Any], tenant: Tenant
) -> None:
    # Given a triggered incident and its acknowledge link
    incident = open_incident(conn, tenant)
    before = state(conn, incident["id"])
    tok = token("acknowledge", tenant, incident)

    # When the link is fetched, twice (a mail scanner, then the person)
    for _ in range(2):
        page = html_ok(link("GET", tok))
        # Then the page shows the incident and a form posting back to the same URL
        assert f"#{incident['number']}" in page and "triggered" in page
        assert '<form method="post">' in page and "Acknowledge incident" in page

    # And nothing changed: same status, no timeline event
    assert state(conn, incident["id"]) == before
    assert before["status"] == "triggered"


def test_post_acknowledges_as_the_link_then_says_already_acknowledged(
    conn: psycopg.Connection[Any], tenant: Tenant
) -> None:
    # Given a triggered incident and a link that names nobody
    incident = open_incident(conn, tenant)
    tok = token("acknowledge", tenant, incident)

    # When the confirm button is pressed
    page = html_ok(link("POST", tok, body=""))

    # Then the incident is acknowledged, by the actor "link", via link, in the timeline and the audit log
    assert "now acknowledged" in page
    assert state(conn, incident["id"])["status"] == "acknowledged"
    event = last_event(conn, incident["id"])
    assert event["kind"] == "acknowledged" and event["actor_type"] == "link" and event["actor_id"] is None
    assert event["details"]["via"] == "link"
    audit = [row for row in audit_rows(conn, incident["id"]) if row["action"] == "incident.acknowledged"]
    assert len(audit) == 1 and audit[0]["actor_type"] == "link" and audit[0]["actor_id"] is None
    assert audit[0]["details"]["via"] == "link"

    # And a second press says it is already acknowledged, and records nothing more
    events = state(conn, incident["id"])["events"]
    again = html_ok(link("POST", tok, body=""))
    assert "already acknowledged" in again
    assert state(conn, incident["id"])["events"] == events
    # And the GET now shows no button
    assert "<form" not in html_ok(link("GET", tok))


def test_post_acts_as_the_member_the_link_was_sent_to(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a resolve link sent to a member
    incident = open_incident(conn, tenant)
    member = tenant.users["member"]
    tok = token("resolve", tenant, incident, member)

    # When they confirm
    page = html_ok(link("POST", tok, body="", headers={"user-agent": "Mail/1.0"}))

    # Then the incident is resolved by them, via link
    assert "now resolved" in page
    after = state(conn, incident["id"])
    assert after["status"] == "resolved" and after["resolved_by"] == member.id
    event = last_event(conn, incident["id"])
    assert event["kind"] == "resolved" and event["actor_type"] == "user" and event["actor_id"] == member.id
    assert event["details"]["via"] == "link"
    audit = [row for row in audit_rows(conn, incident["id"]) if row["action"] == "incident.resolved"]
    assert audit[-1]["actor_type"] == "user" and audit[-1]["actor_id"] == str(member.id)

    # And its acknowledge link, and this one again, now say it is already resolved (200, not an error)
    assert "already resolved" in html_ok(link("POST", token("acknowledge", tenant, incident), body=""))
    assert "already resolved" in html_ok(link("POST", tok, body=""))


def test_a_removed_members_link_acts_as_nobody(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given a link sent to a member who has left the organization since
    incident = open_incident(conn, tenant)
    leaver = make_user(conn)
    add_membership(conn, tenant.project.org_id, leaver.id, "member")
    tok = token("acknowledge", tenant, incident, leaver)
    conn.execute(
        "delete from public.memberships where org_id = %s and user_id = %s", (tenant.project.org_id, leaver.id)
    )
    before = state(conn, incident["id"])

    # When the link is opened and confirmed
    # Then both pages refuse (403), and nothing changes
    assert "<form" not in html_ok(link("GET", tok), 403)
    assert "no longer a member" in html_ok(link("POST", tok, body=""), 403)
    assert state(conn, incident["id"]) == before


def test_a_viewers_link_is_refused(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    incident = open_incident(conn, tenant)
    before = state(conn, incident["id"])
    page = html_ok(link("POST", token("acknowledge", tenant, incident, tenant.users["viewer"]), body=""), 403)
    assert "viewer" in page
    assert state(conn, incident["id"]) == before


def test_expired_tampered_unknown_and_misbound_links(
    conn: psycopg.Connection[Any], tenant: Tenant, stranger: Tenant
) -> None:
    incident = open_incident(conn, tenant)
    before = state(conn, incident["id"])
    ttl = get_settings().action_link_ttl_s
    expired = token("acknowledge", tenant, incident, at=datetime.now(UTC) - timedelta(seconds=ttl + 1))
    good = token("acknowledge", tenant, incident)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    # A token for this incident under another project (binding): no such incident there.
    misbound = make_token(
        "acknowledge", UUID(str(incident["id"])), stranger.project_id, datetime.now(UTC), get_settings()
    )
    # A token for an incident that does not exist
    unknown = make_token("acknowledge", uuid.uuid4(), tenant.project_id, datetime.now(UTC), get_settings())
    for method in ("GET", "POST"):
        assert "expired" in html_ok(link(method, expired, body=""), 410)
        assert "not valid" in html_ok(link(method, tampered, body=""), 404)
        assert "not found" in html_ok(link(method, misbound, body=""), 404)
        assert "not found" in html_ok(link(method, unknown, body=""), 404)
        for garbage in ("x", "a.b", "%00", "..", "é", "A" * 600):
            assert link(method, garbage, body="").status in (404, 422)
    assert state(conn, incident["id"]) == before


def test_links_unavailable_without_a_secret_outside_local_stages(
    conn: psycopg.Connection[Any], tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident = open_incident(conn, tenant)
    tok = token("acknowledge", tenant, incident)
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.delenv("ACTION_LINK_SECRET", raising=False)
    result = link("POST", tok, body="")
    html_ok(result, 503)
    assert result.header("retry-after")
    assert state(conn, incident["id"])["status"] == "triggered"


def test_title_is_escaped_and_pages_never_echo_tokens(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given an incident whose title holds markup
    incident = open_incident(conn, tenant, title='<script>alert("pwned")</script><img src=x onerror=alert(1)>')
    tok = token("acknowledge", tenant, incident)
    other = token("resolve", tenant, incident)
    for result in (link("GET", tok), link("POST", tok, body="")):
        page = html_ok(result)
        # Then it is shown as text
        assert "<script" not in page and "<img" not in page
        assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
        # And no token (this one, or another link's) is in the page
        assert tok not in page and other not in page and tok.split(".")[1] not in page


# --- Slack buttons ----------------------------------------------------------------------------------------------


def slack_payload(
    t: Tenant, incident: dict[str, Any], slack_user: str, action_id: str = "incident_acknowledge", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": slack_user, "username": "someone", "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM", "domain": "acme"},
        "api_app_id": "A0APP",
        "trigger_id": "123.456.abc",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "incident_actions",
                "value": f"{t.project_id}/{incident['id']}",
                "action_ts": str(time.time()),
            }
        ],
        **extra,
    }


def slack(
    payload: Any,
    *,
    secret: str = SLACK_SECRET,
    ts: int | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Result:
    raw = body if body is not None else urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(ts if ts is not None else int(time.time()))
    hdrs = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature(secret, stamp, raw),
    }
    hdrs.update(headers or {})
    return invoke("incident_actions", "POST", SLACK_PATH, headers=hdrs, body=raw)


def ephemeral(result: Result) -> str:
    assert result.status == 200, result.text
    answer = result.json()
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert SLACK_SECRET not in result.text
    return str(answer["text"])


@pytest.mark.usefixtures("slack_env")
def test_slack_button_acknowledges_as_the_mapped_member_and_tells_the_channel(
    conn: psycopg.Connection[Any], tenant: Tenant
) -> None:
    # Given a triggered incident, a Slack member mapped to a member of its organization, and a response_url
    incident = open_incident(conn, tenant, title="Checkout <latency> & errors")
    member = tenant.users["member"]
    with WebhookReceiver() as receiver:
        payload = slack_payload(tenant, incident, tenant.slack_ids["member"], response_url=receiver.url("/resp/1"))

        # When they press Acknowledge
        text = ephemeral(slack(payload))

        # Then the incident is acknowledged by that member, via slack
        assert f"You acknowledged incident #{incident['number']}" in text
        assert "&lt;latency&gt; &amp; errors" in text
        after = state(conn, incident["id"])
        assert after["status"] == "acknowledged" and after["acknowledged_by"] == member.id
        event = last_event(conn, incident["id"])
        assert (event["actor_type"], event["actor_id"], event["details"]["via"]) == ("user", member.id, "slack")

        # And the channel was told through the response_url
        assert len(receiver.requests) == 1
        update = json.loads(receiver.requests[0].body)
        assert update["response_type"] == "in_channel" and update["replace_original"] is False
        assert f"<@{tenant.slack_ids['member']}>" in update["text"] and "acknowledged" in update["text"]

        # And pressing it again says it is already acknowledged, and tells nobody else
        assert "already acknowledged" in ephemeral(slack(payload))
        assert len(receiver.requests) == 1

    # And Resolve resolves it, as the member
    resolved = ephemeral(slack(slack_payload(tenant, incident, tenant.slack_ids["member"], "incident_resolve")))
    assert "You resolved" in resolved
    assert state(conn, incident["id"])["resolved_by"] == member.id
    assert "already resolved" in ephemeral(slack(slack_payload(tenant, incident, tenant.slack_ids["member"])))


@pytest.mark.usefixtures("slack_env")
def test_slack_bad_signature_or_stale_timestamp_is_401_and_nothing_happens(
    conn: psycopg.Connection[Any], tenant: Tenant
) -> None:
    incident = open_incident(conn, tenant)
    before = state(conn, incident["id"])
    payload = slack_payload(tenant, incident, tenant.slack_ids["member"])
    for result in (
        slack(payload, secret="not-the-secret"),
        slack(payload, ts=int(time.time()) - 301),
        slack(payload, ts=int(time.time()) + 301),
        slack(payload, headers={"x-slack-signature": ""}),
        slack(payload, headers={"x-slack-request-timestamp": "soon"}),
    ):
        assert result.status == 401, result.text
        assert result.json()["error"]["code"] == "invalid_signature"
        assert SLACK_SECRET not in result.text
    assert state(conn, incident["id"]) == before


@pytest.mark.usefixtures("slack_env")
def test_slack_unmapped_user_viewer_and_another_orgs_incident_are_refused_politely(
    conn: psycopg.Connection[Any], tenant: Tenant, stranger: Tenant
) -> None:
    incident = open_incident(conn, tenant)
    foreign = open_incident(conn, stranger)
    before, foreign_before = state(conn, incident["id"]), state(conn, foreign["id"])

    # An unmapped Slack user
    assert "Sorry" in ephemeral(slack(slack_payload(tenant, incident, "UNOBODY123")))
    # A mapped viewer
    assert "viewer" in ephemeral(slack(slack_payload(tenant, incident, tenant.slack_ids["viewer"])))
    # A mapped member of this org pressing a button that names another org's incident (tenant isolation): the same
    # refusal as for an incident that does not exist
    crossed = ephemeral(slack(slack_payload(stranger, foreign, tenant.slack_ids["member"])))
    missing = dict(foreign, id=uuid.uuid4())
    assert crossed == ephemeral(slack(slack_payload(stranger, missing, tenant.slack_ids["member"])))
    # This org's member naming this org's project with the other org's incident id
    mixed = slack_payload(tenant, foreign, tenant.slack_ids["member"])
    assert "Sorry" in ephemeral(slack(mixed))

    assert state(conn, incident["id"]) == before
    assert state(conn, foreign["id"]) == foreign_before


@pytest.mark.usefixtures("slack_env")
def test_a_member_who_pinned_their_slack_workspace_is_not_acted_for_from_another(
    conn: psycopg.Connection[Any], tenant: Tenant
) -> None:
    # Given a member whose Slack member id is pinned to workspace T0TEAM (Slack ids are unique per workspace only)
    incident = open_incident(conn, tenant)
    before = state(conn, incident["id"])
    member = tenant.users["member"]
    conn.execute(
        "update public.member_notification_settings set slack_team_id = 'T0TEAM' where org_id = %s and user_id = %s",
        (tenant.project.org_id, member.id),
    )
    try:
        # When the same member id presses the button in another workspace (or a payload without a team)
        elsewhere = slack_payload(tenant, incident, tenant.slack_ids["member"], team={"id": "T0OTHER"})
        no_team = slack_payload(tenant, incident, tenant.slack_ids["member"], team=None)
        # Then it is refused as an unmapped user, and the incident is unchanged
        for payload in (elsewhere, no_team):
            assert "not linked to a member" in ephemeral(slack(payload))
        assert state(conn, incident["id"]) == before
        # And from its own workspace the button acts as the member
        assert "You acknowledged" in ephemeral(slack(slack_payload(tenant, incident, tenant.slack_ids["member"])))
        assert state(conn, incident["id"])["acknowledged_by"] == member.id
    finally:
        conn.execute(
            "update public.member_notification_settings set slack_team_id = null where org_id = %s and user_id = %s",
            (tenant.project.org_id, member.id),
        )


@pytest.mark.usefixtures("slack_env")
def test_slack_unknown_actions_and_bad_bodies(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    incident = open_incident(conn, tenant)
    member = tenant.slack_ids["member"]
    # unknown action, unknown payload type, a value that names no incident: polite
    assert "does not know" in ephemeral(slack(slack_payload(tenant, incident, member, "incident_delete")))
    assert "only understands" in ephemeral(slack({"type": "view_submission"}))
    bad_value = slack_payload(tenant, incident, member)
    bad_value["actions"][0]["value"] = "nope"
    assert "Sorry" in ephemeral(slack(bad_value))
    # a link button's click (Slack reports it too): an empty 200
    link_click = slack_payload(tenant, incident, member, "open_ack_link")
    link_click["actions"][0]["url"] = "https://example.test/x"
    result = slack(link_click)
    assert result.status == 200 and result.json() == {}
    # signed, but not a form with one JSON payload: 400
    for body in (b"payload=not-json", b"nothing", json.dumps({"type": "block_actions"}).encode(), b"payload=%5B1%5D"):
        result = slack(None, body=body)
        assert result.status == 400, (body, result.text)
    assert state(conn, incident["id"])["status"] == "triggered"


def test_slack_without_a_signing_secret_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    result = slack({"type": "block_actions"})
    assert result.status == 503 and result.header("retry-after")


@pytest.mark.usefixtures("slack_env")
def test_no_500_on_garbage(conn: psycopg.Connection[Any], tenant: Tenant) -> None:
    # Given random bodies and headers thrown at the three routes
    rng = random.Random(1414)
    incident = open_incident(conn, tenant)
    tok = token("acknowledge", tenant, incident)
    before = state(conn, incident["id"])
    alphabet = "abcAZ09-_.%/=&+{}[]\"'<>\\\x00é\u2028 "
    for _ in range(120):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
        headers = {
            rng.choice(["content-type", "x-slack-signature", "x-slack-request-timestamp", "x-other"]): "".join(
                rng.choice(alphabet) for _ in range(rng.randrange(0, 40))
            )
        }
        mangled = tok[: rng.randrange(len(tok))] + rng.choice(alphabet) + tok[rng.randrange(len(tok)) :]
        for method, path in (("POST", SLACK_PATH), ("POST", LINK_PATH + mangled), ("GET", LINK_PATH + mangled)):
            result = invoke(
                "incident_actions", method, path, headers=headers, body=body.encode() if method == "POST" else None
            )
            assert result.status < 500, (method, path, result.text)
        # A correctly signed garbage body too
        signed = slack(None, body=body.encode("utf-8", errors="replace"))
        assert signed.status in (200, 400), signed.text
    assert state(conn, incident["id"]) == before


@pytest.mark.usefixtures("slack_env")
def test_logs_never_hold_tokens_secrets_or_response_urls(
    conn: psycopg.Connection[Any], tenant: Tenant, captured_logs: Any
) -> None:
    # Given a link press and a Slack press (with a response_url that cannot be reached)
    incident = open_incident(conn, tenant)
    tok = token("acknowledge", tenant, incident, tenant.users["member"])
    html_ok(link("GET", tok))
    html_ok(link("POST", tok, body=""))
    html_ok(link("GET", tok[:-4] + "AAAA"), 404)
    response_url = "http://127.0.0.1:9/secret-response-path/T0/123/abcdef"
    payload = slack_payload(tenant, incident, tenant.slack_ids["member"], "incident_resolve", response_url=response_url)
    assert "You resolved" in ephemeral(slack(payload))
    assert slack(payload, secret="wrong").status == 401

    # Then the logs name what happened, but hold no token, no secret and no response_url path
    logs = captured_logs.getvalue()
    assert "incident action taken" in logs and "slack response_url failed" in logs
    for secret in (tok, tok.split(".")[1], SLACK_SECRET, "secret-response-path", signature(SLACK_SECRET, "1", b"")):
        assert secret not in logs


def test_the_link_actor_may_only_acknowledge_or_resolve_its_own_projects_incidents(
    conn: psycopg.Connection[Any], tenant: Tenant, stranger: Tenant
) -> None:
    from observai.auth.principal import Principal
    from observai.errors import NotFound
    from observai.incidents import service
    from observai.incidents.models import AssignIn, CommentIn, SnoozeIn

    # Given a link actor bound to the other tenant's project, and one bound to this project
    incident = open_incident(conn, tenant)
    incident_id = UUID(str(incident["id"]))
    elsewhere = Principal(kind="link", org_id=stranger.project.org_id, project_id=stranger.project_id)
    here = Principal(kind="link", org_id=tenant.project.org_id, project_id=tenant.project_id)
    before = state(conn, incident_id)
    # Then the other project's link actor cannot act here (not found: existence not revealed)
    with pytest.raises(NotFound):
        service.acknowledge(elsewhere, tenant.project_id, incident_id)
    with pytest.raises(NotFound):
        service.resolve(elsewhere, tenant.project_id, incident_id, None)
    # And even this project's link actor can do nothing but acknowledge and resolve
    with pytest.raises(NotFound):
        service.snooze(here, tenant.project_id, incident_id, SnoozeIn.model_validate({"duration": "10m"}))
    with pytest.raises(NotFound):
        service.assign(here, tenant.project_id, incident_id, AssignIn(user_id=None))
    with pytest.raises(NotFound):
        service.add_comment(here, tenant.project_id, incident_id, CommentIn(body="hi"))
    with pytest.raises(NotFound):
        service.get_incident(here, tenant.project_id, incident_id)
    assert state(conn, incident_id) == before
