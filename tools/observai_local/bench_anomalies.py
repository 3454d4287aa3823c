"""detect-anomalies benchmark (the ``anomalies`` part of `make bench`): one run over many series, after a minute of
new points, with a week and with four weeks of history.

    python -m observai_local.bench_anomalies [--series 10000] [--projects 10] [--weeks 1 4]
    BENCH_ANOMALIES_SERIES=1000 make bench   (a quick smoke run; --part anomalies of observai_local.bench)

Builds, per history length, PROJECTS projects (one organization each), each with SERIES / PROJECTS gauge series
``cpu{host}`` and one detector ``avg cpu by host`` at 1 minute with the default settings (``auto``), already run up
to T (its cursor at T, each series' state and re-score tail stored). The history is in the tables the job touches,
over the whole length (1 or 4 weeks; daily rollup partitions created): ``metric_rollups`` and ``anomaly_points``,
hourly rows before the last quarter of an hour and every minute in it (the re-score horizon the run re-reads),
raw ``metric_points`` for the last minutes (the engine reads those from raw points). Every minute of a week for
10,000 series would be 100 million rows per table (tens of GB here): the hourly rows keep the shape that could make
a run slower as history grows (daily partitions, index depth), at 1/60 of the volume. Each state is the fold's state
after one series' whole history at one point a minute (``auto``: a week, or four), copied to every series: the fold
keeps windows and profiles, so its size does not grow with history (printed).

Then a minute of new points (one raw point per series at T), and, timed in this process against the same database:

    fold alone    score_points over every series' new point from its state, in memory (nothing read nor written)
    reads alone   each detector's read (the query engine under the project's tenancy), nothing scored nor written
    run           one detect-anomalies run (claims, reads, scores, writes points, states, events, cursors)

Target (issue 15 §6): 10,000 series in ≤ 10 s, and the run time flat from 1 to 4 weeks of history.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from observai_local.bench import BENCH_ENVIRONMENT, prepare_database

TARGET_S = 10.0
RECENT_MINUTES = 15  # every minute in the last quarter of an hour: the horizon (10 steps) and the raw tail


def _value(n: int, minute: int) -> float:
    rng = random.Random(n * 1_000_003 + minute)  # noqa: S311 - reproducible bench data
    return 50.0 + 10.0 * math.sin(n * 0.7 + minute / 60.0) + rng.gauss(0.0, 1.0)


def _warm_state(weeks: int, end: datetime, algorithm: str) -> tuple[dict[str, Any], float]:
    """The settings' fold state after ``weeks`` of one point a minute, and how long that fold took."""
    from observai.anomalies.detection import score_points
    from observai.anomalies.settings_models import DetectorSettings

    settings = DetectorSettings(algorithm=algorithm).model_dump()  # type: ignore[arg-type]
    minutes = weeks * 7 * 1440
    points = [(end - timedelta(minutes=minutes - i), _value(0, i)) for i in range(minutes)]
    started = time.perf_counter()
    result = score_points(settings, None, points)
    return result.state, time.perf_counter() - started


