"""The ``anomaly`` rule kind through the real evaluation (observai.alerts.evaluation.run_evaluation, real Postgres,
an injected clock) with anomaly rows inserted as the job and the correlation leave them: per group (the default)
one alert per correlated group, however many series are anomalous in it, resolving when the group closes; per
series one alert per open anomaly; a detector, label matchers and min_score narrow it; a rule reads its own
project's anomalies only; and bad conditions are 422s naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from observai.alerts.evaluation import rls_claims, run_evaluation
from observai.alerts.kinds import get_kind
from observai.alerts.rule_models import RuleIn
from observai.anomalies.correlation import correlate
from observai.db.connection import tenant_transaction, transaction
from pydantic import ValidationError

from tests.helpers.alert_eval import add_rule
from tests.helpers.anomaly_rows import add_detector, add_event, add_series, close_event
from tests.helpers.ingest import IngestProject, make_project

pytestmark = pytest.mark.integration

T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)


def correlated(project: IngestProject, now: datetime) -> None:
    with transaction() as cur:
        correlate(cur, project.project_id, now)


def instances(db: psycopg.Connection, rule_id: UUID) -> list[dict[str, Any]]:
    rows = db.execute("select labels, state, value from public.alert_instances where rule_id = %s", (rule_id,))
    return sorted(rows.fetchall(), key=lambda r: (r["labels"].get("service", ""), r["labels"].get("host", "")))


def notified(db: psycopg.Connection, rule_id: UUID) -> list[tuple[str, str]]:
    rows = db.execute(
        "select from_state, to_state from public.alert_transitions where rule_id = %s order by id", (rule_id,)
    ).fetchall()
    return [(r["from_state"], r["to_state"]) for r in rows]


@pytest.fixture
def checkout(db: psycopg.Connection) -> dict[str, Any]:
    """Checkout anomalous on three series of two detectors within four minutes (one group), search on one."""
    project = make_project(("read",), label="Anomaly kind")
    latency = add_detector(db, project, "latency p95", group_by=["service", "host"])
    errors = add_detector(db, project, "error rate", metric="errors", group_by=["service", "host"])
    events = {}
    for name, detector, labels, minute, score in [
        ("a", latency, {"service": "checkout", "host": "a"}, 0, 0.7),
        ("b", latency, {"service": "checkout", "host": "b"}, 2, 0.95),
        ("c", errors, {"service": "checkout", "host": "a"}, 4, 0.8),
        ("search", latency, {"service": "search", "host": "z"}, 1, 0.4),
    ]:
        series = add_series(db, project, detector, labels)
        events[name] = add_event(db, project, detector, series, labels, T + timedelta(minutes=minute), peak_score=score)
    correlated(project, T + timedelta(minutes=5))
    groups = {
        r["shared_labels"].get("service"): r["id"]
        for r in db.execute(
            "select id, shared_labels from public.anomaly_groups where project_id = %s", (project.project_id,)
        ).fetchall()
    }
    return {"project": project, "latency": latency, "errors": errors, "events": events, "groups": groups}


def test_a_group_rule_notifies_once_per_group_and_resolves_when_it_closes(
    db: psycopg.Connection, checkout: dict[str, Any]
) -> None:
    # Given a rule on any detector's anomalies, per group (the default)
    project = checkout["project"]
    rule = add_rule(project, {"kind": "anomaly"}, name="Anomalous", next_eval_at=T + timedelta(minutes=5))

    # When evaluated
    report = run_evaluation(now=T + timedelta(minutes=5), project_ids=[project.project_id])

    # Then two alerts fire: checkout's group (three anomalous series: one alert, its peak score the value) and
    # search's; their labels are the groups' shared labels and ids
    assert (report.rules_evaluated, report.errors) == (1, 0)
    alerts = instances(db, rule)
    assert [(a["labels"].get("service"), a["state"], a["value"]) for a in alerts] == [
        ("checkout", "firing", 0.95),
        ("search", "firing", 0.4),
    ]
    assert alerts[0]["labels"] == {
        "alertname": "Anomalous",
        "severity": "warning",
        "service": "checkout",
        "anomaly_group_id": str(checkout["groups"]["checkout"]),
    }

    # When a fourth checkout series turns anomalous, joining the group, and the rule runs again
    series = add_series(db, project, checkout["errors"], {"service": "checkout", "host": "b"})
    add_event(
        db,
        project,
        checkout["errors"],
        series,
        {"service": "checkout", "host": "b"},
        T + timedelta(minutes=6),
        peak_score=0.99,
    )
    correlated(project, T + timedelta(minutes=7))
    run_evaluation(now=T + timedelta(minutes=7), project_ids=[project.project_id])

    # Then nothing new is notified: the group's alert keeps firing, its value the new peak
    assert notified(db, rule) == [("inactive", "firing"), ("inactive", "firing")]
    assert [a["value"] for a in instances(db, rule)] == [0.99, 0.4]

    # When every checkout anomaly closes and the correlation closes the group
    for name in ("a", "b", "c"):
        close_event(db, checkout["events"][name], T + timedelta(minutes=8))
    close_event(
        db,
        db.execute("select id from public.anomaly_events where series_id = %s", (series,)).fetchone()["id"],
        T + timedelta(minutes=8),
    )
    correlated(project, T + timedelta(minutes=9))
    run_evaluation(now=T + timedelta(minutes=9), project_ids=[project.project_id])

    # Then checkout's alert resolves; search's keeps firing
    assert [(a["labels"].get("service"), a["state"]) for a in instances(db, rule)] == [
        ("checkout", "resolved"),
        ("search", "firing"),
    ]


def test_a_group_whose_shared_labels_narrow_stays_one_alert(db: psycopg.Connection) -> None:
    # Given one anomaly on checkout's host a, correlated alone (its group shares service and host), and a group rule
    project = make_project(("read",), label="Anomaly narrowing")
    latency = add_detector(db, project, "latency p95", group_by=["service", "host"])
    first = {"service": "checkout", "host": "a"}
    add_event(db, project, latency, add_series(db, project, latency, first), first, T, peak_score=0.7)
    correlated(project, T + timedelta(minutes=1))
    rule = add_rule(project, {"kind": "anomaly"}, name="Anomalous", next_eval_at=T + timedelta(minutes=1))
    run_evaluation(now=T + timedelta(minutes=1), project_ids=[project.project_id])
    (opened,) = instances(db, rule)
    assert (opened["labels"]["host"], opened["state"]) == ("a", "firing")

    # When host b of checkout turns anomalous and joins the group: its shared labels narrow to service alone
    second = {"service": "checkout", "host": "b"}
    add_event(db, project, latency, add_series(db, project, latency, second), second, T + timedelta(minutes=2))
    correlated(project, T + timedelta(minutes=3))
    (group,) = db.execute(
        "select shared_labels, opening_labels from public.anomaly_groups where project_id = %s", (project.project_id,)
    ).fetchall()
    assert group["shared_labels"] == {"service": "checkout"} and group["opening_labels"] == first
    run_evaluation(now=T + timedelta(minutes=3), project_ids=[project.project_id])

    # Then it is still the one alert of the one group: not resolved, no second alert, nothing notified again
    assert [(a["labels"]["host"], a["state"]) for a in instances(db, rule)] == [("a", "firing")]
    assert notified(db, rule) == [("inactive", "firing")]


def test_per_series_detector_matchers_and_min_score_narrow_the_rule(
    db: psycopg.Connection, checkout: dict[str, Any]
) -> None:
    project = checkout["project"]
    at = T + timedelta(minutes=5)
    per_series = add_rule(project, {"kind": "anomaly", "per": "series"}, next_eval_at=at)
    latency_only = add_rule(
        project,
        {
            "kind": "anomaly",
            "per": "series",
            "detector_id": str(checkout["latency"]),
            "matchers": {"service": "checkout"},
        },
        next_eval_at=at,
    )
    strong = add_rule(project, {"kind": "anomaly", "min_score": 0.9}, next_eval_at=at)
    checkout_group = add_rule(
        project,
        {"kind": "anomaly", "matchers": {"service": "checkout"}, "detector_id": str(checkout["errors"])},
        next_eval_at=at,
    )

    report = run_evaluation(now=at, project_ids=[project.project_id])

    assert (report.rules_evaluated, report.errors) == (4, 0)
    # per series: one alert per open anomaly, labelled with its series' labels and detector
    assert sorted(
        (a["labels"]["host"], a["labels"]["anomaly_detector_id"], a["state"]) for a in instances(db, per_series)
    ) == sorted(
        [
            ("a", str(checkout["latency"]), "firing"),
            ("b", str(checkout["latency"]), "firing"),
            ("a", str(checkout["errors"]), "firing"),
            ("z", str(checkout["latency"]), "firing"),
        ]
    )
    # one detector, service=checkout: hosts a and b of latency
    assert sorted(a["labels"]["host"] for a in instances(db, latency_only)) == ["a", "b"]
    # min_score 0.9: checkout's group (peak 0.95) fires; search's (0.4) stays inactive (no row)
    assert [(a["labels"]["service"], a["state"]) for a in instances(db, strong)] == [("checkout", "firing")]
    # the error rate detector's part of checkout's group: its value is that detector's peak (0.8)
    assert [(a["labels"]["service"], a["value"]) for a in instances(db, checkout_group)] == [("checkout", 0.8)]


def test_a_rule_reads_its_own_projects_anomalies_only(db: psycopg.Connection, checkout: dict[str, Any]) -> None:
    # Given another project with no anomaly, evaluating an anomaly condition under its own claims, asking for the
    # checkout project's rows by id
    other = make_project(("read",), label="Other")
    condition = RuleIn.model_validate({"name": "r", "condition": {"kind": "anomaly", "per": "series"}}).condition
    kind = get_kind("anomaly")
    with tenant_transaction(rls_claims(other.org_id, other.project_id, UUID(int=1))) as cur:
        seen = kind.observe(cur, checkout["project"].project_id, condition, T)
    # Then it sees nothing
    assert seen == []


@pytest.mark.parametrize(
    ("condition", "loc"),
    [
        ({"kind": "anomaly", "min_score": 1.5}, ("condition", "anomaly", "min_score")),
        ({"kind": "anomaly", "per": "host"}, ("condition", "anomaly", "per")),
        ({"kind": "anomaly", "detector_id": "latency"}, ("condition", "anomaly", "detector_id")),
        ({"kind": "anomaly", "threshold": 3}, ("condition", "anomaly", "threshold")),
    ],
)
def test_bad_anomaly_conditions_are_refused_naming_the_field(condition: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        RuleIn.model_validate({"name": "r", "condition": condition})
    assert [tuple(map(str, e["loc"]))[: len(loc)] for e in caught.value.errors()] == [loc]


def test_the_rules_api_takes_an_anomaly_rule_naming_one_of_the_projects_detectors_only(
    db: psycopg.Connection,
) -> None:
    from tests.helpers.inprocess import invoke

    # Given a project with a detector, and another project's detector
    project = make_project(("admin", "read"), label="Anomaly rules API")
    mine = add_detector(db, project, "latency")
    theirs = add_detector(db, make_project(label="Theirs"), "latency")
    rules = f"/v1/projects/{project.project_id}/alert-rules"

    def post(condition: dict[str, Any]) -> Any:
        body = {"name": f"anomalous {condition.get('detector_id')}", "condition": condition}
        return invoke("alerts", "POST", rules, headers=project.headers, json_body=body)

    # When a rule names the project's detector, or any detector: created, the defaults filled in
    created = post({"kind": "anomaly", "detector_id": str(mine), "min_score": 0.7})
    assert created.status == 201, created.text
    assert created.data["condition"] == {
        "kind": "anomaly",
        "detector_id": str(mine),
        "matchers": {},
        "min_score": 0.7,
        "per": "group",
    }
    assert post({"kind": "anomaly"}).status == 201

    # When it names another project's detector, or one that does not exist: 422 at the field
    for unknown in (theirs, uuid4()):
        refused = post({"kind": "anomaly", "detector_id": str(unknown)})
        assert refused.status == 422, refused.text
        assert refused.error["details"][0]["loc"] == ["body", "condition", "anomaly", "detector_id"]

    # And a rule whose detector was deleted since still takes changes to anything but its condition
    db.execute("update public.anomaly_detectors set deleted_at = now() where id = %s", (mine,))
    patched = invoke(
        "alerts", "PATCH", f"{rules}/{created.data['id']}", headers=project.headers, json_body={"severity": "critical"}
    )
    assert patched.status == 200, patched.text
