"""Data access of the anomaly detectors API: detectors (the service role writes after the check in code), and the
reads of their series, scored points, anomaly events and correlated groups (under the caller's claims: Row Level
Security shows the caller's projects only, whatever the SQL asks). Deleted detectors are hidden from every read."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from observai.db.connection import Cursor

_LOCK_SQL = "select pg_advisory_xact_lock(hashtextextended('observai.anomaly_detectors:' || %s::text, 0))"
_COLUMNS = (
    "d.id, d.org_id, d.project_id, d.name, d.description, d.query, d.interval_s, d.settings, d.enabled,"
    " d.processed_until, d.last_run_at, d.last_error, d.created_at, d.updated_at, d.generation, d.series_matched,"
    " (select count(*) from public.anomaly_series s where s.detector_id = d.id) as series,"
    " (select count(*) from public.anomaly_series s where s.detector_id = d.id and s.anomalous) as anomalous_series"
)
UPDATABLE = frozenset({"name", "description", "query", "interval_s", "settings", "enabled", "processed_until"})
_JSON = frozenset({"query", "settings"})
_EVENT_COLUMNS = (
    "e.id, e.project_id, e.detector_id, d.name as detector_name, d.query ->> 'name' as metric, e.series_id,"
    " e.group_id, e.status, e.started_at, e.ended_at, e.peak_score, e.peak_at, e.expected_at_peak,"
    " e.actual_at_peak, e.direction, e.algorithm, e.labels, e.created_at, e.updated_at"
)


# --- detectors ----------------------------------------------------------------------------------------------------


def lock_project(cur: Cursor, project_id: UUID) -> None:
    cur.execute(_LOCK_SQL, (project_id,))


def count_live(cur: Cursor, project_id: UUID) -> int:
    cur.execute(
        "select count(*) as n from public.anomaly_detectors where project_id = %s and deleted_at is null",
        (project_id,),
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def insert(
    cur: Cursor,
    *,
    org_id: UUID,
    project_id: UUID,
    fields: dict[str, Any],
    created_by: UUID | None,
    now: datetime,
) -> dict[str, Any]:
    cur.execute(
        "insert into public.anomaly_detectors (org_id, project_id, name, description, query, interval_s, settings,"
        " enabled, created_by, created_at, updated_at)"
        " values (%(org)s, %(project)s, %(name)s, %(description)s, %(query)s, %(interval_s)s, %(settings)s,"
        " %(enabled)s, %(created_by)s, %(now)s, %(now)s) returning id",
        {
            "org": org_id,
            "project": project_id,
            **fields,
            "query": Jsonb(fields["query"]),
            "settings": Jsonb(fields["settings"]),
            "created_by": created_by,
            "now": now,
        },
    )
    row = cur.fetchone()
    assert row is not None
    found = get(cur, project_id, row["id"])
    assert found is not None
    return found


def count_series(cur: Cursor, project_id: UUID, query: dict[str, Any], cap: int) -> int:
    """The metric series a detector's query matches (before group_by), counted up to ``cap``."""
    from observai.metrics.filters import filter_sql
    from observai.metrics.query_models import QueryFilter

    filters = [QueryFilter.model_validate(f) for f in query.get("filters") or []]
    params: dict[str, Any] = {"project": project_id, "name": query["name"], "cap": cap}
    cur.execute(
        "select count(*) as n from (select 1 from public.metric_series s"
        f" where s.project_id = %(project)s and s.name = %(name)s{filter_sql(filters, params)} limit %(cap)s) m",
        params,
    )
    row = cur.fetchone()
    return int(row["n"]) if row else 0


def get(cur: Cursor, project_id: UUID, detector_id: UUID, *, for_update: bool = False) -> dict[str, Any] | None:
    lock = " for update of d" if for_update else ""
    cur.execute(
        f"select {_COLUMNS} from public.anomaly_detectors d"
        f" where d.project_id = %s and d.id = %s and d.deleted_at is null{lock}",
        (project_id, detector_id),
    )
    return cur.fetchone()


