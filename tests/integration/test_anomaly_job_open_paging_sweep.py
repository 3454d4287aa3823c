"""detect-anomalies, the open step, paging and the sweep (real Postgres, injected clock):

- a spike ingested at 12:00:20 is anomalous after the 12:00:30 run (scored provisionally from raw points), and the
  run after its step settles scores it again from the closed value: exactly the backtest's score over the same
  points, the provisional mark gone;
- a detector matching more than 1,000 series (the query engine's cap) is scored a shard at a time, resumably; the
  API says how many series it watches; over the ceiling (10,000) it is refused with a clear error;
- a baseline reset answers without deleting the points (invisible at once); the sweep deletes them in batches;
  a disabled detector's expired points age out like the others.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.anomalies import job
from observai.anomalies.detection import score_points
from observai.anomalies.detector_models import MAX_SERIES_PER_DETECTOR
from observai.anomalies.settings_models import DetectorSettings
from observai.anomalies.sweep import sweep
from observai.metrics.rollup import run_aggregation
from psycopg.types.json import Jsonb

from tests.helpers.alert_eval import add_points, add_series
from tests.helpers.ingest import IngestProject, iso, make_project
from tests.helpers.inprocess import invoke

pytestmark = pytest.mark.integration

# "12:00" of the tests: a whole minute a few hours back (the rollup partitions exist); runs are injected.
NOON = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
ONE_POINT = {"algorithm": "zscore", "window": 20, "trigger_window": 1, "trigger_fraction": 1.0}


def drain() -> None:
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            return


def at(minutes: int, seconds: int = 0) -> datetime:
    return NOON + timedelta(minutes=minutes, seconds=seconds)


def add_detector(
    project: IngestProject, settings: dict[str, Any], *, metric: str = "cpu", start: datetime | None = None
) -> UUID:
    from observai.db.connection import transaction

    query = {"name": metric, "filters": [], "aggregation": "avg", "group_by": ["host"]}
    with transaction() as cur:
        cur.execute(
            "insert into public.anomaly_detectors (org_id, project_id, name, query, interval_s, settings,"
            " processed_until) values (%s, %s, 'cpu', %s, 60, %s, %s) returning id",
            (project.org_id, project.project_id, json.dumps(query), json.dumps(settings), start),
        )
        row = cur.fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def run(project: IngestProject, now: datetime, **kwargs: Any) -> job.RunReport:
    return job.run(now, project_ids=[project.project_id], **kwargs)


def points_of(db: psycopg.Connection, detector: UUID) -> dict[datetime, dict[str, Any]]:
    rows = db.execute(
        "select p.* from public.anomaly_points p where p.detector_id = %s order by p.time", (detector,)
    ).fetchall()
    return {r["time"]: r for r in rows}


# --- the open step -------------------------------------------------------------------------------------------------


def test_a_spike_is_anomalous_in_the_run_after_it_arrives_and_final_once_its_step_settles(
    db: psycopg.Connection,
) -> None:
    # Given a calm host, one point a minute for the hour before 12:00, scored by the job up to then
    project = make_project(("read",), label="Open minute")
    rng = random.Random(5)
    history = [(at(i - 60), 100.0 + rng.gauss(0, 1)) for i in range(60)]
    sid = add_series(project, "cpu", {"host": "a"})
    add_points(project, sid, history)
    drain()
    detector = add_detector(project, ONE_POINT, start=at(-60))
    assert run(project, at(-1, 30)).errors == 0  # (runs are a minute apart: 11:59:30, 12:00:30...)

    # When a spike arrives at 12:00:20 (raw, not rolled up) and the job runs at 12:00:30
    add_points(project, sid, [(at(0, 20), 200.0)])
    report = run(project, at(0, 30))

    # Then the open minute 12:00 is scored from its raw point: outside the band, anomalous, marked provisional
    assert report.errors == 0 and report.provisional >= 1
    spike = points_of(db, detector)[at(0)]
    assert spike["provisional"] is True and spike["is_anomaly"] is True and spike["score"] > 0.9
    assert spike["value"] == 200.0
    series = db.execute(
        "select anomalous, last_time from public.anomaly_series where detector_id = %s", (detector,)
    ).fetchone()
    assert series is not None and series["anomalous"] is True
    # the baseline state was not fed the partial minute: its last scored (closed) step is still before 12:00
    assert series["last_time"] < at(0)
    event = db.execute(
        "select status, started_at, actual_at_peak from public.anomaly_events where detector_id = %s", (detector,)
    ).fetchone()
    assert event is not None and event["status"] == "open" and event["started_at"] == at(0)
    outbox = db.execute(
        "select count(*) as n from public.outbox_events where project_id = %s and type = 'anomaly.detected'",
        (project.project_id,),
    ).fetchone()
    assert outbox is not None and outbox["n"] == 1

    # When a second point of the same minute arrives (the minute's average changes) and later runs score it closed
    add_points(project, sid, [(at(0, 50), 180.0)])
    add_points(project, sid, [(at(1, 10), 100.5)])
    drain()
    run(project, at(1, 30))
    final = run(project, at(2, 30))

    # Then the 12:00 step is scored again from its closed value, the mark gone: exactly the backtest's score over the
    # same points (one value per minute)
    assert final.errors == 0
    got = points_of(db, detector)
    closed = got[at(0)]
    assert closed["provisional"] is False and closed["value"] == 190.0
    settings = DetectorSettings.model_validate(ONE_POINT).model_dump()
    expected = score_points(settings, None, [*history, (at(0), 190.0), (at(1), 100.5)]).points
    by_time = {p.time: p for p in expected}
    for time in (at(-1), at(0)):
        want, have = by_time[time], got[time]
        assert (have["value"], have["expected"], have["lower"], have["upper"]) == (
            want.value,
            want.expected,
            want.lower,
            want.upper,
        )
        assert have["score"] == want.score and have["is_anomaly"] == want.is_anomaly and not have["provisional"]
    # And one event, announced once
    assert db.execute(
        "select count(*) as n from public.anomaly_events where detector_id = %s", (detector,)
    ).fetchone() == {"n": 1}


def test_a_provisional_point_no_run_writes_again_is_deleted(db: psycopg.Connection) -> None:
    # Given a step scored provisionally from a raw point that is gone before the step settles (a deleted batch)
    project = make_project(("read",), label="Open gone")
    rng = random.Random(6)
    sid = add_series(project, "cpu", {"host": "a"})
    add_points(project, sid, [(at(i - 30), 50.0 + rng.gauss(0, 1)) for i in range(30)])
    drain()
    detector = add_detector(project, ONE_POINT, start=at(-30))
    run(project, at(-1, 30))
    add_points(project, sid, [(at(0, 20), 51.0)])
    run(project, at(0, 30))
    assert points_of(db, detector)[at(0)]["provisional"] is True
    db.execute("delete from public.metric_points where series_id = %s and time = %s", (sid, at(0, 20)))

    # When the step settles with no value
    run(project, at(2, 5))

    # Then its provisional point is gone with it
    assert at(0) not in points_of(db, detector)


# --- more series than one query reads ------------------------------------------------------------------------------


def many_hosts(project: IngestProject, metric: str, hosts: int, minutes: int) -> None:
    from observai.db.connection import transaction
    from observai.telemetry.series import series_id

    ids = [series_id(metric, {"host": f"h{h:05d}"}) for h in range(hosts)]
    with transaction() as cur:
        cur.execute(
            "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
            " select %s, %s, s, %s, 'gauge', jsonb_build_object('host', h)"
            " from unnest(%s::bigint[], %s::text[]) v(s, h) on conflict do nothing",
            (project.org_id, project.project_id, metric, ids, [f"h{h:05d}" for h in range(hosts)]),
        )
        if minutes:
            cur.execute(
                "insert into public.metric_points (org_id, project_id, series_id, time, value)"
                " select %s, %s, s, %s + make_interval(mins => m), 10 + (s %% 7) + m %% 3"
                " from unnest(%s::bigint[]) s cross join generate_series(0, %s - 1) m on conflict do nothing",
                (project.org_id, project.project_id, at(-minutes), ids, minutes),
            )


def test_a_detector_over_1000_series_is_paged_resumably_and_says_how_many_it_watches(
    db: psycopg.Connection,
) -> None:
    # Given 1,300 hosts (more than the 1,000 series one metric query reads), a few minutes each
    project = make_project(("read", "admin"), label="Paged")
    many_hosts(project, "cpu", 1300, 12)
    drain()
    # (as autovacuum would: the planner's statistics of the tables just filled)
    db.execute("analyze public.metric_series")
    db.execute("analyze public.metric_rollups")
    detector = add_detector(project, {"algorithm": "zscore", "window": 10}, start=at(-12))

    # When a run may score 600 series: it stops after its first shard and hands the detector back mid-pass
    first = run(project, at(0, 5), series_budget=600, overlap=True)
    assert first.errors == 0 and first.shards == 1 and first.more_due and first.detectors == 0
    row = db.execute("select * from public.anomaly_detectors where id = %s", (detector,)).fetchone()
    assert row is not None and row["page_shards"] == 2 and row["page_next"] == 1
    assert row["processed_until"] == at(-12) and row["claimed_until"] is None and row["series_matched"] == 1300

    # And the next run resumes with the second shard and moves the cursor (its writes on a second connection)
    second = run(project, at(0, 20), overlap=True)
    assert second.errors == 0 and second.shards == 1 and second.detectors == 1
    # (11 closed steps each; the open one, provisionally)
    assert first.series + second.series == 1300 and first.points + second.points == 1300 * 11
    row = db.execute("select * from public.anomaly_detectors where id = %s", (detector,)).fetchone()
    assert row is not None and row["page_shards"] is None and row["processed_until"] == at(-1)
    watched = db.execute(
        "select count(*) as n, count(distinct last_time) as times from public.anomaly_series where detector_id = %s",
        (detector,),
    ).fetchone()
    assert watched == {"n": 1300, "times": 1}

    # And the API says how many series it watches and the most it may
    response = invoke(
        "anomalies",
        "GET",
        f"/v1/projects/{project.project_id}/anomaly-detectors/{detector}",
        headers=project.headers,
    )
    assert response.status == 200, response.text
    assert response.data["series"] == 1300 and response.data["series_matched"] == 1300
    assert response.data["series_limit"] == MAX_SERIES_PER_DETECTOR == 10_000


def test_a_detector_over_the_ceiling_is_refused_with_a_clear_error(db: psycopg.Connection) -> None:
    # Given 10,001 hosts of a metric (no points needed)
    project = make_project(("read", "admin"), label="Ceiling")
    many_hosts(project, "mem", MAX_SERIES_PER_DETECTOR + 1, 0)

    # When a detector over them is created through the API: 422 naming the query
    body = {"name": "mem", "query": {"name": "mem", "group_by": ["host"]}}
    path = f"/v1/projects/{project.project_id}/anomaly-detectors"
    response = invoke("anomalies", "POST", path, headers=project.headers, json_body=body)
    assert response.status == 422, response.text
    assert "10,000" in response.text and "too_many_series" in response.text

    # And a detector whose series grew past it (inserted as stored) stops with that error, its cursor kept
    detector = add_detector(project, {"algorithm": "zscore"}, metric="mem", start=at(-5))
    report = run(project, at(0, 5))
    assert report.errors == 1
    row = db.execute("select last_error, processed_until from public.anomaly_detectors where id = %s", (detector,))
    stored = row.fetchone()
    assert stored is not None and "more than 10,000 series" in stored["last_error"]
    assert stored["processed_until"] == at(-5)


# --- dropping and expiring scored points ---------------------------------------------------------------------------


def scored_detector(db: psycopg.Connection, project: IngestProject, points: int, start: datetime) -> UUID:
    """A detector with one series and ``points`` scored points from ``start``, as the job leaves them."""
    detector = add_detector(project, {"algorithm": "zscore", "window": 20}, start=start + timedelta(minutes=points))
    row = db.execute(
        "insert into public.anomaly_series (org_id, project_id, detector_id, series_key, labels)"
        " values (%s, %s, %s, 'k', %s) returning id",
        (project.org_id, project.project_id, detector, Jsonb({"host": "a"})),
    ).fetchone()
    assert row is not None
    db.execute(
        "insert into public.anomaly_points (series_id, time, org_id, project_id, detector_id, value, expected, lower,"
        " upper, score, is_anomaly) select %s, %s + make_interval(mins => i), %s, %s, %s, 1, 1, 0, 2, 0, false"
        " from generate_series(0, %s - 1) i",
        (row["id"], start, project.org_id, project.project_id, detector, points),
    )
    return detector


def count(db: psycopg.Connection, detector: UUID) -> int:
    row = db.execute("select count(*) as n from public.anomaly_points where detector_id = %s", (detector,)).fetchone()
    assert row is not None
    return int(row["n"])


def test_a_reset_drops_the_points_at_once_and_the_sweep_deletes_them_in_batches(db: psycopg.Connection) -> None:
    # Given a detector with 2,500 scored points
    project = make_project(("read", "admin"), label="Reset sweep")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    detector = scored_detector(db, project, 2500, start)
    path = f"/v1/projects/{project.project_id}/anomaly-detectors/{detector}"
    window = f"from={iso(start - timedelta(minutes=1))}&to={iso(start + timedelta(hours=4))}"
    before = invoke("anomalies", "GET", f"{path}/bands", headers=project.headers, query=window)
    assert before.status == 200 and len(before.data[0]["points"]) == 240

    # When its settings change (a baseline reset)
    response = invoke(
        "anomalies", "PATCH", path, headers=project.headers, json_body={"settings": {"algorithm": "robust"}}
    )
    assert response.status == 200, response.text

    # Then the API deleted nothing, yet the bands show none of the old points
    assert count(db, detector) == 2500
    after = invoke("anomalies", "GET", f"{path}/bands", headers=project.headers, query=window)
    assert after.status == 200 and after.data[0]["points"] == []

    # And the sweep deletes them in bounded batches, resumably, then records the generation swept
    first = sweep(datetime.now(UTC), project_ids=[project.project_id], batch_size=1000, max_batches=2)
    assert (first.batches, first.dropped, first.more) == (2, 2000, True) and count(db, detector) == 500
    second = sweep(datetime.now(UTC), project_ids=[project.project_id], batch_size=1000, max_batches=5)
    assert second.dropped == 500 and not second.more and count(db, detector) == 0
    row = db.execute("select generation, swept_generation from public.anomaly_detectors where id = %s", (detector,))
    assert row.fetchone() == {"generation": 1, "swept_generation": 1}
    # (idempotent: nothing left to do)
    assert sweep(datetime.now(UTC), project_ids=[project.project_id]).deleted == 0


def test_a_disabled_detectors_expired_points_age_out_like_the_others(db: psycopg.Connection) -> None:
    # Given an enabled and a disabled detector, each with points from 31 days ago to 29 days ago
    project = make_project(("read", "admin"), label="Expire")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=31)
    live = scored_detector(db, project, 2 * 1440 + 60, start)
    off = scored_detector(db, project, 2 * 1440 + 60, start)
    db.execute("update public.anomaly_detectors set enabled = false where id = %s", (off,))

    # When detect-anomalies runs (its sweep, bounded: a few runs)
    for _ in range(3):
        run(project, now)

    # Then both kept only their points of the last 30 days
    for detector in (live, off):
        oldest = db.execute(
            "select min(time) as t from public.anomaly_points where detector_id = %s", (detector,)
        ).fetchone()
        assert oldest is not None and oldest["t"] >= now - timedelta(days=30)
        assert count(db, detector) == 1440 + 60


def test_a_deleted_detectors_points_are_swept(db: psycopg.Connection) -> None:
    # Given a detector with points, deleted through the API
    project = make_project(("read", "admin"), label="Deleted sweep")
    detector = scored_detector(db, project, 300, datetime.now(UTC) - timedelta(days=1))
    path = f"/v1/projects/{project.project_id}/anomaly-detectors/{detector}"
    assert invoke("anomalies", "DELETE", path, headers=project.headers).status == 200
    assert count(db, detector) == 300

    # When the sweep runs: they are gone
    sweep(datetime.now(UTC), project_ids=[project.project_id])
    assert count(db, detector) == 0


def test_own_connection_gives_a_thread_its_own_session(db: psycopg.Connection) -> None:
    # Given the container's connection (the main thread's)
    import threading

    from observai.db.connection import own_connection, transaction

    def backend() -> int:
        with transaction() as cur:
            cur.execute("select pg_backend_pid() as pid")
            row = cur.fetchone()
        assert row is not None
        return int(row["pid"])

    main = backend()
    seen: list[int] = []

    # When another thread works within own_connection (as detect-anomalies' writer does)
    def work() -> None:
        with own_connection():
            seen.extend([backend(), backend()])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()

    # Then its transactions ran on one session of their own, and the main thread's connection is untouched
    assert seen[0] == seen[1] != main and backend() == main


def test_the_shards_of_a_query_together_read_exactly_what_it_reads_whole(db: psycopg.Connection) -> None:
    # Given 300 hosts in 3 regions, grouped by region (groups of many series) and by host
    project = make_project(("read",), label="Shards")
    many_hosts(project, "cpu", 300, 6)
    db.execute(
        "update public.metric_series set attributes = attributes || jsonb_build_object('region',"
        " 'r' || (abs(hashtext(attributes ->> 'host')) %% 3)) where project_id = %s",
        (project.project_id,),
    )
    drain()
    for group_by in (["host"], ["region"], []):
        detector = job.Detector(
            UUID(int=0), project.org_id, project.project_id, "cpu",
            {"name": "cpu", "filters": [], "aggregation": "avg", "group_by": group_by}, 60, {}, None, at(0),
        )  # fmt: skip
        # When it is read whole, and in 4 shards
        whole = job.read_points(detector, at(-6), at(0), at(0, 5))
        parts = [s for i in range(4) for s in job.read_points(detector, at(-6), at(0), at(0, 5), (i, 4))]

        # Then the shards hold every series once (a group never split), with the same points
        def keyed(series: list[tuple[dict, list]]) -> dict[str, list]:
            return {json.dumps(labels, sort_keys=True): points for labels, points in series}

        assert len(parts) == len(whole) and keyed(parts) == keyed(whole), group_by