def setup(series: int, projects: int, weeks: int, t: datetime, algorithm: str = "auto") -> dict[str, Any]:
    """The projects, series, detectors, history and states of one history length; returns what the runs need."""
    from observai.anomalies.job import STATE_VERSION, _state_bytes, series_key
    from observai.db.connection import transaction
    from observai.telemetry.series import series_id
    from observai.tenancy.orgs import insert_org_with_unique_slug
    from observai.tenancy.projects import insert_project_with_unique_slug
    from psycopg.types.json import Jsonb

    per_project = series // projects
    tag = uuid.uuid4().hex[:6]
    state, warm_s = _warm_state(weeks, t, algorithm)
    history_start = t - timedelta(weeks=weeks)
    recent_start = t - timedelta(minutes=RECENT_MINUTES)
    made = []
    started = time.perf_counter()
    with transaction() as cur:
        cur.execute("select set_config('statement_timeout', '0', true)")
        cur.execute(
            "select private.ensure_daily_partitions('public.metric_rollups'::regclass, %s::date, %s::date)",
            (history_start.date() - timedelta(days=1), t.date() + timedelta(days=1)),
        )
        cur.execute(
            "select private.ensure_daily_partitions('public.metric_points'::regclass, %s::date, %s::date)",
            (t.date() - timedelta(days=1), t.date() + timedelta(days=1)),
        )
        for p in range(projects):
            org = insert_org_with_unique_slug(cur, f"Anomalies bench {tag} {p}", None)
            project = insert_project_with_unique_slug(cur, org["id"], f"Anomalies bench {tag} {p}", None)
            org_id, project_id = org["id"], project["id"]
            hosts = [f"h{i:05d}" for i in range(per_project)]
            ids = [series_id("cpu", {"host": h}) for h in hosts]
            ns = [p * per_project + i for i in range(per_project)]
            cur.execute(
                "insert into public.metric_series (org_id, project_id, series_id, name, type, attributes)"
                " select %s, %s, s.id, 'cpu', 'gauge', jsonb_build_object('host', s.h)"
                " from unnest(%s::bigint[], %s::text[]) s(id, h)",
                (org_id, project_id, ids, hosts),
            )
            cur.execute(
                "insert into public.anomaly_detectors (org_id, project_id, name, query, interval_s, settings,"
                " processed_until, last_run_at) values (%s, %s, 'cpu per host', %s, 60, %s, %s, %s) returning id",
                (org_id, project_id, Jsonb({"name": "cpu", "filters": [], "aggregation": "avg", "group_by": ["host"]}),
                 Jsonb({} if algorithm == "auto" else {"algorithm": algorithm}), t, t - timedelta(seconds=5)),
            )  # fmt: skip
            detector = cur.fetchone()["id"]  # type: ignore[index]
            # History: hourly rows before the recent quarter (server-side), every minute in it (from Python: the
            # same values as the re-score tails, so the run finds nothing changed, as in a steady minute).
            cur.execute(
                "insert into public.metric_rollups (org_id, project_id, series_id, resolution, bucket_start, count,"
                " sum, min, max, last, last_time)"
                " select %(org)s, %(project)s, s.id, 60, b, 1, v, v, v, v, b from unnest(%(ids)s::bigint[]) s(id),"
                " generate_series(%(start)s::timestamptz, %(recent)s::timestamptz - interval '1 hour',"
                " interval '1 hour') b, lateral (select 50 + random() * 10 as v) x",
                {"org": org_id, "project": project_id, "ids": ids, "start": history_start, "recent": recent_start},
            )
            recent = [(m, recent_start + timedelta(minutes=m)) for m in range(RECENT_MINUTES)]
            values = {(n, m): _value(n, m) for n in ns for m, _ in recent}
            cur.execute(
                "insert into public.metric_rollups (org_id, project_id, series_id, resolution, bucket_start, count,"
                " sum, min, max, last, last_time)"
                " select %s, %s, s, 60, b, 1, v, v, v, v, b"
                " from unnest(%s::bigint[], %s::timestamptz[], %s::float8[]) x(s, b, v)",
                (org_id, project_id, [i for i in ids for _ in recent], [at for _ in ids for _, at in recent],
                 [values[(n, m)] for n in ns for m, _ in recent]),
            )  # fmt: skip
            raw_from = RECENT_MINUTES - 5
            cur.execute(
                "insert into public.metric_points (org_id, project_id, series_id, time, value)"
                " select %s, %s, s, b, v from unnest(%s::bigint[], %s::timestamptz[], %s::float8[]) x(s, b, v)",
                (org_id, project_id, [i for i in ids for _ in recent[raw_from:]],
                 [at for _ in ids for _, at in recent[raw_from:]],
                 [values[(n, m)] for n in ns for m, _ in recent[raw_from:]]),
            )  # fmt: skip
            # The detector's series, run up to T: state, re-score tail (the last 12 minutes), scored history.
            keys = [series_key({"host": h}) for h in hosts]
            tails = [
                {"v": STATE_VERSION, "fold": state,
                 "tail": [[int(at.timestamp()), values[(n, m)], 0] for m, at in recent[-12:]]}
                for n in ns
            ]  # fmt: skip
            cur.execute(
                "insert into public.anomaly_series (org_id, project_id, detector_id, series_key, labels, state, base,"
                " algorithm, algorithm_reason, last_time)"
                " select %s, %s, %s, k, jsonb_build_object('host', h), st, %s, 'auto', 'bench', %s"
                " from unnest(%s::text[], %s::text[], %s::bytea[]) x(k, h, st) returning id",
                (
                    org_id,
                    project_id,
                    detector,
                    _state_bytes(state),  # stored as the job stores it
                    t - timedelta(minutes=1),
                    keys,
                    hosts,
                    [_state_bytes(s) for s in tails],
                ),
            )
            series_ids = [r["id"] for r in cur.fetchall()]
            cur.execute(
                "insert into public.anomaly_points (series_id, time, org_id, project_id, detector_id, value, expected,"
                " lower, upper, score, is_anomaly)"
                " select s, b, %(org)s, %(project)s, %(detector)s, 55, 55, 50, 60, 0, false"
                " from unnest(%(ids)s::bigint[]) s,"
                " generate_series(%(start)s::timestamptz, %(recent)s::timestamptz - interval '1 hour',"
                " interval '1 hour') b"
                " union all select s, b, %(org)s, %(project)s, %(detector)s, 55, 55, 50, 60, 0, false"
                " from unnest(%(ids)s::bigint[]) s,"
                " generate_series(%(recent)s::timestamptz, %(last)s::timestamptz, interval '1 minute') b",
                {"org": org_id, "project": project_id, "detector": detector, "ids": series_ids,
                 "start": history_start, "recent": recent_start, "last": t - timedelta(minutes=1)},
            )  # fmt: skip
            made.append({"org": org_id, "project": project_id, "detector": detector, "ids": ids, "ns": ns})
    # A minute of new points: one raw point per series at T.
    with transaction() as cur:
        for m in made:
            cur.execute(
                "insert into public.metric_points (org_id, project_id, series_id, time, value)"
                " select %s, %s, s, %s, v from unnest(%s::bigint[], %s::float8[]) x(s, v)",
                (m["org"], m["project"], t, m["ids"], [_value(n, RECENT_MINUTES) for n in m["ns"]]),
            )
    return {"made": made, "state": state, "warm_s": warm_s, "setup_s": time.perf_counter() - started}


