"""The ``anomaly`` rule kind through the real evaluation (observai.alerts.evaluation.run_evaluation, real Postgres,
an injected clock) with anomaly rows inserted as the job and the correlation leave them: per group (the default)
one alert per correlated group, however many series are anomalous in it, resolving when the group closes; per
series one alert per open anomaly; a detector, label matchers and min_score narrow it; a rule reads its own
project's anomalies only; and bad conditions are 422s naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

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
