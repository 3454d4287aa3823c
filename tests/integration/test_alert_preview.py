"""preview_rule (the layer function behind POST .../alert-rules/preview): evaluates a rule now and saves nothing;
viewers and read keys may preview, another tenant gets 404, a key without the read scope 403; a failing query is
shown, not raised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.alerts.preview import preview_rule
from observai.alerts.rule_models import RuleIn
from observai.auth.principal import Principal
from observai.errors import Forbidden, NotFound
from observai.metrics.rollup import run_aggregation

from tests.helpers.alert_eval import add_points, add_series
from tests.helpers.ingest import IngestProject, make_project
from tests.helpers.users import add_membership, make_user

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20, seconds=-17)
EVAL_AT = NOW.replace(second=0)


def rule(**condition: Any) -> RuleIn:
    return RuleIn.model_validate(
        {
            "name": "High CPU",
            "severity": "critical",
            "labels": {"team": "infra"},
            "annotations": {"summary": "{{ labels.host }}: {{ value }}"},
            "condition": {"kind": "metric", "metric": "cpu", "aggregation": "max", "group_by": ["host"],
                          "window": "5m", "op": ">", "threshold": 50, **condition},
        }
    )  # fmt: skip


def user(db: psycopg.Connection, org_id: Any, role: str) -> Principal:
    person = make_user(db)
    add_membership(db, org_id, person.id, role)
    return Principal(kind="user", user_id=person.id, email=person.email)


def key(project: IngestProject, *scopes: str) -> Principal:
    return Principal(
        kind="api_key", key_id=project.key_id, org_id=project.org_id, project_id=project.project_id,
        scopes=frozenset(scopes),
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(database_url: str) -> IngestProject:
    project = make_project(("read",), label="Preview")
    for host, value in (("a", 90.0), ("b", 10.0)):
        sid = add_series(project, "cpu", {"host": host})
        add_points(project, sid, [(EVAL_AT - timedelta(minutes=2), value)])
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            break
    return project


def test_a_viewer_previews_the_instances_a_rule_would_produce(db: psycopg.Connection, project: IngestProject) -> None:
    # Given a viewer of the project
    viewer = user(db, project.org_id, "viewer")

    # When they preview a rule
    preview = preview_rule(viewer, project.project_id, rule(), NOW)

    # Then each series is shown with its full alert labels, value, whether it holds, the state it would enter and
    # its annotations; evaluated at now floored to the minute
    assert preview.eval_at == EVAL_AT and preview.error is None
    shown = {i.labels["host"]: i for i in preview.instances}
    assert shown["a"].labels == {"alertname": "High CPU", "severity": "critical", "team": "infra", "host": "a"}
    assert (shown["a"].value, shown["a"].active, shown["a"].state) == (90.0, True, "firing")
    assert (shown["b"].value, shown["b"].active, shown["b"].state) == (10.0, False, "inactive")
    assert shown["a"].annotations == {"summary": "a: 90.0"}
    below = preview_rule(viewer, project.project_id, rule(op="<"), NOW)
    assert {i.labels["host"]: i.active for i in below.instances} == {"a": False, "b": True}
    pending = preview_rule(viewer, project.project_id, rule().model_copy(update={"for_": 300}), NOW)
    assert {i.labels["host"]: i.state for i in pending.instances} == {"a": "pending", "b": "inactive"}
    # And nothing was saved
    saved = db.execute(
        "select (select count(*) from public.alert_rules where project_id = %(p)s) as rules,"
        " (select count(*) from public.alert_instances where project_id = %(p)s) as instances,"
        " (select count(*) from public.alert_transitions where project_id = %(p)s) as transitions",
        {"p": project.project_id},
    ).fetchone()
    assert saved == {"rules": 0, "instances": 0, "transitions": 0}


def test_a_read_key_previews_and_other_tenants_cannot(db: psycopg.Connection, project: IngestProject) -> None:
    # Given the project's read key, another organization's owner and read key, and an ingest-only key
    other = make_project(("read",), label="Other")
    stranger = user(db, other.org_id, "owner")
    ingest_only = key(project, "ingest")

    # When each previews a rule of the project / Then the read key sees host a; the others get 404 or 403
    assert len(preview_rule(key(project, "read"), project.project_id, rule(), NOW).instances) == 2
    for principal in (stranger, key(other, "read")):
        with pytest.raises(NotFound):
            preview_rule(principal, project.project_id, rule(), NOW)
    with pytest.raises(Forbidden):
        preview_rule(ingest_only, project.project_id, rule(), NOW)


def test_a_failing_query_is_shown_not_raised(db: psycopg.Connection, project: IngestProject) -> None:
    viewer = user(db, project.org_id, "viewer")
    bad = rule(filters=[{"attribute": "host", "op": "=~", "value": "(?P<name>a)"}])

    preview = preview_rule(viewer, project.project_id, bad, NOW)

    assert preview.instances == [] and preview.error is not None and "regular expression" in preview.error
