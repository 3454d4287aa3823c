"""What the model is told about a project before it translates a question: its known services, log attribute keys,
metric names and metric attribute keys. Read as the caller (RLS on), each bounded (a few index reads)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from observai.db.connection import Cursor

MAX_SERVICES = 50
MAX_KEYS = 40
MAX_METRICS = 100
SAMPLE_LINES = 500
SAMPLE_SERIES = 500
SERVICES_SINCE = timedelta(days=1)
KEYS_SINCE = timedelta(days=1)


def log_services(cur: Cursor, project_id: UUID, now: datetime) -> list[str]:
    """Services that logged in the last day, from the per-minute log volume (not the lines)."""
    cur.execute(
        "select service from ("
        " select service from public.log_volume where project_id = %(project)s and minute >= %(since)s"
        " union"
        " select service from public.log_volume_rolled where project_id = %(project)s and minute >= %(since)s"
        ") s where service is not null order by service limit %(limit)s",
        {"project": project_id, "since": now - SERVICES_SINCE, "limit": MAX_SERVICES},
    )
    return [row["service"] for row in cur.fetchall()]


def log_attribute_keys(cur: Cursor, project_id: UUID, now: datetime) -> dict[str, list[str]]:
    """The most frequent attribute and resource keys among the newest lines of the last day (a sample)."""
    cur.execute(
        "with l as materialized ("
        " select attributes, resource from public.logs"
        " where project_id = %(project)s and time >= %(since)s and time <= %(now)s"
        " order by time desc limit %(lines)s)"
        " (select 'attributes' as field, k as key, count(*) as n from l, jsonb_object_keys(l.attributes) k"
        "  group by k order by n desc, k limit %(limit)s)"
        " union all"
        " (select 'resource', k, count(*) from l, jsonb_object_keys(l.resource) k"
        "  group by k order by count(*) desc, k limit %(limit)s)",
        {"project": project_id, "since": now - KEYS_SINCE, "now": now, "lines": SAMPLE_LINES, "limit": MAX_KEYS},
    )
    keys: dict[str, list[str]] = {"attributes": [], "resource": []}
    for row in cur.fetchall():
        keys[row["field"]].append(row["key"])
    return keys


def metric_names(cur: Cursor, project_id: UUID) -> list[dict[str, Any]]:
    """The first metric names (by name) with the type and unit of one of their series."""
    cur.execute(
        "select n.name, s.type, s.unit from ("
        " select distinct m.name from public.metric_series m where m.project_id = %(project)s"
        " order by m.name limit %(limit)s) n"
        " left join lateral (select m.type, m.unit from public.metric_series m"
        "  where m.project_id = %(project)s and m.name = n.name limit 1) s on true"
        " order by n.name",
        {"project": project_id, "limit": MAX_METRICS},
    )
    return [dict(row) for row in cur.fetchall()]


def metric_attribute_keys(cur: Cursor, project_id: UUID) -> list[str]:
    """Attribute keys of a sample of the project's series, most frequent first."""
    cur.execute(
        "select k, count(*) as n from ("
        " select attributes from public.metric_series where project_id = %(project)s limit %(series)s) s,"
        " jsonb_object_keys(s.attributes) k group by k order by n desc, k limit %(limit)s",
        {"project": project_id, "series": SAMPLE_SERIES, "limit": MAX_KEYS},
    )
    return [row["k"] for row in cur.fetchall()]


def unknown_metric_names(cur: Cursor, project_id: UUID, names: list[str]) -> list[str]:
    """Which of ``names`` the project has no series of."""
    cur.execute(
        "select n from unnest(%(names)s::text[]) n where not exists ("
        " select 1 from public.metric_series m where m.project_id = %(project)s and m.name = n)",
        {"project": project_id, "names": names},
    )
    return [row["n"] for row in cur.fetchall()]
