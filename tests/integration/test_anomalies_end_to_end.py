"""Anomaly detection end to end on real Postgres: detectors created through the API, metric points rolled up,
detect-anomalies run minute by minute (an injected clock), then the API reads the bands, series, anomalies and the
correlated group, and an ``anomaly`` alert rule fires once for the group. Needs the job (observai.anomalies.job,
branch h-job): skipped without it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.alerts.evaluation import run_evaluation
from observai.metrics.rollup import run_aggregation

from tests.helpers.alert_eval import add_points, add_rule, add_series
from tests.helpers.ingest import iso, make_project
from tests.helpers.inprocess import invoke

job = pytest.importorskip("observai.anomalies.job")

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=4)
MINUTES = 70
SPIKE = range(55, 58)


def minute(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


def at_run(i: int) -> datetime:
    """The run that scores minute i: its step closed SETTLE ago (plus a few seconds)."""
    return minute(i + 1) + job.SETTLE + timedelta(seconds=5)


def drain() -> None:
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            return


def test_detectors_to_bands_anomalies_one_group_and_one_alert(db: psycopg.Connection) -> None:
    # Given cpu and error counts of hosts a and b, host a spiking on both at minutes 55-57
    project = make_project(("admin", "read"), label="End to end")
    rng = random.Random(7)
    for metric, base, jump in (("cpu", 40.0, 50.0), ("errors", 5.0, 40.0)):
        for host in ("a", "b"):
            values = [base + rng.gauss(0, 1) + (jump if host == "a" and i in SPIKE else 0.0) for i in range(MINUTES)]
            add_points(
                project, add_series(project, metric, {"host": host}), [(minute(i), v) for i, v in enumerate(values)]
            )
    drain()

    # And a detector per metric, per host, created through the API
    path = f"/v1/projects/{project.project_id}/anomaly-detectors"
    detectors = {}
    for metric in ("cpu", "errors"):
        body = {
            "name": f"{metric} per host",
            "query": {"name": metric, "group_by": ["host"]},
            "settings": {"algorithm": "zscore", "window": 20, "direction": "above"},
        }
        created = invoke("anomalies", "POST", path, headers=project.headers, json_body=body)
        assert created.status == 201, created.text
        detectors[metric] = created.data["id"]
    rule = add_rule(project, {"kind": "anomaly"}, name="Anomalous", next_eval_at=at_run(40))

    # When detect-anomalies runs every minute from minute 40 (its first run backfills the history before), and the
    # alert rules are evaluated after each run
    for i in range(40, MINUTES):
        job.run(at_run(i), project_ids=[project.project_id])
        run_evaluation(now=at_run(i), project_ids=[project.project_id])

    # Then the bands show host a's cpu outside its band at the spike, host b's never
    bands = invoke(
        "anomalies",
        "GET",
        f"{path}/{detectors['cpu']}/bands",
        headers=project.headers,
        query=f"from={iso(minute(30))}&to={iso(minute(MINUTES))}",
    )
    assert bands.status == 200, bands.text
    by_host = {s["labels"]["host"]: s["points"] for s in bands.data}
    a = {p["time"][:16]: p for p in by_host["a"]}
    spike = iso(minute(SPIKE[0]))[:16]
    assert a[spike]["actual"] > a[spike]["upper"] and a[spike]["score"] > 0.5
    assert any(p["is_anomaly"] for p in by_host["a"]) and not any(p["is_anomaly"] for p in by_host["b"])

    # And the series and the anomalies say the same: one anomaly per detector on host a, closed after recovery
    events = invoke("anomalies", "GET", f"/v1/projects/{project.project_id}/anomalies", headers=project.headers).data
    assert sorted((e["detector_name"], e["labels"]["host"]) for e in events) == [
        ("cpu per host", "a"),
        ("errors per host", "a"),
    ]
    assert all(e["status"] == "closed" and e["direction"] == "above" for e in events)

    # And they are one correlated group on host a
    groups = invoke(
        "anomalies", "GET", f"/v1/projects/{project.project_id}/anomaly-groups", headers=project.headers
    ).data
    assert len(groups) == 1 and groups[0]["shared_labels"] == {"host": "a"} and groups[0]["status"] == "closed"
    assert groups[0]["reason"].startswith("2 anomalies on host=a")

    # And the anomaly rule fired once, for the group, and resolved when it closed
    transitions: list[dict[str, Any]] = db.execute(
        "select to_state, labels from public.alert_transitions where rule_id = %s order by id", (rule,)
    ).fetchall()
    assert [t["to_state"] for t in transitions] == ["firing", "resolved"]
    assert transitions[0]["labels"]["anomaly_group_id"] == groups[0]["id"]


def test_new_settings_reset_the_baselines_and_the_next_run_warms_them_again(db: psycopg.Connection) -> None:
    # Given a detector scored for 30 minutes
    project = make_project(("admin", "read"), label="Re-warm")
    rng = random.Random(3)
    add_points(
        project,
        add_series(project, "load", {"host": "a"}),
        [(minute(i), 10.0 + rng.gauss(0, 1)) for i in range(MINUTES)],
    )
    drain()
    path = f"/v1/projects/{project.project_id}/anomaly-detectors"
    body = {
        "name": "load",
        "query": {"name": "load", "group_by": ["host"]},
        "settings": {"algorithm": "zscore", "window": 20},
    }
    detector = invoke("anomalies", "POST", path, headers=project.headers, json_body=body).data
    for i in range(30, 60):
        job.run(at_run(i), project_ids=[project.project_id])

    def state() -> tuple[Any, int, Any]:
        row = db.execute(
            "select d.processed_until, (select count(*) from public.anomaly_points p where p.detector_id = d.id"
            " and p.generation = d.generation) as n,"
            " (select s.state is not null from public.anomaly_series s where s.detector_id = d.id) as warm"
            " from public.anomaly_detectors d where d.id = %s",
            (detector["id"],),
        ).fetchone()
        assert row is not None
        return row["processed_until"], row["n"], row["warm"]

    cursor, points, warm = state()
    assert cursor == minute(60) and points > 30 and warm

    # When its settings change: the cursor is null, the points dropped (invisible), the baseline forgotten
    response = invoke(
        "anomalies",
        "PATCH",
        f"{path}/{detector['id']}",
        headers=project.headers,
        json_body={"settings": {"algorithm": "robust", "window": 20}},
    )
    assert response.status == 200, response.text
    assert state() == (None, 0, False)

    # Then the next run backfills the recent history and the baseline is warm again, with the new algorithm
    job.run(at_run(60), project_ids=[project.project_id])
    cursor, points, warm = state()
    assert cursor == minute(61) and points > 20 and warm
    series = invoke("anomalies", "GET", f"{path}/{detector['id']}/series", headers=project.headers).data
    assert [s["algorithm"] for s in series] == ["robust"]
