"""detect-anomalies on real Postgres with an injected clock: a spike opens an event (anomaly.detected once) and
recovery closes it; the job run minute by minute scores exactly what the backtest scores over the same points; a
late point re-scores its step and what follows; two overlapping runs score each point once; a stale run is fenced
out; a bounded run resumes; one project's 50 detectors do not starve another's one; deleted and disabled
detectors are skipped; every row carries its tenant."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.anomalies import job
from observai.anomalies.detection import score_points
from observai.anomalies.settings_models import DetectorSettings
from observai.metrics.rollup import run_aggregation

from tests.helpers.alert_eval import add_points, add_series
from tests.helpers.ingest import IngestProject, make_project

pytestmark = pytest.mark.integration

# The series start at T0 (whole minutes, a few hours back: the rollup partitions exist); runs are injected.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=5)
SETTINGS = {"algorithm": "zscore", "window": 20}
MINUTES = 90
SPIKE = range(50, 53)  # minutes of the spike


def drain() -> None:
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            return


def minute(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


def at_run(i: int) -> datetime:
    """The run that scores minute i: its step closed SETTLE ago (plus a few seconds)."""
    return minute(i + 1) + job.SETTLE + timedelta(seconds=5)


def values(seed: int, n: int = MINUTES) -> list[float]:
    rng = random.Random(seed)
    return [100.0 + (60.0 if i in SPIKE else 0.0) + rng.gauss(0, 1) for i in range(n)]


def add_detector(
    project: IngestProject,
    *,
    metric: str = "cpu",
    group_by: tuple[str, ...] = ("host",),
    settings: dict[str, Any] | None = None,
    start: datetime | None = T0,
    enabled: bool = True,
    deleted: bool = False,
    name: str = "cpu per host",
) -> UUID:
    from observai.db.connection import transaction

    query = {"name": metric, "filters": [], "aggregation": "avg", "group_by": list(group_by)}
    with transaction() as cur:
        cur.execute(
            "insert into public.anomaly_detectors (org_id, project_id, name, query, interval_s, settings, enabled,"
            " processed_until, deleted_at) values (%s, %s, %s, %s, 60, %s, %s, %s, %s) returning id",
            (
                project.org_id, project.project_id, name, json.dumps(query), json.dumps(settings or SETTINGS),
                enabled, start, datetime.now(UTC) if deleted else None,
            ),
        )  # fmt: skip
        row = cur.fetchone()
    assert row is not None
    return row["id"]


def cpu(project: IngestProject, host: str, series: list[float], *, metric: str = "cpu") -> None:
    add_points(project, add_series(project, metric, {"host": host}), [(minute(i), v) for i, v in enumerate(series)])


def run(project: IngestProject | list[IngestProject], at: datetime, **kwargs: Any) -> job.RunReport:
    projects = project if isinstance(project, list) else [project]
    return job.run(at, project_ids=[p.project_id for p in projects], **kwargs)


def scored(db: psycopg.Connection, detector: UUID) -> dict[str, list[tuple]]:
    rows = db.execute(
        "select s.labels ->> 'host' as host, p.time, p.value, p.expected, p.lower, p.upper, p.score, p.is_anomaly"
        " from public.anomaly_points p join public.anomaly_series s on s.id = p.series_id"
        " where p.detector_id = %s order by host, p.time",
        (detector,),
    ).fetchall()
    out: dict[str, list[tuple]] = {}
    for r in rows:
        out.setdefault(r["host"], []).append(
            (r["time"], r["value"], r["expected"], r["lower"], r["upper"], r["score"], r["is_anomaly"])
        )
    return out


def backtest(series: list[float]) -> list[tuple]:
    settings = DetectorSettings.model_validate(SETTINGS).model_dump()
    result = score_points(settings, None, [(minute(i), v) for i, v in enumerate(series)])
    return [(p.time, p.value, p.expected, p.lower, p.upper, p.score, p.is_anomaly) for p in result.points]


def same(a: list[tuple], b: list[tuple]) -> bool:
    def eq(x: Any, y: Any) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)
        return x == y

    return len(a) == len(b) and all(all(eq(x, y) for x, y in zip(r, s, strict=True)) for r, s in zip(a, b, strict=True))


def test_a_spike_opens_one_event_recovery_closes_it_and_the_job_scores_what_the_backtest_scores(
    db: psycopg.Connection,
) -> None:
    # Given two hosts' cpu, one with a spike at minutes 50-52, and a zscore detector per host from T0
    project = make_project(("read",), label="Spike")
    rng = random.Random(2)
    spiky, calm = values(1), [100.0 + rng.gauss(0, 1) for _ in range(MINUTES)]
    cpu(project, "a", spiky)
    cpu(project, "b", calm)
    drain()
    detector = add_detector(project)

    # When the job runs every minute, each run scoring the minute that just closed
    reports = [run(project, at_run(i)) for i in range(MINUTES)]

    # Then each run scored one step per series, and the scores are exactly the backtest's over the same points
    assert all(r.detectors == 1 and r.errors == 0 and r.fenced == 0 for r in reports)
    assert sum(r.points for r in reports) == 2 * MINUTES
    got = scored(db, detector)
    assert same(got["a"], backtest(spiky)) and same(got["b"], backtest(calm))

    # And the spike opened one event on host a, closed after its recovery, with its peak at the spike
    events = db.execute("select * from public.anomaly_events where detector_id = %s", (detector,)).fetchall()
    assert len(events) == 1
    event = events[0]
    assert event["labels"] == {"host": "a"} and event["status"] == "closed" and event["direction"] == "above"
    assert minute(SPIKE[0]) <= event["started_at"] <= minute(SPIKE[-1])
    assert minute(SPIKE[-1]) < event["ended_at"] <= minute(SPIKE[-1] + 20)
    assert event["peak_at"] in {minute(i) for i in SPIKE} and event["actual_at_peak"] > 150
    assert event["algorithm"] == "zscore" and 0 < event["peak_score"] <= 1
    assert (event["org_id"], event["project_id"]) == (project.org_id, project.project_id)
    assert sum(r.events_opened for r in reports) == 1 and sum(r.events_closed for r in reports) == 1
    # (correlated at the end of the run: a lone anomaly is a group of one)
    assert event["group_id"] is not None

    # And anomaly.detected left once, in the published schema
    from observai.webhooks.events import EVENT_MODELS

    outbox = db.execute(
        "select payload, org_id from public.outbox_events where project_id = %s and type = 'anomaly.detected'",
        (project.project_id,),
    ).fetchall()
    assert len(outbox) == 1 and outbox[0]["org_id"] == project.org_id
    payload = EVENT_MODELS["anomaly.detected"].model_validate(outbox[0]["payload"])
    data = payload.data  # type: ignore[attr-defined]
    assert data.anomaly_id == event["id"] and data.detector_id == detector and data.labels == {"host": "a"}
    assert data.series == "cpu" and data.direction == "above" and data.observed == event["actual_at_peak"]

    # And the series rows hold the last state, time and verdict, with their tenant
    series = db.execute("select * from public.anomaly_series where detector_id = %s", (detector,)).fetchall()
    assert {s["labels"]["host"] for s in series} == {"a", "b"}
    for s in series:
        assert s["last_time"] == minute(MINUTES - 1) and s["anomalous"] is False and s["algorithm"] == "zscore"
        assert (s["org_id"], s["project_id"]) == (project.org_id, project.project_id)
    tenants = db.execute(
        "select distinct org_id, project_id from public.anomaly_points where detector_id = %s", (detector,)
    ).fetchall()
    assert [(t["org_id"], t["project_id"]) for t in tenants] == [(project.org_id, project.project_id)]


def test_catching_up_many_steps_in_one_run_scores_the_same_as_minute_by_minute(db: psycopg.Connection) -> None:
    # Given a detector 90 minutes behind
    project = make_project(("read",), label="Catchup")
    series = values(3)
    cpu(project, "a", series)
    drain()
    detector = add_detector(project)

    # When one run catches up
    report = run(project, at_run(MINUTES - 1))

    # Then it scored every step, as the backtest does, and opened the spike's event
    assert report.points == MINUTES and report.events_opened == 1
    assert same(scored(db, detector)["a"], backtest(series))


def test_a_late_point_re_scores_its_step_and_what_follows_only(db: psycopg.Connection) -> None:
    # Given a detector run minute by minute up to minute 60
    project = make_project(("read",), label="Late")
    series = values(4)
    sid = add_series(project, "cpu", {"host": "a"})
    add_points(project, sid, [(minute(i), v) for i, v in enumerate(series[:61])])
    drain()
    detector = add_detector(project)
    for i in range(61):
        run(project, at_run(i))
    before = scored(db, detector)["a"]

    # When a late point lands in minute 56 (already scored: its average changes) and the minute 61 arrives
    late = minute(56) + timedelta(seconds=30)
    add_points(project, sid, [(late, 130.0), (minute(61), series[61])])
    drain()
    report = run(project, at_run(61))

    # Then the series was re-scored from its base: minute 56 holds the new average, and every point equals the
    # backtest over the final values; the points before minute 56 were not rewritten
    assert report.rescored_series == 1
    final = series[:62]
    final[56] = (series[56] + 130.0) / 2
    after = scored(db, detector)["a"]
    assert same(after, backtest(final))
    assert after[56][1] == pytest.approx(final[56]) and before[56][1] != after[56][1]
    assert same(after[:56], before[:56])


def test_a_late_spike_inside_the_horizon_opens_its_event_from_where_it_started(db: psycopg.Connection) -> None:
    # Given a calm series scored minute by minute up to minute 60
    project = make_project(("read",), label="Late spike")
    rng = random.Random(16)
    calm = [100.0 + rng.gauss(0, 1) for _ in range(MINUTES)]
    sid = add_series(project, "cpu", {"host": "a"})
    add_points(project, sid, [(minute(i), v) for i, v in enumerate(calm[:61])])
    drain()
    detector = add_detector(project)
    for i in range(61):
        run(project, at_run(i))
    assert (
        db.execute("select count(*) as n from public.anomaly_events where detector_id = %s", (detector,)).fetchone()[
            "n"
        ]
        == 0
    )

    # When a late batch lands in minutes 55-57 (already scored: their averages jump) with minute 61
    add_points(project, sid, [(minute(i) + timedelta(seconds=30), 400.0) for i in (55, 56, 57)])
    add_points(project, sid, [(minute(61), calm[61])])
    drain()
    report = run(project, at_run(61))

    # Then the re-score opened the event where the spike started, and announced it once
    assert report.rescored_series == 1 and report.events_opened == 1
    event = db.execute("select * from public.anomaly_events where detector_id = %s", (detector,)).fetchone()
    assert event is not None and event["started_at"] == minute(55) and event["direction"] == "above"
    outbox = db.execute(
        "select count(*) as n from public.outbox_events where project_id = %s and type = 'anomaly.detected'",
        (project.project_id,),
    ).fetchone()
    assert outbox is not None and outbox["n"] == 1


def test_a_late_point_older_than_the_horizon_is_not_re_scored(db: psycopg.Connection) -> None:
    # Given a detector run up to minute 60
    project = make_project(("read",), label="Old late")
    series = values(5)
    sid = add_series(project, "cpu", {"host": "a"})
    add_points(project, sid, [(minute(i), v) for i, v in enumerate(series[:61])])
    drain()
    detector = add_detector(project)
    for i in range(61):
        run(project, at_run(i))

    # When a late point lands beyond the horizon (minute 30)
    add_points(project, sid, [(minute(30) + timedelta(seconds=30), 500.0), (minute(61), series[61])])
    drain()
    report = run(project, at_run(61))

    # Then nothing was re-scored: minute 30 keeps its first score (documented lag)
    assert report.rescored_series == 0 and report.points == 1
    assert scored(db, detector)["a"][30][1] == pytest.approx(series[30])


def test_two_overlapping_runs_score_each_point_once(db: psycopg.Connection, database_url: str) -> None:
    # Given 20 detectors of one project, due
    project = make_project(("read",), label="Overlap")
    cpu(project, "a", values(6))
    drain()
    detectors = [add_detector(project, name=f"d{i}") for i in range(20)]

    # When two runs start at once (two processes, as two Lambda invocations)
    script = (
        "import json, sys, uuid; from datetime import datetime; from observai.anomalies.job import run;"
        "r = run(datetime.fromisoformat(sys.argv[1]), project_ids=[uuid.UUID(sys.argv[2])], limit=50);"
        "print(json.dumps(r.model_dump(mode='json')))"
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, at_run(MINUTES - 1).isoformat(), str(project.project_id)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))

    # Then together they processed each detector once: every point scored once, one event per detector
    assert sum(r["detectors"] for r in reports) == 20 and sum(r["points"] for r in reports) == 20 * MINUTES
    assert sum(r["events_opened"] for r in reports) == 20
    counts = db.execute(
        "select detector_id, count(*) as n from public.anomaly_points where detector_id = any(%s) group by 1",
        (detectors,),
    ).fetchall()
    assert {c["n"] for c in counts} == {MINUTES} and len(counts) == 20
    outbox = db.execute(
        "select count(*) as n from public.outbox_events where project_id = %s", (project.project_id,)
    ).fetchone()
    assert outbox is not None and outbox["n"] == 20


def test_a_run_whose_lease_expired_is_fenced_out(db: psycopg.Connection) -> None:
    from observai.db.connection import transaction

    # Given a run that claimed a detector and stalled past its lease
    project = make_project(("read",), label="Fence")
    cpu(project, "a", values(7))
    drain()
    detector = add_detector(project)
    now = at_run(MINUTES - 1)
    with transaction() as cur:
        (stale,) = job.claim(cur, now=now, limit=10, per_project=10, project_ids=[project.project_id])

    # When another run takes it over after the lease and scores it, and then the stale run writes
    taken = run(project, now + job.LEASE + timedelta(seconds=1))
    report = job.RunReport()
    job.process(stale, now, report)

    # Then the stale run wrote nothing: each point scored once
    assert taken.detectors == 1 and report.fenced == 1 and report.detectors == 0
    assert len(scored(db, detector)["a"]) == MINUTES


def test_a_bounded_run_resumes_where_it_stopped(db: psycopg.Connection) -> None:
    # Given 3 due detectors
    project = make_project(("read",), label="Bounded")
    cpu(project, "a", values(8, 5))
    drain()
    detectors = [add_detector(project, name=f"d{i}") for i in range(3)]
    at = at_run(4)

    # When runs take one detector each
    reports = [run(project, at, limit=1) for _ in range(4)]

    # Then three runs did one each (more due after each), and the fourth found nothing due
    assert [r.detectors for r in reports] == [1, 1, 1, 0]
    assert [r.more_due for r in reports[:2]] == [True, True]
    rows = db.execute(
        "select processed_until, claimed_until from public.anomaly_detectors where id = any(%s)", (detectors,)
    ).fetchall()
    assert all(r["processed_until"] == minute(5) and r["claimed_until"] is None for r in rows)


def test_a_series_budget_stops_the_run_and_hands_the_rest_back(db: psycopg.Connection) -> None:
    # Given 3 due detectors
    project = make_project(("read",), label="Budget")
    cpu(project, "a", values(9, 5))
    drain()
    detectors = [add_detector(project, name=f"d{i}") for i in range(3)]

    # When a run may score one series
    report = run(project, at_run(4), series_budget=1)

    # Then it did one detector, handed the other two back (not leased), and the next run does them
    assert (report.detectors, report.released, report.more_due) == (1, 2, True)
    leased = db.execute(
        "select count(*) as n from public.anomaly_detectors where id = any(%s) and claimed_until is not null",
        (detectors,),
    ).fetchone()
    assert leased is not None and leased["n"] == 0
    assert run(project, at_run(4)).detectors == 2


def test_a_noisy_project_does_not_starve_another(db: psycopg.Connection) -> None:
    # Given a project with 50 due detectors and another with one
    noisy, quiet = make_project(("read",), label="Noisy"), make_project(("read",), label="Quiet")
    cpu(noisy, "a", values(10, 5))
    cpu(quiet, "a", values(11, 5))
    drain()
    for i in range(50):
        add_detector(noisy, name=f"n{i}")
    lonely = add_detector(quiet)

    # When a run may take 10 detectors
    report = run([noisy, quiet], at_run(4), limit=10)

    # Then the quiet project's detector was among them (round robin), and the noisy one got the rest
    assert report.detectors == 10
    row = db.execute("select last_run_at from public.anomaly_detectors where id = %s", (lonely,)).fetchone()
    assert row is not None and row["last_run_at"] == at_run(4)
    # And at most PER_PROJECT of one project per run, even with room for more
    second = run([noisy, quiet], at_run(4), limit=100)
    assert second.detectors == job.PER_PROJECT


def test_deleted_and_disabled_detectors_are_skipped(db: psycopg.Connection) -> None:
    # Given a disabled and a deleted detector over a live metric
    project = make_project(("read",), label="Skipped")
    cpu(project, "a", values(12, 5))
    drain()
    off = add_detector(project, enabled=False)
    gone = add_detector(project, deleted=True)

    # When the job runs
    report = run(project, at_run(4))

    # Then neither was touched
    assert report.detectors == 0
    rows = db.execute(
        "select processed_until, last_run_at from public.anomaly_detectors where id = any(%s)", ([off, gone],)
    ).fetchall()
    assert all(r["processed_until"] == T0 and r["last_run_at"] is None for r in rows)
    assert scored(db, off) == {} and scored(db, gone) == {}


def test_a_detector_whose_query_fails_shows_the_error_and_keeps_its_cursor(db: psycopg.Connection) -> None:
    # Given a detector asking a counter aggregation of a gauge (the query engine refuses it)
    project = make_project(("read",), label="Failing")
    cpu(project, "a", values(13, 5))
    drain()
    detector = add_detector(project)
    from observai.db.connection import transaction

    with transaction() as cur:
        cur.execute(
            'update public.anomaly_detectors set query = query || \'{"aggregation": "rate"}\' where id = %s',
            (detector,),
        )

    # When the job runs
    report = run(project, at_run(4))

    # Then the error is recorded, its cursor stays, and its lease is handed back
    assert report.errors == 1 and report.detectors == 0
    row = db.execute("select * from public.anomaly_detectors where id = %s", (detector,)).fetchone()
    assert row is not None and "rate" in row["last_error"] and row["processed_until"] == T0
    assert row["claimed_until"] is None and row["last_run_at"] == at_run(4)


def test_a_new_detector_backfills_its_window_and_new_series_join_later(db: psycopg.Connection) -> None:
    # Given a detector never run over a host with history, and a second host appearing later
    project = make_project(("read",), label="Backfill")
    cpu(project, "a", values(14))
    drain()
    detector = add_detector(project, start=None)

    # When it first runs, then after host b's first points
    first = run(project, at_run(MINUTES - 1))
    cpu(project, "b", [0.0] * MINUTES + [1.0, 1.0])
    drain()
    second = run(project, at_run(MINUTES + 1))

    # Then the first run scored twice the window of history, and host b joined with its new points
    assert first.points == 2 * SETTINGS["window"]
    got = scored(db, detector)
    assert len(got["a"]) == 2 * SETTINGS["window"]  # host a has no points after MINUTES - 1
    assert second.series == 1 and [p[0] for p in got["b"]][-2:] == [minute(MINUTES), minute(MINUTES + 1)]


def test_tenant_columns_of_two_projects_stay_apart(db: psycopg.Connection) -> None:
    # Given the same metric and host in two organizations, a detector each
    one, two = make_project(("read",), label="Tenant one"), make_project(("read",), label="Tenant two")
    cpu(one, "a", values(15, 5))
    cpu(two, "a", [5.0] * 5)
    drain()
    d1, d2 = add_detector(one), add_detector(two)

    # When the job runs over both
    run([one, two], at_run(4))

    # Then each detector scored its own project's points only, with its tenant on every row
    for project, detector, expected in ((one, d1, values(15, 5)), (two, d2, [5.0] * 5)):
        got = scored(db, detector)["a"]
        assert [p[1] for p in got] == pytest.approx(expected)
        for table in ("anomaly_points", "anomaly_series"):
            rows = db.execute(
                f"select distinct org_id, project_id from public.{table} where detector_id = %s", (detector,)
            ).fetchall()
            assert [(r["org_id"], r["project_id"]) for r in rows] == [(project.org_id, project.project_id)]


def test_the_scheduled_function_runs_the_job(db: psycopg.Connection) -> None:
    from observai_local.lambda_context import LambdaContext

    from tests.helpers.inprocess import load_function

    # When EventBridge Scheduler invokes the function
    module = load_function("detect_anomalies")
    result = module.lambda_handler(
        {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
        LambdaContext("observai-test-detect-anomalies", memory_limit_in_mb=512, timeout_s=120),
    )

    # Then it reported a run
    assert {"detectors", "series", "points", "errors", "more_due"} <= set(result)