def fold_alone(made: list[dict[str, Any]], state: dict[str, Any], t: datetime, algorithm: str) -> float:
    from observai.anomalies.detection import score_points
    from observai.anomalies.settings_models import DetectorSettings

    settings = DetectorSettings(algorithm=algorithm).model_dump()  # type: ignore[arg-type]
    started = time.perf_counter()
    for m in made:
        for n in m["ns"]:
            score_points(settings, state, [(t, _value(n, RECENT_MINUTES))])
    return time.perf_counter() - started


def reads_alone(made: list[dict[str, Any]], now: datetime, t: datetime) -> float:
    from observai.anomalies.job import Detector, read_points, read_window

    started = time.perf_counter()
    for m in made:
        detector = Detector(
            m["detector"], m["org"], m["project"], "cpu per host",
            {"name": "cpu", "filters": [], "aggregation": "avg", "group_by": ["host"]}, 60, {}, t, now,
        )  # fmt: skip
        read_from, _, to, _ = read_window(detector, now)
        read_points(detector, read_from, to, now)
    return time.perf_counter() - started


def run(
    series: int = 10_000, projects: int = 10, weeks: tuple[int, ...] = (1, 4), algorithms: tuple[str, ...] = ("auto",)
) -> str:
    os.environ.update(BENCH_ENVIRONMENT)
    url, label = prepare_database(keep_dir=False)
    os.environ["DATABASE_URL"] = url
    import psycopg
    from observai.anomalies.job import SETTLE, _state_bytes
    from observai.anomalies.job import run as detect

    lines = [
        f"detect-anomalies: {series:,} series ({projects} detectors × {series // projects:,} series, avg cpu by host,"
        f" 1 min, default settings but the algorithm); Postgres {label}",
        "",
        f"{'algorithm':<11} {'history':<8} {'state B':>7} {'setup s':>7} {'fold s':>7} {'reads s':>7} {'ceiling':>7}"
        f" {'run s':>7} {'read':>6} {'score':>6} {'write':>6} {'series/s':>9} {'/ceiling':>8}  run ≤ {TARGET_S:.0f} s",
    ]
    for algorithm, w in ((a, w) for a in algorithms for w in weeks):
        t = datetime.now(UTC).replace(second=0, microsecond=0)
        prepared = setup(series, projects, w, t, algorithm)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum (analyze) public.metric_series, public.metric_points, public.metric_rollups,"
                         " public.anomaly_series, public.anomaly_points, public.anomaly_detectors")  # fmt: skip
        now = t + timedelta(minutes=1) + SETTLE + timedelta(seconds=5)
        fold_s = fold_alone(prepared["made"], prepared["state"], t, algorithm)
        reads_s = reads_alone(prepared["made"], now, t)
        ceiling_s = fold_s + reads_s
        report = detect(now, limit=1000, budget_s=600, series_budget=10**9,
                        project_ids=[m["project"] for m in prepared["made"]])  # fmt: skip
        if report.series != series or report.errors or report.rescored_series:
            raise RuntimeError(f"the run did not score every series once: {report.model_dump()}")
        lines.append(
            f"{algorithm:<11} {w} week{'s' if w > 1 else ' ':<2}  {len(_state_bytes(prepared['state'])):>7}"
            f" {prepared['setup_s']:>7.1f} {fold_s:>7.2f} {reads_s:>7.2f} {ceiling_s:>7.2f} {report.seconds:>7.2f}"
            f" {report.read_s:>6.2f} {report.score_s:>6.2f} {report.write_s:>6.2f}"
            f" {report.series / report.seconds:>9,.0f} {report.seconds / ceiling_s:>7.2f}x"
            f"  {'ok' if report.seconds <= TARGET_S else 'MISSED'}"
        )
    lines += [
        "",
        "state B: one series' stored fold state (MessagePack) after the whole history; fold s: score_points alone over"
        " every series' new point; reads s: the detectors' reads alone; ceiling: the two added (no write at all).",
        "run s: one detect-anomalies run; read / score / write: its time in the query engine, in score_points (inside"
        " its transactions) and in the write transactions (scoring included).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m observai_local.bench_anomalies", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--series", type=int, default=int(os.environ.get("BENCH_ANOMALIES_SERIES", "10000")))
    parser.add_argument("--projects", type=int, default=10, help="detectors (one project each; at most 1,000 series"
                        " per detector: the query engine's limit)")  # fmt: skip
    parser.add_argument("--weeks", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=["auto"],
        choices=["auto", "zscore", "robust", "seasonal", "level_shift"],
        help="the detectors' algorithm (default auto, the default settings')",
    )
    args = parser.parse_args(argv)
    if args.projects < 1 or args.series < args.projects or args.series // args.projects > 1000:
        parser.error("--series / --projects must be between 1 and 1,000")
    print(run(args.series, args.projects, tuple(args.weeks), tuple(args.algorithms)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
