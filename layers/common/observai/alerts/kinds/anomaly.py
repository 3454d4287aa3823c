"""``anomaly``: the anomalies the project's detectors found (observai.anomalies), one observation per open
correlated anomaly group (``per: group``, the default) or per open anomaly event (``per: series``).

* group: the project's open groups (with ``detector_id``: those with a member of that detector); labels: the labels
  the group shared when it opened (they never narrow: the alert stays one alert as members with other labels join)
  and ``anomaly_group_id``; value: the peak score of its members (of that detector's members only,
  with ``detector_id``). So an anomaly seen at once by several detectors or series notifies once, as one group;
* series: the project's open events (of live detectors); labels: the series' labels and ``anomaly_detector_id``;
  value: the event's peak score.

``matchers`` keep the observations whose labels hold each key with that value (as text). The condition holds when
the value is at least ``min_score``; a closed group or event leaves the result, and its alert resolves. Read under
the rule's project claims, like every kind (Row Level Security shows that project's rows only).
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Any
from uuid import UUID

from observai.alerts.kinds.base import Observation
from observai.alerts.labels import label_text
from observai.alerts.rule_models import AnomalyCondition
from observai.db.connection import Cursor
from observai.errors import Unprocessable

MAX_OBSERVATIONS = 1000
GROUP_LABEL = "anomaly_group_id"
DETECTOR_LABEL = "anomaly_detector_id"


def _matches(labels: dict[str, Any], matchers: dict[str, str]) -> bool:
    return all(key in labels and label_text(labels[key]) == value for key, value in matchers.items())


class AnomalyKind:
    name = "anomaly"

    def share_key(self, condition: AnomalyCondition) -> Hashable:
        return (condition.per, condition.detector_id, tuple(sorted(condition.matchers.items())))

    def observe(
        self, cur: Cursor, project_id: UUID, condition: AnomalyCondition, eval_at: datetime
    ) -> list[Observation]:
        params = {"project": project_id, "detector": condition.detector_id, "cap": MAX_OBSERVATIONS + 1}
        if condition.per == "group":
            cur.execute(
                "select g.id, coalesce(g.opening_labels, g.shared_labels) as labels, max(e.peak_score) as peak"
                " from public.anomaly_groups g join public.anomaly_events e on e.group_id = g.id"
                " where g.project_id = %(project)s and g.status = 'open'"
                " and (%(detector)s::uuid is null or e.detector_id = %(detector)s)"
                " group by g.id order by g.started_at, g.id limit %(cap)s",
                params,
            )
            rows = cur.fetchall()
            found = [({**row["labels"], GROUP_LABEL: str(row["id"])}, row["peak"]) for row in rows]
        else:
            cur.execute(
                "select e.detector_id, e.labels, e.peak_score as peak from public.anomaly_events e"
                " join public.anomaly_detectors d on d.id = e.detector_id and d.deleted_at is null"
                " where e.project_id = %(project)s and e.status = 'open'"
                " and (%(detector)s::uuid is null or e.detector_id = %(detector)s)"
                " order by e.started_at, e.id limit %(cap)s",
                params,
            )
            rows = cur.fetchall()
            found = [({**row["labels"], DETECTOR_LABEL: str(row["detector_id"])}, row["peak"]) for row in rows]
        if len(rows) > MAX_OBSERVATIONS:
            raise Unprocessable(
                f"More than {MAX_OBSERVATIONS} open anomalies match: add matchers or name a detector",
                code="too_many_series",
                details={"loc": ["condition", "matchers"], "limit": MAX_OBSERVATIONS},
            )
        return [Observation(labels, float(peak)) for labels, peak in found if _matches(labels, condition.matchers)]

    def judge(self, condition: AnomalyCondition, observation: Observation) -> bool:
        return observation.value is not None and observation.value >= condition.min_score


KIND = AnomalyKind()


def _register() -> None:
    from observai.alerts.kinds import register

    register(KIND)


_register()
