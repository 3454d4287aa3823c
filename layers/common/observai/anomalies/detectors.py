"""Anomaly detectors over the API: create, list, read, change, delete; their bands and series; the project's anomaly
events and correlated anomaly groups.

Who may do what (as alert rules: a detector decides what is anomalous, what the ``anomaly`` rules page on):

* write (create, patch, delete): a person with the member role or above, or an API key bound to the project with
  the ``admin`` scope (``tenancy.access.authorize_configuration``); every write audited;
* read (detectors, bands, series, anomalies, groups): viewers and up, or a ``read`` key of the project.

Another organization's project, or another project's key, gets 404 (existence is not revealed).

Baselines: detect-anomalies (observai.anomalies.job) scores a detector's steps from its cursor ``processed_until``
on; a detector whose cursor is null (a new one) is scored from a backfill of its recent history, so its baselines
warm at once. Changing what a baseline means resets it the same way:

* a new ``query`` watches other series: the detector's series are deleted, with their scored points and anomaly
  events (a correlated group loses them as members);
* new ``settings`` or ``interval_s``: the series stay, their baselines are forgotten (state, algorithm, anomalous),
  their open anomaly events are closed now (kept, with the settings they were found with), and their scored points
  are dropped (bands drawn with other settings, or another step, would mislead a chart);
* in both cases ``processed_until`` goes back to null: the next run backfills and re-warms as for a new detector.
  A run in flight on the detector writes nothing (the job fences its writes on the cursor it read).

Name and description change nothing else. Disabling (``enabled: false``) stops the scoring: the detector's open
anomalies close now and its series are no longer shown anomalous (the baselines are kept; re-enabled, the job
catches up from the cursor). Whenever anomalies close or go, the project's correlated groups are summed up again in
the same transaction (a group whose members all closed closes now, and the ``anomaly`` rules' alerts resolve at
their next evaluation).

Deleting is a soft delete: the detector's open anomalies close now (and their groups with them), and it disappears
from every read with its series, bands and anomalies.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from observai import audit
from observai.alerts.rules_store import regex_error
from observai.anomalies import detectors_store as store
from observai.anomalies.correlation import correlate
from observai.anomalies.detector_models import (
    MAX_SERIES_PER_DETECTOR,
    AnomalyEvent,
    AnomalyGroup,
    BandPoint,
    Detector,
    DetectorDeleted,
    DetectorIn,
    DetectorPatch,
    DetectorQuery,
    DetectorSeries,
    SeriesBands,
)
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import Cursor, tenant_transaction, transaction
from observai.errors import Conflict, NotFound, invalid_field
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_configuration, authorize_telemetry

MAX_DETECTORS_PER_PROJECT = 200
MAX_BAND_STEPS = 10_000  # steps × series per bands request
DEFAULT_BAND_RANGE = timedelta(hours=6)
RESETTING = ("query", "settings", "interval_s")
_SELECTOR_PAIR = re.compile(r"^([^=,]{1,256})=([^,]{0,1024})$")


class SeriesCursor(BaseModel):
    """Position in a detector's series, by id."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    after: int = Field(gt=0, lt=2**63)


# --- rows ---------------------------------------------------------------------------------------------------------


