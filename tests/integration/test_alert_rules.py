"""The alert rules API in-process (AlertsFunction's handler, real Postgres): CRUD round trips for every kind,
versions (kept after a delete), who may read and write, tenant isolation of every route, bad input as 422 with the
field's location, name conflicts and the per-project limit, what disabling, deleting and changing a rule does to its
alerts, and pagination and filters of the lists."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.alerts.labels import alert_labels, fingerprint
from observai.alerts.rules import MAX_RULES_PER_PROJECT
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers.ingest import IngestProject, add_key, make_project, rows
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration


@dataclass
class Tenant:
    project: IngestProject
    reader: IngestProject  # a read key of the project
    owner: User
    member: User
    viewer: User

    @property
    def rules(self) -> str:
        return f"/v1/projects/{self.project.project_id}/alert-rules"

    @property
    def alerts(self) -> str:
        return f"/v1/projects/{self.project.project_id}/alerts"


def _tenant(database_url: str, label: str) -> Tenant:
    project = make_project(scopes=("ingest",), label=label)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        users = {}
        for role in ("owner", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
    return Tenant(project, add_key(project, ("read",)), users["owner"], users["member"], users["viewer"])


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    return _tenant(database_url, "Alerting")


@pytest.fixture
def fresh(database_url: str) -> Tenant:
    """A tenant of its own, for tests that count or list everything of a project."""
    return _tenant(database_url, "Alerting fresh")


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject]:
    """Another organization: its owner, and a read key of its project."""
    other = make_project(scopes=("read",), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    return owner, other


def call(headers: dict[str, str], method: str, path: str, body: Any = None, query: str = "") -> Result:
    return invoke("alerts", method, path, headers=headers, json_body=body, query=query)


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:6]}"


def metric_rule(name: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "name": name or unique("High CPU"),
        "condition": {
            "kind": "metric",
            "metric": "system.cpu.utilization",
            "filters": [{"attribute": "host", "op": "=~", "value": "web-.*"}],
            "aggregation": "p95",
            "group_by": ["host"],
            "window": "5m",
            "op": ">",
            "threshold": 0.9,
        },
        "for": "5m",
        "keep_firing_for": "2m",
        "severity": "critical",
        "labels": {"team": "infra"},
        "annotations": {
            "summary": "CPU on {{ labels.host }} at {{ value | humanize_percentage }}",
            "runbook_url": "https://runbooks.example.test/cpu",
        },
        **fields,
    }


RULES = {
    "metric": metric_rule,
    "log": lambda name=None, **fields: {
        "name": name or unique("Checkout errors"),
        "condition": {
            "kind": "log",
            "query": 'severity:error AND "checkout failed"',
            "group_by": ["service"],
            "window": "10m",
            "op": ">=",
            "threshold": 5,
        },
        "severity": "error",
        "annotations": {"summary": "{{ value | int }} checkout errors in {{ labels.service }}"},
        **fields,
    },
    "absence": lambda name=None, **fields: {
        "name": name or unique("Worker silent"),
        "condition": {"kind": "absence", "target": "service", "service": "worker", "duration": "15m"},
        "interval": "2m",
        "annotations": {"summary": "{{ labels.service | default('worker') }} sent nothing for 15 minutes"},
        **fields,
    },
}


def create(tenant: Tenant, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = call(headers or tenant.member.headers, "POST", tenant.rules, body)
    assert response.status == 201, response.text
    return dict(response.data)


def add_instance(
    database_url: str, tenant: Tenant, rule: dict[str, Any], state: str, series: dict[str, str], value: float
) -> UUID:
    """An alert instance of ``rule`` as the evaluator leaves it (the evaluator is another function's)."""
    labels = alert_labels(rule["name"], rule["severity"], rule["labels"], series)
    now = datetime.now(UTC)
    active = state in ("pending", "firing")
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as db:
        row = db.execute(
            "insert into public.alert_instances (org_id, project_id, rule_id, rule_version, fingerprint, labels,"
            " annotations, state, value, active_at, fired_at, resolved_at, last_true_at, last_eval_at)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
            (
                tenant.project.org_id,
                tenant.project.project_id,
                rule["id"],
                rule["version"],
                fingerprint(labels),
                Jsonb(labels),
                Jsonb({"summary": f"{series} at {value}"}),
                state,
                value,
                now - timedelta(minutes=10) if active else None,
                now - timedelta(minutes=5) if state in ("firing", "resolved") else None,
                now - timedelta(minutes=1) if state == "resolved" else None,
                now if active else None,
                now,
            ),
        ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def instance_states(database_url: str, rule_id: str) -> dict[str, dict[str, Any]]:
    return {
        r["labels"]["host"]: r
        for r in rows(
            database_url,
            "select state, active_at, resolved_at, labels, value from public.alert_instances where rule_id = %s",
            (rule_id,),
        )
    }


def transitions(database_url: str, rule_id: str) -> list[dict[str, Any]]:
    return rows(
        database_url,
        "select labels ->> 'host' as host, from_state, to_state, value, routed_at"
        " from public.alert_transitions where rule_id = %s order by id",
        (rule_id,),
    )


# --- round trips ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RULES))
def test_a_rule_round_trip_for_each_kind(kind: str, tenant: Tenant, database_url: str) -> None:
    # Given a member and a rule of this kind, durations written as text
    body = RULES[kind]()

    # When they create it
    created = create(tenant, body)

    # Then it is saved as version 1, durations in seconds, enabled, due for evaluation now
    assert created["version"] == 1 and created["enabled"] is True
    assert created["name"] == body["name"] and created["condition"]["kind"] == kind
    assert created["annotations"] == body["annotations"]
    assert created["evaluation"]["last_eval_at"] is None and created["evaluation"]["error"] is None
    if kind == "metric":
        assert created["for"] == 300 and created["keep_firing_for"] == 120
        assert created["condition"]["window"] == 300 and created["condition"]["aggregation"] == "p95"
    if kind == "absence":
        assert created["interval"] == 120 and created["condition"]["duration"] == 900
    rule_path = f"{tenant.rules}/{created['id']}"

    # And it reads back the same, alone and in the list (filtered by its kind)
    fetched = call(tenant.viewer.headers, "GET", rule_path)
    assert fetched.status == 200 and fetched.data == created
    listed = call(tenant.viewer.headers, "GET", tenant.rules, query=f"kind={kind}&limit=200")
    assert created["id"] in [r["id"] for r in listed.data]
    assert {r["condition"]["kind"] for r in listed.data} == {kind}

    # When it is replaced (PUT) with another severity, then patched to a longer `for`
    replaced = call(tenant.member.headers, "PUT", rule_path, {**body, "severity": "info", "for": "1m"})
    assert replaced.status == 200, replaced.text
    patched = call(tenant.owner.headers, "PATCH", rule_path, {"for": "1h30m"})
    assert patched.status == 200, patched.text

    # Then each change is a new version
    assert replaced.data["version"] == 2 and replaced.data["severity"] == "info"
    assert patched.data["version"] == 3 and patched.data["for"] == 5400 and patched.data["severity"] == "info"

    # When it is deleted
    deleted = call(tenant.member.headers, "DELETE", rule_path)
    assert deleted.status == 200 and deleted.data == {"id": created["id"], "deleted": True, "resolved_alerts": 0}

    # Then it is gone from reads and lists, but its versions stay, newest first, as they were saved
    assert call(tenant.viewer.headers, "GET", rule_path).status == 404
    listed = call(tenant.viewer.headers, "GET", tenant.rules, query=f"kind={kind}&limit=200")
    assert created["id"] not in [r["id"] for r in listed.data]
    versions = call(tenant.viewer.headers, "GET", f"{rule_path}/versions")
    assert versions.status == 200
    assert [v["version"] for v in versions.data] == [3, 2, 1]
    first = call(tenant.reader.headers, "GET", f"{rule_path}/versions/1")
    assert first.status == 200, first.text
    definition = first.data["definition"]
    assert definition["name"] == body["name"] and definition["condition"] == created["condition"]
    assert definition["severity"] == body.get("severity", "warning") and "enabled" not in definition
    assert versions.data[0]["definition"]["for"] == 5400 and versions.data[1]["definition"]["for"] == 60
    assert versions.data[0]["created_by"] == str(tenant.owner.id)

    # And every write is in the audit trail, by whom it was made
    audit = rows(
        database_url,
        "select action, actor_id, details from public.audit_log where target_id = %s order by id",
        (created["id"],),
    )
    assert [a["action"] for a in audit] == [
        "alert_rule.create",
        "alert_rule.update",
        "alert_rule.update",
        "alert_rule.delete",
    ]
    assert [a["actor_id"] for a in audit] == [str(u.id) for u in (tenant.member, tenant.member, tenant.owner)] + [
        str(tenant.member.id)
    ]
    assert audit[1]["details"]["changed"] == ["for", "severity"] and audit[2]["details"]["version"] == 3


def test_a_change_that_alters_nothing_saves_no_version_and_enabling_is_not_a_version(tenant: Tenant) -> None:
    # Given a rule
    rule = create(tenant, metric_rule())
    path = f"{tenant.rules}/{rule['id']}"

    # When the same definition is PUT again (durations spelled differently) and an empty PATCH is sent
    same = call(tenant.member.headers, "PUT", path, metric_rule(rule["name"], **{"for": 300, "keep_firing_for": "120"}))
    empty = call(tenant.member.headers, "PATCH", path, {"name": None})

    # Then nothing changed: still version 1
    assert same.status == 200 and same.data["version"] == 1
    assert empty.status == 200 and empty.data["version"] == 1

    # When it is disabled, then enabled again
    off = call(tenant.member.headers, "PATCH", path, {"enabled": False})
    on = call(tenant.member.headers, "PATCH", path, {"enabled": True})

    # Then the switch is no new version, and enabling makes it due at once
    assert off.data["enabled"] is False and off.data["version"] == 1
    assert on.data["enabled"] is True and on.data["version"] == 1
    assert on.data["evaluation"]["next_eval_at"] > rule["evaluation"]["next_eval_at"]
    versions = call(tenant.viewer.headers, "GET", f"{path}/versions")
    assert [v["version"] for v in versions.data] == [1]


def test_versions_are_paginated_newest_first(tenant: Tenant) -> None:
    # Given a rule changed four times (versions 1 to 5)
    rule = create(tenant, metric_rule())
    path = f"{tenant.rules}/{rule['id']}"
    for minutes in range(2, 6):
        assert call(tenant.member.headers, "PATCH", path, {"for": f"{minutes}m"}).status == 200

    # When the versions are read two at a time
    seen, cursor = [], None
    while True:
        page = call(
            tenant.viewer.headers, "GET", f"{path}/versions", query="limit=2" + (f"&cursor={cursor}" if cursor else "")
        )
        assert page.status == 200, page.text
        seen.append([v["version"] for v in page.data])
        cursor = page.json()["meta"]["next_cursor"]
        if cursor is None:
            break

    # Then every version comes once, newest first
    assert seen == [[5, 4], [3, 2], [1]]
    # And an unknown version is a 404, a version 0 a 422
    assert call(tenant.viewer.headers, "GET", f"{path}/versions/6").status == 404
    assert call(tenant.viewer.headers, "GET", f"{path}/versions/0").status == 422


# --- who may do what --------------------------------------------------------------------------------------------


def test_viewers_and_read_keys_read_but_cannot_write(tenant: Tenant) -> None:
    # Given a rule made by a member
    rule = create(tenant, metric_rule())
    path = f"{tenant.rules}/{rule['id']}"

    # When a viewer and a read key read everything of it
    for headers in (tenant.viewer.headers, tenant.reader.headers):
        for read in (tenant.rules, path, f"{path}/versions", f"{path}/versions/1", f"{path}/history", tenant.alerts):
            # Then each read is allowed
            assert call(headers, "GET", read).status == 200, read

    # When a viewer writes, then it is refused for their role
    for method, target, body in (
        ("POST", tenant.rules, metric_rule()),
        ("PUT", path, metric_rule()),
        ("PATCH", path, {"enabled": False}),
        ("DELETE", path, None),
    ):
        refused = call(tenant.viewer.headers, method, target, body)
        assert refused.status == 403 and refused.error["code"] == "forbidden", (method, refused.text)
        # And a read key is refused too: it reads, it never changes what wakes someone up
        by_key = call(tenant.reader.headers, method, target, body)
        assert by_key.status == 403 and by_key.error["code"] == "scope_missing", (method, by_key.text)

    # And the rule is untouched
    assert call(tenant.member.headers, "GET", path).data == rule


def test_another_organization_gets_404_on_every_route(
    tenant: Tenant, stranger: tuple[User, IngestProject], database_url: str
) -> None:
    # Given a rule of the tenant, with an alert and a history, and an outsider: another organization's owner
    # and its project's read key
    rule = create(tenant, metric_rule())
    add_instance(database_url, tenant, rule, "firing", {"host": "web-1"}, 0.97)
    path = f"{tenant.rules}/{rule['id']}"
    outsider, other_key = stranger
    routes = [
        ("GET", tenant.rules, None),
        ("POST", tenant.rules, metric_rule()),
        ("GET", path, None),
        ("PUT", path, metric_rule("pwned")),
        ("PATCH", path, {"enabled": False}),
        ("DELETE", path, None),
        ("GET", f"{path}/versions", None),
        ("GET", f"{path}/versions/1", None),
        ("GET", f"{path}/history", None),
        ("GET", tenant.alerts, None),
        ("POST", f"{tenant.rules}/preview", metric_rule()),
    ]
    before = rows(database_url, "select * from public.alert_rules where project_id = %s", (tenant.project.project_id,))
    for method, target, body in routes:
        for by_key, headers in ((False, outsider.headers), (True, other_key.headers)):
            # When the outsider calls the route on the tenant's real ids
            response = call(headers, method, target, body)
            # Then it is a 404: the project's existence is not revealed
            assert response.status == 404, (method, target, by_key, response.text)
            assert rule["name"] not in response.text

    # And an outsider's own project cannot reach the tenant's rule by its id either
    other_path = f"/v1/projects/{other_key.project_id}/alert-rules/{rule['id']}"
    for suffix in ("", "/versions", "/versions/1", "/history"):
        assert call(outsider.headers, "GET", other_path + suffix).status == 404
    assert call(outsider.headers, "PATCH", other_path, {"enabled": False}).status == 404
    assert call(outsider.headers, "DELETE", other_path).status == 404
    other_alerts = call(outsider.headers, "GET", f"/v1/projects/{other_key.project_id}/alerts", query="state=firing")
    assert other_alerts.status == 200 and other_alerts.data == []

    # And nothing of the tenant changed
    after = rows(database_url, "select * from public.alert_rules where project_id = %s", (tenant.project.project_id,))
    assert after == before
    assert instance_states(database_url, rule["id"])["web-1"]["state"] == "firing"


# --- bad input --------------------------------------------------------------------------------------------------


def _with_condition(**changes: Any) -> dict[str, Any]:
    body = metric_rule()
    body["condition"] = {**body["condition"], **changes}
    return body


BAD_RULES = {
    "a loop in a template": (
        metric_rule(annotations={"summary": "{% for x in labels %}{{ x }}{% endfor %}"}),
        ["body", "annotations", "summary"],
        "'for' is not allowed",
    ),
    "an unknown filter": (
        metric_rule(annotations={"summary": "{{ value | attr('__class__') }}"}),
        ["body", "annotations", "summary"],
        "unknown filter 'attr'",
    ),
    "a template syntax error": (
        metric_rule(annotations={"summary": "CPU {{ value "}),
        ["body", "annotations", "summary"],
        "line 1",
    ),
    "a regex Python refuses": (
        _with_condition(filters=[{"attribute": "host", "op": "=~", "value": "web-("}]),
        ["body", "condition", "metric", "filters", "0", "value"],
        "not a valid regular expression",
    ),
    "a regex Postgres refuses": (
        _with_condition(filters=[{"attribute": "host", "op": "!~", "value": "(?P<name>web)"}]),
        ["body", "condition", "metric", "filters", "0", "value"],
        "regex dialect",
    ),
    "a window not whole minutes": (
        _with_condition(window="90s"),
        ["body", "condition", "metric", "window"],
        "whole minutes",
    ),
    "an unknown kind": (_with_condition(kind="anomalous"), ["body", "condition"], "kind"),
    "a threshold past bigint": (
        _with_condition(threshold=10**30),
        ["body", "condition", "threshold"],
        "must be between",
    ),
    "a threshold that is not a number": (
        _with_condition(threshold="90"),
        ["body", "condition", "metric", "threshold", "float"],
        "valid number",
    ),
    "a reserved label": (metric_rule(labels={"severity": "low"}), ["body", "labels"], "set by the rule itself"),
    "a bad label name": (metric_rule(labels={"bad-name": "x"}), ["body", "labels", "bad-name", "[key]"], ""),
    "a bad duration": (metric_rule(**{"for": "5 minutes"}), ["body", "for"], "duration"),
    "an interval under a minute": (metric_rule(interval="30s"), ["body", "interval"], "60"),
    "a log query that does not parse": (
        RULES["log"](condition={"kind": "log", "query": "severity:(error", "threshold": 1}),
        ["body", "condition", "log", "query"],
        "at character",
    ),
    "an absence of no service": (
        RULES["absence"](condition={"kind": "absence", "target": "service"}),
        ["body", "condition", "absence", "service"],
        "names the service",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_bad_rules_are_422_naming_the_field(case: str, tenant: Tenant) -> None:
    body, loc, reason = BAD_RULES[case]
    # Given a rule to patch later
    rule = create(tenant, metric_rule())

    # When the bad rule is created, and PUT over the existing one
    for method, path in (("POST", tenant.rules), ("PUT", f"{tenant.rules}/{rule['id']}")):
        response = call(tenant.member.headers, method, path, body)

        # Then it is a 422 naming the field, with the reason
        assert response.status == 422, response.text
        assert response.error["code"] == "validation_error"
        locs = [d["loc"] for d in response.error["details"]]
        assert loc in locs, locs
        message = next(d["message"] for d in response.error["details"] if d["loc"] == loc)
        assert reason in message, message

    # And the rule is as it was
    assert call(tenant.member.headers, "GET", f"{tenant.rules}/{rule['id']}").data["version"] == 1


def test_bad_patches_are_422_naming_the_field(tenant: Tenant) -> None:
    rule = create(tenant, metric_rule())
    path = f"{tenant.rules}/{rule['id']}"
    for body, loc in (
        ({"annotations": {"summary": "{% macro x() %}{% endmacro %}"}}, ["body", "annotations", "summary"]),
        (
            {"condition": {"kind": "metric", "metric": "m", "op": ">"}},
            ["body", "condition", "metric", "threshold"],
        ),
        ({"labels": {"alertname": "other"}}, ["body", "labels"]),
        ({"unknown": 1}, ["body", "unknown"]),
        ({"severity": "fatal"}, ["body", "severity"]),
    ):
        response = call(tenant.member.headers, "PATCH", path, body)
        assert response.status == 422, response.text
        assert loc in [d["loc"] for d in response.error["details"]], response.text
    # A regex the database refuses, arriving by PATCH: the same 422 as on create
    refused = call(
        tenant.member.headers,
        "PATCH",
        path,
        {"condition": {**rule["condition"], "filters": [{"attribute": "h", "op": "=~", "value": "(?P<x>a)"}]}},
    )
    assert refused.status == 422
    assert refused.error["details"][0]["loc"] == ["body", "condition", "metric", "filters", "0", "value"]
    assert call(tenant.member.headers, "GET", path).data["version"] == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_threshold_never_reaches_a_rule(literal: str, tenant: Tenant) -> None:
    # Given a rule whose threshold is written as a non-finite JSON number (not JSON, though some encoders write it)
    body = json.dumps(metric_rule()).replace('"threshold": 0.9', f'"threshold": {literal}')
    assert literal in body

    # When it is posted
    response = invoke(
        "alerts",
        "POST",
        tenant.rules,
        headers={**tenant.member.headers, "content-type": "application/json"},
        body=body,
    )

    # Then it is refused as malformed JSON, at the number's position
    assert response.status == 400, response.text
    assert response.error["code"] == "malformed_json"
    assert response.error["details"]["position"] >= body.index(literal) - 1


def test_bad_query_parameters_are_4xx(tenant: Tenant) -> None:
    for path, query, status in (
        (tenant.rules, "cursor=not-a-cursor", 400),
        (tenant.rules, "severity=fatal", 422),
        (tenant.rules, "limit=0", 422),
        (tenant.alerts, "state=burning", 422),
        (tenant.alerts, "rule_id=nope", 422),
        (tenant.alerts, "match[]=x", 400),
        (tenant.alerts, "cursor=" + "A" * 40, 400),
    ):
        response = call(tenant.viewer.headers, "GET", path, query=query)
        assert response.status == status, (query, response.text)
    assert call(tenant.viewer.headers, "GET", f"{tenant.rules}/not-a-uuid").status == 422


# --- conflicts and limits ---------------------------------------------------------------------------------------


def test_a_taken_name_is_a_409_naming_the_field_and_is_free_again_after_a_delete(tenant: Tenant) -> None:
    # Given two rules
    first = create(tenant, metric_rule())
    second = create(tenant, RULES["log"]())

    # When another rule is created with the first's name, or the second renamed to it
    again = call(tenant.member.headers, "POST", tenant.rules, RULES["absence"](first["name"]))
    renamed = call(tenant.member.headers, "PATCH", f"{tenant.rules}/{second['id']}", {"name": first["name"]})

    # Then both are 409 conflict naming the field
    for response in (again, renamed):
        assert response.status == 409, response.text
        assert response.error["code"] == "conflict"
        assert response.error["details"] == {"loc": ["body", "name"], "name": first["name"]}

    # When the first is deleted, then its name can be used again
    assert call(tenant.member.headers, "DELETE", f"{tenant.rules}/{first['id']}").status == 200
    reused = create(tenant, RULES["absence"](first["name"]))
    assert reused["id"] != first["id"] and reused["version"] == 1


def test_a_project_has_at_most_500_rules(fresh: Tenant, database_url: str) -> None:
    # Given a project with 499 rules (arranged directly) and one deleted rule
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(
            "insert into public.alert_rules (org_id, project_id, name, kind, spec)"
            ' select %s, %s, \'bulk \' || n, \'absence\', \'{"kind": "absence", "target": "service",'
            ' "service": "x", "duration": 600}\' from generate_series(1, %s) n',
            (fresh.project.org_id, fresh.project.project_id, MAX_RULES_PER_PROJECT - 1),
        )
    doomed = create(fresh, metric_rule())
    assert call(fresh.member.headers, "DELETE", f"{fresh.rules}/{doomed['id']}").status == 200

    # When the 500th is created, then it is accepted
    create(fresh, metric_rule())

    # When a 501st is created, then it is refused with a clear code
    refused = call(fresh.member.headers, "POST", fresh.rules, metric_rule())
    assert refused.status == 409, refused.text
    assert refused.error["code"] == "rule_limit_reached"
    assert refused.error["details"] == {"rules": 500, "limit": 500}


# --- what a change does to the rule's alerts ----------------------------------------------------------------------


def test_disabling_a_rule_resolves_its_firing_alerts_and_ends_its_pending_ones(
    tenant: Tenant, database_url: str
) -> None:
    # Given a rule with a firing, a pending and an already resolved alert
    rule = create(tenant, metric_rule())
    add_instance(database_url, tenant, rule, "firing", {"host": "web-1"}, 0.97)
    add_instance(database_url, tenant, rule, "pending", {"host": "web-2"}, 0.93)
    add_instance(database_url, tenant, rule, "resolved", {"host": "web-3"}, 0.5)

    # When a member disables it
    off = call(tenant.member.headers, "PATCH", f"{tenant.rules}/{rule['id']}", {"enabled": False})
    assert off.status == 200 and off.data["enabled"] is False

    # Then the firing alert is resolved and the pending one inactive, at once, and an evaluation in flight is
    # fenced off (it would write firing alerts of a disabled rule)
    (fence,) = rows(database_url, "select eval_seq from public.alert_rules where id = %s", (rule["id"],))
    assert fence["eval_seq"] == 1
    states = instance_states(database_url, rule["id"])
    assert {host: s["state"] for host, s in states.items()} == {
        "web-1": "resolved",
        "web-2": "inactive",
        "web-3": "resolved",
    }
    assert states["web-1"]["resolved_at"] is not None and states["web-1"]["active_at"] is None

    # And each change is a transition with the alert's last value, not routed yet (the router notifies it)
    ended = sorted(transitions(database_url, rule["id"]), key=lambda t: t["host"])
    assert ended == [
        {"host": "web-1", "from_state": "firing", "to_state": "resolved", "value": 0.97, "routed_at": None},
        {"host": "web-2", "from_state": "pending", "to_state": "inactive", "value": 0.93, "routed_at": None},
    ]

    # And the history shows them, and the audit says what the switch ended
    history = call(tenant.viewer.headers, "GET", f"{tenant.rules}/{rule['id']}/history")
    assert sorted((t["from_state"], t["to_state"]) for t in history.data) == [
        ("firing", "resolved"),
        ("pending", "inactive"),
    ]
    (audit,) = rows(
        database_url,
        "select details from public.audit_log where target_id = %s and action = 'alert_rule.update'",
        (rule["id"],),
    )
    assert audit["details"]["enabled"] is False
    assert audit["details"]["ended_alerts"] == {"resolved": 1, "inactive": 1}


def test_deleting_a_rule_resolves_its_alerts_and_keeps_what_the_router_needs(tenant: Tenant, database_url: str) -> None:
    # Given a rule with a firing alert, and another rule
    rule = create(tenant, metric_rule())
    keeper = create(tenant, metric_rule())
    instance_id = add_instance(database_url, tenant, rule, "firing", {"host": "web-9"}, 0.99)
    assert [a["id"] for a in call(tenant.viewer.headers, "GET", tenant.alerts, query=f"rule_id={rule['id']}").data] == [
        str(instance_id)
    ]

    # When it is deleted
    deleted = call(tenant.member.headers, "DELETE", f"{tenant.rules}/{rule['id']}")

    # Then the firing alert resolved, with a transition the router will notify
    assert deleted.status == 200 and deleted.data["resolved_alerts"] == 1
    assert instance_states(database_url, rule["id"])["web-9"]["state"] == "resolved"
    (transition,) = transitions(database_url, rule["id"])
    assert transition["to_state"] == "resolved" and transition["routed_at"] is None

    # And the rule row stays (soft-deleted, disabled: the evaluator never claims it), with its instance
    (row,) = rows(database_url, "select enabled, deleted_at from public.alert_rules where id = %s", (rule["id"],))
    assert row["enabled"] is False and row["deleted_at"] is not None

    # And readers see it nowhere, not even through the table's policy (as PostgREST would read it)
    with psycopg.connect(database_url, autocommit=True) as db, db.transaction():
        db.execute("set local role authenticated")
        db.execute("select set_config('request.jwt.claims', %s, true)", (f'{{"sub": "{tenant.viewer.id}"}}',))
        visible = db.execute("select id from public.alert_rules where project_id = %s", (tenant.project.project_id,))
        visible_ids = {str(r[0]) for r in visible.fetchall()}
    assert keeper["id"] in visible_ids and rule["id"] not in visible_ids

    # And the API shows no trace of it but its history and versions
    assert call(tenant.viewer.headers, "GET", tenant.alerts, query=f"rule_id={rule['id']}&state=resolved").data == []
    history = call(tenant.viewer.headers, "GET", f"{tenant.rules}/{rule['id']}/history")
    assert [t["to_state"] for t in history.data] == ["resolved"]
    for method, body in (("GET", None), ("PATCH", {"enabled": True}), ("PUT", metric_rule()), ("DELETE", None)):
        assert call(tenant.member.headers, method, f"{tenant.rules}/{rule['id']}", body).status == 404


def test_changing_a_condition_keeps_the_alerts_state_and_reschedules_the_rule(
    tenant: Tenant, database_url: str
) -> None:
    # Given a rule with a firing alert, whose next evaluation is a minute away
    rule = create(tenant, metric_rule())
    add_instance(database_url, tenant, rule, "firing", {"host": "web-1"}, 0.97)
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(
            "update public.alert_rules set next_eval_at = now() + interval '1 minute', eval_seq = 7 where id = %s",
            (rule["id"],),
        )

    # When its threshold changes
    condition = {**rule["condition"], "threshold": 0.95}
    changed = call(tenant.member.headers, "PATCH", f"{tenant.rules}/{rule['id']}", {"condition": condition})

    # Then it is version 2, due now, and an evaluation in flight is fenced off
    assert changed.status == 200 and changed.data["version"] == 2
    assert changed.data["condition"]["threshold"] == 0.95
    (row,) = rows(
        database_url,
        "select next_eval_at <= now() as due, eval_seq from public.alert_rules where id = %s",
        (rule["id"],),
    )
    assert row["due"] and row["eval_seq"] == 8

    # And the alert keeps its state (the evaluator moves it from there), with no transition
    assert instance_states(database_url, rule["id"])["web-1"]["state"] == "firing"
    assert transitions(database_url, rule["id"]) == []


# --- lists ------------------------------------------------------------------------------------------------------


def test_rules_are_listed_by_name_with_filters_and_pages(fresh: Tenant) -> None:
    # Given five rules of several kinds, severities and states
    made = [
        create(fresh, metric_rule("api latency", severity="warning")),
        create(fresh, metric_rule("API errors 100%_", severity="critical")),
        create(fresh, RULES["log"]("checkout errors", severity="error")),
        create(fresh, RULES["absence"]("worker silent", enabled=False)),
        create(fresh, RULES["log"]("zeta logs", severity="info")),
    ]
    assert made[3]["enabled"] is False

    def names(query: str) -> list[str]:
        response = call(fresh.reader.headers, "GET", fresh.rules, query=query)
        assert response.status == 200, response.text
        return [r["name"] for r in response.data]

    # When listed two at a time, then every rule comes once, by name
    seen, cursor = [], None
    while True:
        page = call(fresh.viewer.headers, "GET", fresh.rules, query="limit=2" + (f"&cursor={cursor}" if cursor else ""))
        seen.append([r["name"] for r in page.data])
        cursor = page.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [["API errors 100%_", "api latency"], ["checkout errors", "worker silent"], ["zeta logs"]]

    # And each filter selects what it says
    assert names("kind=log") == ["checkout errors", "zeta logs"]
    assert names("enabled=false") == ["worker silent"]
    assert names("severity=critical") == ["API errors 100%_"]
    assert names("name=API") == ["API errors 100%_", "api latency"]
    assert names("name=100%25_") == ["API errors 100%_"]  # % and _ are text, not wildcards
    assert names("name=0_") == []
    assert names("kind=log&severity=info") == ["zeta logs"]


def test_alerts_are_listed_with_filters_and_pages(fresh: Tenant, database_url: str) -> None:
    # Given two rules with alerts in every state, on two services
    cpu = create(fresh, metric_rule("cpu", severity="critical"))
    mem = create(fresh, metric_rule("memory", severity="warning"))
    ids = {}
    for rule, state, host in (
        (cpu, "firing", "web-1"),
        (cpu, "pending", "web-2"),
        (cpu, "resolved", "web-3"),
        (cpu, "inactive", "web-4"),
        (mem, "firing", "web-1"),
        (mem, "firing", "web-5"),
    ):
        ids[(rule["name"], host)] = str(add_instance(database_url, fresh, rule, state, {"host": host}, 0.5))

    def listed(query: str = "") -> set[tuple[str, str]]:
        response = call(fresh.reader.headers, "GET", fresh.alerts, query=query)
        assert response.status == 200, response.text
        return {(a["rule_name"], a["labels"]["host"]) for a in response.data}

    # Then by default the active alerts are listed (pending and firing), with what an alert shows
    assert listed() == {("cpu", "web-1"), ("cpu", "web-2"), ("memory", "web-1"), ("memory", "web-5")}
    first = call(fresh.reader.headers, "GET", fresh.alerts, query="state=pending").data[0]
    assert first["state"] == "pending" and first["value"] == 0.5 and first["rule_id"] == cpu["id"]
    assert first["rule_version"] == 1 and first["labels"]["alertname"] == "cpu" and first["active_at"]
    assert first["labels"]["severity"] == "critical" and first["labels"]["team"] == "infra"
    assert set(first) >= {"annotations", "fired_at", "resolved_at", "fingerprint", "last_eval_at"}

    # And each filter selects what it says
    assert listed("state=resolved,inactive") == {("cpu", "web-3"), ("cpu", "web-4")}
    assert listed("state=resolved&state=inactive") == {("cpu", "web-3"), ("cpu", "web-4")}
    assert listed(f"rule_id={mem['id']}") == {("memory", "web-1"), ("memory", "web-5")}
    assert listed("severity=critical") == {("cpu", "web-1"), ("cpu", "web-2")}
    assert listed("match[host]=web-1") == {("cpu", "web-1"), ("memory", "web-1")}
    assert listed("match[host]=web-1&match[alertname]=memory") == {("memory", "web-1")}
    assert listed("match[host]=nowhere") == set()

    # And pages of two cover every alert once
    seen: list[str] = []
    cursor = None
    while True:
        query = "state=inactive,pending,firing,resolved&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = call(fresh.viewer.headers, "GET", fresh.alerts, query=query)
        assert page.status == 200 and len(page.data) <= 2
        seen.extend(a["id"] for a in page.data)
        cursor = page.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids.values())


def test_an_alert_shows_its_rules_last_successful_evaluation(fresh: Tenant, database_url: str) -> None:
    # Given a resolved and a firing alert of one rule, whose rule was evaluated since the resolved row was written
    rule = create(fresh, metric_rule("disk"))
    resolved = add_instance(database_url, fresh, rule, "resolved", {"host": "db-1"}, 0.1)
    add_instance(database_url, fresh, rule, "firing", {"host": "db-2"}, 0.9)
    evaluated = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=3)
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute("update public.alert_rules set last_eval_at = %s where id = %s", (evaluated, rule["id"]))
        written = db.execute("select last_eval_at from public.alert_instances where id = %s", (resolved,)).fetchone()

    def last_eval(host: str) -> datetime:
        listed = call(fresh.reader.headers, "GET", fresh.alerts, query="state=resolved,firing").data
        (alert,) = [a for a in listed if a["labels"]["host"] == host]
        return datetime.fromisoformat(alert["last_eval_at"])

    # When its alerts are listed, then each shows the rule's last evaluation (every alert of the rule was looked at)
    assert last_eval("db-1") == last_eval("db-2") == evaluated

    # And when that evaluation failed, the alerts were left as they were: each shows when it was last evaluated
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute("update public.alert_rules set last_error = 'statement timeout', last_error_at = %s"
                   " where id = %s", (evaluated, rule["id"]))  # fmt: skip
    assert written is not None and last_eval("db-1") == written[0]


def test_history_is_newest_first_and_paginated(tenant: Tenant, database_url: str) -> None:
    # Given a rule whose alert went pending, firing, then resolved (transitions as the evaluator writes them)
    rule = create(tenant, metric_rule())
    instance_id = add_instance(database_url, tenant, rule, "resolved", {"host": "web-1"}, 0.2)
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as db:
        for offset, (from_state, to_state, value) in enumerate(
            (("inactive", "pending", 0.91), ("pending", "firing", 0.95), ("firing", "resolved", 0.2))
        ):
            db.execute(
                "insert into public.alert_transitions (org_id, project_id, rule_id, rule_version, instance_id,"
                " fingerprint, labels, from_state, to_state, value, at)"
                " values (%s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s)",
                (
                    tenant.project.org_id,
                    tenant.project.project_id,
                    rule["id"],
                    instance_id,
                    "ab" * 16,
                    Jsonb({"host": "web-1"}),
                    from_state,
                    to_state,
                    value,
                    now + timedelta(minutes=offset),
                ),
            )

    # When it is read one transition at a time
    seen, cursor = [], None
    while True:
        query = "limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = call(tenant.viewer.headers, "GET", f"{tenant.rules}/{rule['id']}/history", query=query)
        assert page.status == 200, page.text
        seen.extend((t["from_state"], t["to_state"], t["value"]) for t in page.data)
        cursor = page.json()["meta"]["next_cursor"]
        if cursor is None:
            break

    # Then newest first, each once
    assert seen == [("firing", "resolved", 0.2), ("pending", "firing", 0.95), ("inactive", "pending", 0.91)]
    # And an unknown rule has no history: 404
    assert call(tenant.viewer.headers, "GET", f"{tenant.rules}/{uuid.uuid4()}/history").status == 404


def test_a_preview_is_for_readers_saves_nothing_and_refuses_bad_rules(tenant: Tenant, database_url: str) -> None:
    count = "select count(*) as n from public.alert_rules where project_id = %s"
    before = rows(database_url, count, (tenant.project.project_id,))[0]["n"]
    # When a viewer and a read key preview a rule over a metric the project never sent
    for headers in (tenant.viewer.headers, tenant.reader.headers):
        preview = call(headers, "POST", f"{tenant.rules}/preview", metric_rule())
        # Then it answers with no instances and no error, evaluated on a whole minute
        assert preview.status == 200, preview.text
        assert preview.data["instances"] == [] and preview.data["error"] is None
        assert preview.data["eval_at"].endswith(":00Z") or preview.data["eval_at"].endswith(":00+00:00")
    # And nothing was saved
    assert rows(database_url, count, (tenant.project.project_id,))[0]["n"] == before
    # When the rule is invalid, it is a 422 naming the field, as for a save
    bad = metric_rule(annotations={"summary": "{% for x in y %}{% endfor %}"})
    refused = call(tenant.viewer.headers, "POST", f"{tenant.rules}/preview", bad)
    assert refused.status == 422
    assert refused.error["details"][0]["loc"] == ["body", "annotations", "summary"]


def test_an_admin_key_of_the_project_manages_rules_as_code(tenant: Tenant, database_url: str) -> None:
    # Given an API key of the project with the admin scope (a deployment pipeline keeping its rules as code)
    admin = add_key(tenant.project, ("admin",))
    # When it creates, changes and deletes a rule
    created = call(admin.headers, "POST", tenant.rules, metric_rule())
    assert created.status == 201, created.text
    path = f"{tenant.rules}/{created.data['id']}"
    changed = call(admin.headers, "PATCH", path, {"severity": "warning"})
    deleted = call(admin.headers, "DELETE", path)
    # Then each is done, the rule has no person as its author, and the audit log names the key
    assert (changed.status, changed.data["version"], deleted.status) == (200, 2, 200)
    assert deleted.data["deleted"] is True
    audit = rows(
        database_url,
        "select actor_type, action from public.audit_log where target_id = %s order by created_at",
        (created.data["id"],),
    )
    assert [(a["actor_type"], a["action"]) for a in audit] == [
        ("api_key", "alert_rule.create"),
        ("api_key", "alert_rule.update"),
        ("api_key", "alert_rule.delete"),
    ]
