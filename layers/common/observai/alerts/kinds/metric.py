"""``metric``: a metric query (filters, aggregation incl. p50-p99, group_by) over [eval_at - window, eval_at) as
ONE slot of the query engine, aligned to eval_at (``plan(..., align=eval_at)``): raw points and rollups as the
engine chooses (a rollup resolution dividing both the window and eval_at's offset from the epoch; the last minutes
from raw points). One observation per group_by combination that has a value in the window; a series with no point
in the window is not in the result (its alert counts the condition as false)."""

from __future__ import annotations

import json
from collections.abc import Hashable
from datetime import datetime, timedelta
from uuid import UUID

from observai.alerts.kinds.base import Observation, compare
from observai.alerts.rule_models import MetricCondition
from observai.db.connection import Cursor


class MetricKind:
    name = "metric"

    def share_key(self, condition: MetricCondition) -> Hashable:
        filters = json.dumps([f.model_dump(mode="json") for f in condition.filters], sort_keys=True)
        return (condition.metric, filters, condition.aggregation, tuple(condition.group_by), condition.window)

    def observe(
        self, cur: Cursor, project_id: UUID, condition: MetricCondition, eval_at: datetime
    ) -> list[Observation]:
        from observai.metrics.query import _run_one, plan
        from observai.metrics.query_models import MetricQuery

        query = MetricQuery.model_validate(
            {
                "id": "rule",
                "name": condition.metric,
                "filters": [f.model_dump() for f in condition.filters],
                "from": eval_at - timedelta(seconds=condition.window),
                "to": eval_at,
                "step": condition.window,
                "aggregation": condition.aggregation,
                "group_by": list(condition.group_by),
            }
        )
        loc = ["condition"]
        # now = eval_at: the engine reads raw points for the minutes it cannot be sure are rolled up by then.
        result = _run_one(cur, project_id, query, plan(query, eval_at, loc=loc, align=eval_at), loc)
        return [Observation(dict(s.labels), s.points[-1][1] if s.points else None) for s in result.series]

    def judge(self, condition: MetricCondition, observation: Observation) -> bool:
        return compare(observation.value, condition.op, condition.threshold)


KIND = MetricKind()


def _register() -> None:
    from observai.alerts.kinds import register

    register(KIND)


_register()