def to_detector(row: dict[str, Any]) -> Detector:
    return Detector(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        description=row["description"],
        query=row["query"],
        interval_s=row["interval_s"],
        settings=row["settings"],
        enabled=row["enabled"],
        processed_until=row["processed_until"],
        last_run_at=row["last_run_at"],
        last_error=row["last_error"],
        series=row["series"],
        anomalous_series=row["anomalous_series"],
        series_matched=row.get("series_matched"),
        series_limit=MAX_SERIES_PER_DETECTOR,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_event(row: dict[str, Any]) -> AnomalyEvent:
    return AnomalyEvent(**{key: row[key] for key in AnomalyEvent.model_fields})


def _to_series(row: dict[str, Any]) -> DetectorSeries:
    return DetectorSeries(**{key: row[key] for key in DetectorSeries.model_fields})


def _detector_not_found(detector_id: UUID) -> NotFound:
    return NotFound("Anomaly detector not found", details={"detector_id": str(detector_id)})


def _columns(body: DetectorIn) -> dict[str, Any]:
    settings = body.settings.model_dump(mode="json")
    return {
        "name": body.name,
        "description": body.description,
        "query": body.query.model_dump(mode="json"),
        "interval_s": body.interval_s,
        "settings": settings,
        "enabled": body.enabled,
    }


def _check_regexes(cur: Cursor, query: DetectorQuery) -> None:
    """Regex filters against the database's regex dialect (the job matches with it): a 422 now, not a job error."""
    for index, query_filter in enumerate(query.filters):
        if query_filter.op in ("=~", "!~"):
            reason = regex_error(cur, str(query_filter.value))
            if reason is not None:
                raise invalid_field(
                    ["body", "query", "filters", index, "value"],
                    "invalid_regex",
                    f"not accepted by the database's regex dialect: {reason}",
                )


def _check_series(cur: Cursor, project_id: UUID, query: DetectorQuery) -> None:
    """A query matching more series than a detector watches: a 422 now (the job would stop on it anyway)."""
    matched = store.count_series(cur, project_id, query.model_dump(mode="json"), MAX_SERIES_PER_DETECTOR + 1)
    if matched > MAX_SERIES_PER_DETECTOR:
        raise invalid_field(
            ["body", "query"],
            "too_many_series",
            f"the query matches more than {MAX_SERIES_PER_DETECTOR:,} metric series, the most one detector watches:"
            " add filters (or split it into several detectors)",
        )


def _actor_user(principal: Principal) -> UUID | None:
    return principal.user_id if principal.kind == "user" else None


# --- writes -------------------------------------------------------------------------------------------------------


def create_detector(principal: Principal, project_id: UUID, body: DetectorIn, now: datetime | None = None) -> Detector:
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        _check_regexes(cur, body.query)
        _check_series(cur, project_id, body.query)
        store.lock_project(cur, project_id)
        count = store.count_live(cur, project_id)
        if count >= MAX_DETECTORS_PER_PROJECT:
            raise Conflict(
                f"This project has {count} anomaly detectors, the most it may have; delete one first",
                code="detector_limit_reached",
                details={"detectors": count, "limit": MAX_DETECTORS_PER_PROJECT},
            )
        row = store.insert(
            cur,
            org_id=org_id,
            project_id=project_id,
            fields=_columns(body),
            created_by=_actor_user(principal),
            now=now,
        )
        audit.record(
            cur,
            principal,
            "anomaly_detector.create",
            org_id=org_id,
            target_type="anomaly_detector",
            target_id=row["id"],
            details={
                "project_id": str(project_id),
                "name": body.name,
                "metric": body.query.name,
                "algorithm": row["settings"].get("algorithm"),
                "interval_s": body.interval_s,
            },
        )
    return to_detector(row)


def update_detector(
    principal: Principal, project_id: UUID, detector_id: UUID, body: DetectorPatch, now: datetime | None = None
) -> Detector:
    """PATCH: the fields given replace theirs (query and settings as wholes). A new query, settings or interval
    resets the baselines (see the module)."""
    now = now or datetime.now(UTC)
    given = body.model_dump(mode="json", exclude_unset=True)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        if body.query is not None:
            _check_regexes(cur, body.query)
            _check_series(cur, project_id, body.query)
        row = store.get(cur, project_id, detector_id, for_update=True)
        if row is None:
            raise _detector_not_found(detector_id)
        changes = {key: value for key, value in given.items() if row[key] != value}
        if not changes:
            return to_detector(row)
        fields = dict(changes)
        details: dict[str, Any] = {"project_id": str(project_id), "changed": sorted(changes)}
        if any(key in changes for key in RESETTING):
            # The job scores a detector whose cursor is null as a new one: it backfills the recent history.
            fields["processed_until"] = None
            details["generation"] = store.new_generation(cur, detector_id)  # its points: dropped, swept later
            details["closed_events"] = store.close_open_events(cur, detector_id, now)
            if "query" in changes:
                details["dropped_series"] = store.drop_series(cur, detector_id)
            else:
                details["reset_series"] = store.reset_series(cur, detector_id, now)
        elif changes.get("enabled") is False:
            # Not scored any more: its anomalies end now (an anomaly rule's alerts resolve), as when deleted.
            details["closed_events"] = store.close_open_events(cur, detector_id, now)
            store.clear_anomalous(cur, detector_id, now)
        if details.get("closed_events") or details.get("dropped_series"):
            correlate(cur, project_id, now)
        for key in ("enabled", "interval_s", "settings"):
            if key in changes:
                details[key] = changes[key]
        updated = store.update(cur, project_id, detector_id, fields, now)
        audit.record(
            cur,
            principal,
            "anomaly_detector.update",
            org_id=org_id,
            target_type="anomaly_detector",
            target_id=detector_id,
            details=details,
        )
    return to_detector(updated)


def delete_detector(
    principal: Principal, project_id: UUID, detector_id: UUID, now: datetime | None = None
) -> DetectorDeleted:
    now = now or datetime.now(UTC)
    with transaction() as cur:
        org_id = authorize_configuration(cur, principal, project_id)
        row = store.get(cur, project_id, detector_id, for_update=True)
        if row is None:
            raise _detector_not_found(detector_id)
        closed = store.close_open_events(cur, detector_id, now)
        store.soft_delete(cur, detector_id, now)
        if closed:
            correlate(cur, project_id, now)  # their groups close now, not at the project's next job run
        audit.record(
            cur,
            principal,
            "anomaly_detector.delete",
            org_id=org_id,
            target_type="anomaly_detector",
            target_id=detector_id,
            details={"project_id": str(project_id), "name": row["name"], "closed_events": closed},
        )
    return DetectorDeleted(id=detector_id)


# --- reads: detectors, series, bands ------------------------------------------------------------------------------


def _read(cur: Cursor, principal: Principal, project_id: UUID) -> None:
    authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)


