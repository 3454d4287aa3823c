"""Anomaly rows for tests, inserted as the detect-anomalies job would leave them: detectors, series with their
scored points, anomaly events (open or closed)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from tests.helpers.ingest import IngestProject


def add_detector(
    db: psycopg.Connection[Any],
    project: IngestProject,
    name: str = "latency",
    *,
    metric: str = "http.latency",
    filters: list[dict[str, Any]] | None = None,
    group_by: list[str] | None = None,
    interval_s: int = 60,
) -> UUID:
    query = {"name": metric, "filters": filters or [], "aggregation": "avg", "group_by": group_by or []}
    row = db.execute(
        "insert into public.anomaly_detectors (org_id, project_id, name, query, interval_s, settings)"
        " values (%s, %s, %s, %s, %s, %s) returning id",
        (project.org_id, project.project_id, name, Jsonb(query), interval_s, Jsonb({"algorithm": "auto"})),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def add_series(
    db: psycopg.Connection[Any],
    project: IngestProject,
    detector_id: UUID,
    labels: dict[str, Any],
    *,
    anomalous: bool = False,
    algorithm: str | None = "robust",
    reason: str | None = "auto: robust (spiky history)",
    key: str | None = None,
) -> int:
    """The series of ``labels`` (the existing one when the detector has it already)."""
    key = key or "|".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"
    row = db.execute(
        "insert into public.anomaly_series (org_id, project_id, detector_id, series_key, labels, algorithm,"
        " algorithm_reason, anomalous) values (%s, %s, %s, %s, %s, %s, %s, %s)"
        " on conflict (detector_id, series_key) do update set labels = excluded.labels returning id",
        (project.org_id, project.project_id, detector_id, key, Jsonb(labels), algorithm, reason, anomalous),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def add_points(
    db: psycopg.Connection[Any],
    project: IngestProject,
    detector_id: UUID,
    series_id: int,
    start: datetime,
    values: list[float],
    *,
    step_s: int = 60,
    expected: float = 10.0,
    half_width: float = 2.0,
) -> None:
    """One scored point per value from ``start``, every ``step_s``: a band expected ± half_width, a score of 1 and
    is_anomaly outside it."""
    with db.cursor() as cur:
        cur.executemany(
            "insert into public.anomaly_points (series_id, time, org_id, project_id, detector_id, value, expected,"
            " lower, upper, score, is_anomaly) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    series_id,
                    start + timedelta(seconds=step_s * i),
                    project.org_id,
                    project.project_id,
                    detector_id,
                    value,
                    expected,
                    expected - half_width,
                    expected + half_width,
                    1.0 if abs(value - expected) > half_width else 0.0,
                    abs(value - expected) > half_width,
                )
                for i, value in enumerate(values)
            ],
        )


def add_event(
    db: psycopg.Connection[Any],
    project: IngestProject,
    detector_id: UUID,
    series_id: int,
    labels: dict[str, Any],
    started_at: datetime,
    *,
    ended_at: datetime | None = None,
    peak_score: float = 0.9,
    direction: str = "above",
) -> UUID:
    status = "open" if ended_at is None else "closed"
    row = db.execute(
        "insert into public.anomaly_events (org_id, project_id, detector_id, series_id, status, started_at, ended_at,"
        " peak_score, peak_at, expected_at_peak, actual_at_peak, direction, algorithm, labels)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, 10.0, 30.0, %s, 'robust', %s) returning id",
        (
            project.org_id,
            project.project_id,
            detector_id,
            series_id,
            status,
            started_at,
            ended_at,
            peak_score,
            started_at,
            direction,
            Jsonb(labels),
        ),
    ).fetchone()
    assert row is not None
    return UUID(str(row["id"]))


def close_event(db: psycopg.Connection[Any], event_id: UUID, at: datetime) -> None:
    db.execute("update public.anomaly_events set status = 'closed', ended_at = %s where id = %s", (at, event_id))
