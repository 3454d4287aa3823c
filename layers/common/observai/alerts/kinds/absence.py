"""``absence``: nothing arrived for ``duration``. The value is the seconds since the last point was seen before
eval_at (None: nothing in the lookback, ``duration`` + 24 h); the condition holds when that exceeds ``duration``.

* ``target: metric``: the metric's series (filters as a metric query's) seen in the lookback, grouped by
  ``group_by``: one observation per group, its latest point; with no group_by, one observation always (no series
  at all, or none recent, is the absence). A group silent for longer than the lookback leaves the result (its
  alert resolves: the series is gone, not late).
* ``target: service``: no log line (``logs.service``), span (``spans.service``) nor metric point (series whose
  attributes carry ``service.name``, the resource attribute ingestion merges into them) from the service.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from observai.alerts.kinds.base import Observation
from observai.alerts.rule_models import AbsenceCondition
from observai.db.connection import Cursor
from observai.errors import Unprocessable

LOOKBACK_EXTRA = timedelta(hours=24)
MAX_SERIES = 1000


def _since(eval_at: datetime, last: datetime | None) -> float | None:
    return None if last is None else (eval_at - last).total_seconds()


class AbsenceKind:
    name = "absence"

    def share_key(self, condition: AbsenceCondition) -> Hashable:
        filters = json.dumps([f.model_dump(mode="json") for f in condition.filters], sort_keys=True)
        return (condition.target, condition.metric, filters, tuple(condition.group_by), condition.service,
                condition.duration)  # fmt: skip

    def observe(
        self, cur: Cursor, project_id: UUID, condition: AbsenceCondition, eval_at: datetime
    ) -> list[Observation]:
        lookback = eval_at - timedelta(seconds=condition.duration) - LOOKBACK_EXTRA
        if condition.target == "service":
            assert condition.service is not None
            last = _service_last_seen(cur, project_id, condition.service, lookback, eval_at)
            return [Observation({"service": condition.service}, _since(eval_at, last))]
        return _metric_groups(cur, project_id, condition, lookback, eval_at)

    def judge(self, condition: AbsenceCondition, observation: Observation) -> bool:
        return observation.value is None or observation.value > condition.duration


def _metric_groups(
    cur: Cursor, project_id: UUID, condition: AbsenceCondition, lookback: datetime, eval_at: datetime
) -> list[Observation]:
    from observai.metrics.filters import filter_sql
    from observai.metrics.query import _LABELS

    params: dict[str, Any] = {
        "project": project_id,
        "name": condition.metric,
        "group_by": list(condition.group_by),
        "lookback": lookback,
        "eval_at": eval_at,
        "cap": MAX_SERIES + 1,
    }
    cur.execute(
        "with s as materialized ("
        f" select s.series_id, {_LABELS} as labels from public.metric_series s"
        f" where s.project_id = %(project)s and s.name = %(name)s{filter_sql(condition.filters, params)}"
        " limit %(cap)s)"
        " select (select count(*) from s) as matched, s.labels::text as labels, max(l.time) as last"
        " from s cross join lateral (select p.time from public.metric_points p"
        " where p.project_id = %(project)s and p.series_id = s.series_id"
        " and p.time >= %(lookback)s and p.time < %(eval_at)s order by p.time desc limit 1) l"
        " group by s.labels::text",
        params,
    )
    rows = cur.fetchall()
    if rows and rows[0]["matched"] > MAX_SERIES:
        raise Unprocessable(
            f"The absence matches more than {MAX_SERIES} series of {condition.metric!r}: add filters",
            code="too_many_series",
            details={"loc": ["condition", "filters"], "limit": MAX_SERIES},
        )
    observed = [Observation(json.loads(r["labels"]), _since(eval_at, r["last"])) for r in rows]
    if not condition.group_by and not observed:
        return [Observation({}, None)]  # the metric sent nothing at all in the lookback
    return observed


def _service_last_seen(
    cur: Cursor, project_id: UUID, service: str, lookback: datetime, eval_at: datetime
) -> datetime | None:
    """The service's latest log line, span or metric point in [lookback, eval_at): logs and spans by their
    (project_id, service, time) indexes, then the service's metric series only for what is newer still."""
    params: dict[str, Any] = {"project": project_id, "service": service, "lookback": lookback, "eval_at": eval_at}
    cur.execute(
        "select greatest("
        " (select max(time) from public.logs where project_id = %(project)s and service = %(service)s"
        "  and time >= %(lookback)s and time < %(eval_at)s),"
        " (select max(start_time) from public.spans where project_id = %(project)s and service = %(service)s"
        "  and start_time >= %(lookback)s and start_time < %(eval_at)s)) as last",
        params,
    )
    row = cur.fetchone()
    last = row["last"] if row else None
    params["after"] = last or lookback
    params["resource"] = Jsonb({"service.name": service})
    cur.execute(
        "select max(l.time) as last from public.metric_series s cross join lateral (select p.time"
        " from public.metric_points p where p.project_id = %(project)s and p.series_id = s.series_id"
        " and p.time >= %(after)s and p.time < %(eval_at)s order by p.time desc limit 1) l"
        " where s.project_id = %(project)s and s.attributes @> %(resource)s",
        params,
    )
    row = cur.fetchone()
    metric_last = row["last"] if row else None
    return max((t for t in (last, metric_last) if t is not None), default=None)


KIND = AbsenceKind()


def _register() -> None:
    from observai.alerts.kinds import register

    register(KIND)


_register()