def _known_detector(cur: Cursor, project_id: UUID, detector_id: UUID) -> dict[str, Any]:
    row = store.get(cur, project_id, detector_id)
    if row is None:
        raise _detector_not_found(detector_id)
    return row


def get_detector(principal: Principal, project_id: UUID, detector_id: UUID) -> Detector:
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        return to_detector(_known_detector(cur, project_id, detector_id))


def list_detectors(
    principal: Principal, project_id: UUID, cursor: str | None, limit: int
) -> tuple[list[Detector], str | None]:
    """The project's detectors, newest first."""
    position = time_cursor_params(decode_cursor(cursor, TimeCursor))
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        rows = store.list_page(cur, project_id, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position())
    return [to_detector(row) for row in rows], next_cursor


def list_series(
    principal: Principal,
    project_id: UUID,
    detector_id: UUID,
    *,
    anomalous: bool | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[DetectorSeries], str | None]:
    """The detector's series by id: labels, algorithm and why, whether anomalous now."""
    after = decode_cursor(cursor, SeriesCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        _known_detector(cur, project_id, detector_id)
        rows = store.list_series(
            cur, detector_id, anomalous=anomalous, after_id=after.after if after else None, limit=limit + 1
        )
    rows, next_cursor = page(rows, limit, lambda row: SeriesCursor(after=row["id"]))
    return [_to_series(row) for row in rows], next_cursor


def parse_selector(series: str | None) -> tuple[int | None, dict[str, str] | None]:
    """``series=``: a series id, or a labels selector ``key=value,key2=value2`` (every pair must match, values
    compared as text); None: every series of the detector."""
    if series is None or series == "":
        return None, None
    if series.isdigit():
        number = int(series)
        if not 0 < number < 2**63:
            raise invalid_field(["query", "series"], "invalid_series", "a series id is a positive 64-bit integer")
        return number, None
    labels: dict[str, str] = {}
    for part in series.split(","):
        match = _SELECTOR_PAIR.match(part.strip())
        if match is None:
            raise invalid_field(
                ["query", "series"],
                "invalid_series",
                "a series id, or label pairs key=value separated by commas (service=checkout,host=a)",
            )
        labels[match.group(1).strip()] = match.group(2).strip()
    return None, labels


def bands(
    principal: Principal,
    project_id: UUID,
    detector_id: UUID,
    *,
    start: datetime | None,
    end: datetime | None,
    series: str | None,
    now: datetime | None = None,
) -> list[SeriesBands]:
    """Per series, the scored steps in [start, end): expected, lower, upper, actual, score, is_anomaly. Default
    range: the last 6 hours. At most MAX_BAND_STEPS steps × series per request (422 ``too_many_steps``)."""
    now = now or datetime.now(UTC)
    end = end or now
    start = start or end - DEFAULT_BAND_RANGE
    if start >= end:
        raise invalid_field(["query", "from"], "invalid_range", "from must be before to")
    series_id, labels = parse_selector(series)
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        detector = _known_detector(cur, project_id, detector_id)
        steps = math.ceil((end - start).total_seconds() / detector["interval_s"])
        cap = max(1, MAX_BAND_STEPS // max(steps, 1))
        rows = store.list_series(cur, detector_id, series_id=series_id, labels=labels, limit=cap + 1)
        if series_id is not None and not rows:
            raise NotFound("Series not found", details={"detector_id": str(detector_id), "series_id": series_id})
        if steps * len(rows) > MAX_BAND_STEPS:
            many = f"more than {cap}" if len(rows) > cap else str(len(rows))
            raise invalid_field(
                ["query", "from"],
                "too_many_steps",
                f"{steps} steps of {detector['interval_s']} s for {many} series is more than the {MAX_BAND_STEPS}"
                " steps (steps x series) a request may read: narrow from/to, or pick series with series=",
            )
        ids = [row["id"] for row in rows]
        points = store.band_points(cur, detector_id, detector["generation"], ids, start, end) if rows else []
    by_series: dict[int, list[BandPoint]] = {row["id"]: [] for row in rows}
    for point in points:
        by_series[point["series_id"]].append(
            BandPoint(
                time=point["time"],
                actual=point["value"],
                expected=point["expected"],
                lower=point["lower"],
                upper=point["upper"],
                score=point["score"],
                is_anomaly=point["is_anomaly"],
                provisional=point["provisional"],
            )
        )
    return [SeriesBands(series_id=row["id"], labels=row["labels"], points=by_series[row["id"]]) for row in rows]


# --- reads: anomaly events and groups -----------------------------------------------------------------------------


def list_anomalies(
    principal: Principal,
    project_id: UUID,
    *,
    detector_id: UUID | None,
    status: str | None,
    start: datetime | None,
    end: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AnomalyEvent], str | None]:
    """The project's anomaly events, newest (started) first; ``from``/``to``: those overlapping [from, to)."""
    if start is not None and end is not None and start >= end:
        raise invalid_field(["query", "from"], "invalid_range", "from must be before to")
    position = time_cursor_params(decode_cursor(cursor, TimeCursor))
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        rows = store.list_events(
            cur,
            project_id,
            detector_id=detector_id,
            status=status,
            start=start,
            end=end,
            after_ts=position["after_ts"],
            after_id=position["after_id"],
            limit=limit + 1,
        )
    rows, next_cursor = page(rows, limit, time_position("started_at"))
    return [to_event(row) for row in rows], next_cursor


def get_anomaly(principal: Principal, project_id: UUID, event_id: UUID) -> AnomalyEvent:
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        row = store.get_event(cur, project_id, event_id)
    if row is None:
        raise NotFound("Anomaly not found", details={"anomaly_id": str(event_id)})
    return to_event(row)


def _with_members(cur: Cursor, rows: list[dict[str, Any]]) -> list[AnomalyGroup]:
    members: dict[UUID, list[AnomalyEvent]] = {row["id"]: [] for row in rows}
    if rows:
        for member in store.group_members(cur, list(members)):
            members[member["group_id"]].append(to_event(member))
    return [
        AnomalyGroup(
            **{key: row[key] for key in AnomalyGroup.model_fields if key != "members"}, members=members[row["id"]]
        )
        for row in rows
    ]


def list_groups(
    principal: Principal, project_id: UUID, *, status: str | None, cursor: str | None, limit: int
) -> tuple[list[AnomalyGroup], str | None]:
    """The project's correlated anomaly groups, newest (started) first, each with its members."""
    after = decode_cursor(cursor, TimeCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        rows = store.list_groups(
            cur,
            project_id,
            status=status,
            after_ts=after.ts if after else None,
            after_id=after.id if after else None,
            limit=limit + 1,
        )
        kept, next_cursor = page(rows, limit, time_position("started_at"))
        return _with_members(cur, kept), next_cursor


def get_group(principal: Principal, project_id: UUID, group_id: UUID) -> AnomalyGroup:
    with tenant_transaction(principal.rls_claims()) as cur:
        _read(cur, principal, project_id)
        row = store.get_group(cur, project_id, group_id)
        if row is None:
            raise NotFound("Anomaly group not found", details={"group_id": str(group_id)})
        return _with_members(cur, [row])[0]