def list_page(
    cur: Cursor, project_id: UUID, after_ts: datetime | None, after_id: UUID | None, limit: int
) -> list[dict[str, Any]]:
    cur.execute(
        f"select {_COLUMNS} from public.anomaly_detectors d where d.project_id = %(project)s and d.deleted_at is null"
        " and (%(after_ts)s::timestamptz is null or (d.created_at, d.id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by d.created_at desc, d.id desc limit %(limit)s",
        {"project": project_id, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return cur.fetchall()


def update(cur: Cursor, project_id: UUID, detector_id: UUID, fields: dict[str, Any], now: datetime) -> dict[str, Any]:
    assert fields and set(fields) <= UPDATABLE, fields
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in sorted(fields)
    )
    params = {key: Jsonb(value) if key in _JSON else value for key, value in fields.items()}
    cur.execute(
        sql.SQL("update public.anomaly_detectors set {}, updated_at = %(now)s where id = %(id)s").format(assignments),
        {**params, "now": now, "id": detector_id},
    )
    row = get(cur, project_id, detector_id)
    assert row is not None
    return row


def soft_delete(cur: Cursor, detector_id: UUID, now: datetime) -> None:
    """Deleted, and its scored points dropped (a new generation: detect-anomalies' sweep deletes them)."""
    cur.execute(
        "update public.anomaly_detectors set deleted_at = %(now)s, enabled = false, updated_at = %(now)s,"
        " generation = generation + 1 where id = %(id)s",
        {"now": now, "id": detector_id},
    )


def new_generation(cur: Cursor, detector_id: UUID) -> int:
    """Drop the detector's scored points without deleting them here: the reads show its current generation only,
    detect-anomalies' sweep deletes the older ones in bounded batches (observai.anomalies.sweep). A paged pass over
    its series starts again."""
    cur.execute(
        "update public.anomaly_detectors set generation = generation + 1, page_shards = null, page_next = null,"
        " page_to = null where id = %s returning generation",
        (detector_id,),
    )
    row = cur.fetchone()
    assert row is not None
    return int(row["generation"])


def close_open_events(cur: Cursor, detector_id: UUID, now: datetime) -> int:
    """End the detector's open anomaly events at ``now`` (correlation then closes their groups)."""
    cur.execute(
        "update public.anomaly_events set status = 'closed', ended_at = %(now)s, updated_at = %(now)s"
        " where detector_id = %(id)s and status = 'open'",
        {"now": now, "id": detector_id},
    )
    return cur.rowcount


def clear_anomalous(cur: Cursor, detector_id: UUID, now: datetime) -> None:
    cur.execute(
        "update public.anomaly_series set anomalous = false, updated_at = %(now)s"
        " where detector_id = %(id)s and anomalous",
        {"now": now, "id": detector_id},
    )


def drop_series(cur: Cursor, detector_id: UUID) -> int:
    """Delete every series of the detector and their anomaly events (cascade), and the correlated groups left
    without a member. Their scored points are left to the sweep (``new_generation``: dropped, invisible)."""
    cur.execute(
        "select distinct group_id from public.anomaly_events where detector_id = %s and group_id is not null",
        (detector_id,),
    )
    groups = [row["group_id"] for row in cur.fetchall()]
    cur.execute("delete from public.anomaly_series where detector_id = %s", (detector_id,))
    dropped = cur.rowcount
    if groups:
        cur.execute(
            "delete from public.anomaly_groups g where g.id = any(%s)"
            " and not exists (select 1 from public.anomaly_events e where e.group_id = g.id)",
            (groups,),
        )
    return dropped


def reset_series(cur: Cursor, detector_id: UUID, now: datetime) -> int:
    """Forget every baseline of the detector (state, algorithm, anomalous): the job scores the recent history again
    from a cold start. (Its scored points are dropped by ``new_generation``.)"""
    cur.execute(
        "update public.anomaly_series set state = null, algorithm = null, algorithm_reason = null, last_time = null,"
        " anomalous = false, updated_at = %(now)s where detector_id = %(id)s",
        {"now": now, "id": detector_id},
    )
    return cur.rowcount


# --- series and bands ---------------------------------------------------------------------------------------------

_SERIES_COLUMNS = (
    "s.id, s.detector_id, s.labels, s.algorithm, s.algorithm_reason, s.anomalous, s.last_time, s.updated_at"
)


def list_series(
    cur: Cursor,
    detector_id: UUID,
    *,
    series_id: int | None = None,
    labels: dict[str, str] | None = None,
    anomalous: bool | None = None,
    after_id: int | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    """The detector's series by id; ``labels`` keeps those whose labels hold each key with that value (as text)."""
    params: dict[str, Any] = {
        "detector": detector_id,
        "series": series_id,
        "anomalous": anomalous,
        "after": after_id,
        "limit": limit,
    }
    where: list[sql.Composable] = [
        sql.SQL("s.detector_id = %(detector)s"),
        sql.SQL("(%(series)s::bigint is null or s.id = %(series)s)"),
        sql.SQL("(%(anomalous)s::boolean is null or s.anomalous = %(anomalous)s)"),
        sql.SQL("(%(after)s::bigint is null or s.id > %(after)s)"),
    ]
    for index, (key, value) in enumerate(sorted((labels or {}).items())):
        params[f"k{index}"], params[f"v{index}"] = key, value
        where.append(sql.SQL("s.labels ->> {} = {}").format(sql.Placeholder(f"k{index}"), sql.Placeholder(f"v{index}")))
    cur.execute(
        sql.SQL("select {} from public.anomaly_series s where {} order by s.id limit %(limit)s").format(
            sql.SQL(_SERIES_COLUMNS), sql.SQL(" and ").join(where)
        ),
        params,
    )
    return cur.fetchall()


def band_points(
    cur: Cursor, detector_id: UUID, generation: int, series_ids: list[int], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The scored points of the detector's current generation (older ones are dropped, waiting for the sweep)."""
    cur.execute(
        "select series_id, time, value, expected, lower, upper, score, is_anomaly, provisional"
        " from public.anomaly_points where detector_id = %(detector)s and series_id = any(%(series)s)"
        " and time >= %(start)s and time < %(end)s and generation = %(generation)s order by series_id, time",
        {"detector": detector_id, "series": series_ids, "start": start, "end": end, "generation": generation},
    )
    return cur.fetchall()


# --- anomaly events -----------------------------------------------------------------------------------------------


def list_events(
    cur: Cursor,
    project_id: UUID,
    *,
    detector_id: UUID | None,
    status: str | None,
    start: datetime | None,
    end: datetime | None,
    after_ts: datetime | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first (started_at, id). ``start``/``end``: the events overlapping [start, end)."""
    cur.execute(
        f"select {_EVENT_COLUMNS} from public.anomaly_events e"
        " join public.anomaly_detectors d on d.id = e.detector_id and d.deleted_at is null"
        " where e.project_id = %(project)s"
        " and (%(detector)s::uuid is null or e.detector_id = %(detector)s)"
        " and (%(status)s::text is null or e.status = %(status)s)"
        " and (%(end)s::timestamptz is null or e.started_at < %(end)s)"
        " and (%(start)s::timestamptz is null or e.ended_at is null or e.ended_at >= %(start)s)"
        " and (%(after_ts)s::timestamptz is null or (e.started_at, e.id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by e.started_at desc, e.id desc limit %(limit)s",
        {
            "project": project_id,
            "detector": detector_id,
            "status": status,
            "start": start,
            "end": end,
            "after_ts": after_ts,
            "after_id": after_id,
            "limit": limit,
        },
    )
    return cur.fetchall()


def get_event(cur: Cursor, project_id: UUID, event_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {_EVENT_COLUMNS} from public.anomaly_events e"
        " join public.anomaly_detectors d on d.id = e.detector_id and d.deleted_at is null"
        " where e.project_id = %s and e.id = %s",
        (project_id, event_id),
    )
    return cur.fetchone()


def group_members(cur: Cursor, group_ids: list[UUID]) -> list[dict[str, Any]]:
    cur.execute(
        f"select {_EVENT_COLUMNS} from public.anomaly_events e"
        " join public.anomaly_detectors d on d.id = e.detector_id"
        " where e.group_id = any(%s) order by e.started_at, e.id",
        (group_ids,),
    )
    return cur.fetchall()


# --- anomaly groups -----------------------------------------------------------------------------------------------

_GROUP_COLUMNS = (
    "g.id, g.project_id, g.status, g.started_at, g.ended_at, g.shared_labels,"
    " coalesce(g.opening_labels, g.shared_labels) as opening_labels, g.reason, g.peak_score,"
    " g.created_at, g.updated_at"
)


def list_groups(
    cur: Cursor,
    project_id: UUID,
    *,
    status: str | None,
    after_ts: datetime | None,
    after_id: UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    cur.execute(
        f"select {_GROUP_COLUMNS} from public.anomaly_groups g where g.project_id = %(project)s"
        " and (%(status)s::text is null or g.status = %(status)s)"
        " and (%(after_ts)s::timestamptz is null or (g.started_at, g.id) < (%(after_ts)s, %(after_id)s::uuid))"
        " order by g.started_at desc, g.id desc limit %(limit)s",
        {"project": project_id, "status": status, "after_ts": after_ts, "after_id": after_id, "limit": limit},
    )
    return cur.fetchall()


def get_group(cur: Cursor, project_id: UUID, group_id: UUID) -> dict[str, Any] | None:
    cur.execute(
        f"select {_GROUP_COLUMNS} from public.anomaly_groups g where g.project_id = %s and g.id = %s",
        (project_id, group_id),
    )
    return cur.fetchone()
