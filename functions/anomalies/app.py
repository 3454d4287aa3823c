"""Anomaly detection of a project: detectors (create, list, read, change, delete), their bands and series, the
anomaly events they found and their correlated groups; and the backtest (a detector's settings over points the
caller sends, nothing stored).

Detectors are written by people with the member role and up, or an API key of the project with the ``admin``
scope, every write audited; everything is read by viewers and up, or a ``read`` key of the project. The scoring
itself is DetectAnomaliesFunction's. Thin: parse, one call, envelope. See docs/anomalies.md and
docs/anomalies-api.md.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from observai.anomalies import backtest, detectors
from observai.anomalies.backtest_models import MAX_BODY_BYTES, MAX_POINTS, BacktestIn, BacktestResult
from observai.anomalies.detector_models import (
    AnomalyEvent,
    AnomalyGroup,
    Detector,
    DetectorDeleted,
    DetectorIn,
    DetectorPatch,
    DetectorSeries,
    SeriesBands,
)
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.params import Cursor, Limit
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses
from observai.pagination import DEFAULT_LIMIT
from observai.timetext import AwareDateTimeText

app = create_resolver()

DETECTORS = "/v1/projects/<project_id>/anomaly-detectors"
DETECTOR = f"{DETECTORS}/<detector_id>"
From = Annotated[AwareDateTimeText | None, Query(alias="from", description="RFC 3339 start (inclusive)")]
To = Annotated[AwareDateTimeText | None, Query(alias="to", description="RFC 3339 end (exclusive)")]
Status = Annotated[Literal["open", "closed"] | None, Query(description="open or closed")]
BACKTEST_PATH = f"{DETECTORS}/backtest"


@app.post(
    BACKTEST_PATH,
    tags=["anomalies"],
    responses=route_responses(
        200,
        e413=f"the body is larger than {MAX_BODY_BYTES} bytes, or has more than {MAX_POINTS} points",
        e422="bad settings (the field named), points out of time order (the index), a value that is not a number",
    ),
)
def backtest_detector(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[BacktestIn, Body()]
) -> Envelope[BacktestResult]:
    """Score points with a detector's settings, exactly as the detect-anomalies job would score them as a new series
    (one entry per point, in order), storing nothing. Up to 50,000 points in ascending time order. Viewers and up,
    or a `read` key. See docs/anomalies.md."""
    return ok(backtest.run_backtest(caller, project_id, body))


@app.post(
    DETECTORS,
    status_code=201,
    tags=["anomalies"],
    responses=route_responses(201, e409="the project has 200 detectors already (detector_limit_reached)"),
)
def create_detector(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[DetectorIn, Body()]
) -> Envelope[Detector]:
    """Watch a metric query: one baseline per series it yields (members and up, or an admin key)."""
    return ok(detectors.create_detector(caller, project_id, body))


@app.get(DETECTORS, tags=["anomalies"])
def list_detectors(
    caller: CurrentPrincipal, project_id: UUID, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Envelope[list[Detector]]:
    """The project's detectors, newest first."""
    items, next_cursor = detectors.list_detectors(caller, project_id, cursor, limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get(DETECTOR, tags=["anomalies"])
def get_detector(caller: CurrentPrincipal, project_id: UUID, detector_id: UUID) -> Envelope[Detector]:
    return ok(detectors.get_detector(caller, project_id, detector_id))


@app.patch(DETECTOR, tags=["anomalies"])
def patch_detector(
    caller: CurrentPrincipal, project_id: UUID, detector_id: UUID, body: Annotated[DetectorPatch, Body()]
) -> Envelope[Detector]:
    """Change some fields (those left out keep their value). A new query, settings or interval_s resets the
    baselines: the job re-warms them from the recent history (see docs/anomalies-api.md)."""
    return ok(detectors.update_detector(caller, project_id, detector_id, body))


@app.delete(DETECTOR, tags=["anomalies"])
def delete_detector(caller: CurrentPrincipal, project_id: UUID, detector_id: UUID) -> Envelope[DetectorDeleted]:
    """Delete the detector: its open anomalies close now, and it disappears from every read."""
    return ok(detectors.delete_detector(caller, project_id, detector_id))


@app.get(
    f"{DETECTOR}/bands",
    tags=["anomalies"],
    responses=route_responses(200, e422="more than 10,000 steps × series (too_many_steps), or from after to"),
)
def get_bands(
    caller: CurrentPrincipal,
    project_id: UUID,
    detector_id: UUID,
    from_: From = None,
    to: To = None,
    series: Annotated[
        str | None,
        Query(max_length=2048, description="A series id, or labels `key=value,key2=value2`; default: every series"),
    ] = None,
) -> Envelope[list[SeriesBands]]:
    """Expected value, band (lower, upper), actual value, score and verdict per step, for chart overlays; default
    range: the last 6 hours."""
    return ok(detectors.bands(caller, project_id, detector_id, start=from_, end=to, series=series))


@app.get(f"{DETECTOR}/series", tags=["anomalies"])
def list_series(
    caller: CurrentPrincipal,
    project_id: UUID,
    detector_id: UUID,
    anomalous: Annotated[bool | None, Query(description="Only anomalous (true) or normal (false) series")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[DetectorSeries]]:
    """The detector's series: labels, the algorithm scoring each and why, whether it is anomalous now."""
    items, next_cursor = detectors.list_series(
        caller, project_id, detector_id, anomalous=anomalous, cursor=cursor, limit=limit
    )
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/anomalies", tags=["anomalies"])
def list_anomalies(
    caller: CurrentPrincipal,
    project_id: UUID,
    detector_id: Annotated[UUID | None, Query(description="Only this detector's anomalies")] = None,
    status: Status = None,
    from_: From = None,
    to: To = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[AnomalyEvent]]:
    """The project's anomaly events, newest first; from/to keep those overlapping [from, to)."""
    items, next_cursor = detectors.list_anomalies(
        caller, project_id, detector_id=detector_id, status=status, start=from_, end=to, cursor=cursor, limit=limit
    )
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/anomalies/<anomaly_id>", tags=["anomalies"])
def get_anomaly(caller: CurrentPrincipal, project_id: UUID, anomaly_id: UUID) -> Envelope[AnomalyEvent]:
    return ok(detectors.get_anomaly(caller, project_id, anomaly_id))


@app.get("/v1/projects/<project_id>/anomaly-groups", tags=["anomalies"])
def list_groups(
    caller: CurrentPrincipal,
    project_id: UUID,
    status: Status = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Envelope[list[AnomalyGroup]]:
    """Correlated anomaly groups (anomalies overlapping in time and sharing labels), newest first, with members."""
    items, next_cursor = detectors.list_groups(caller, project_id, status=status, cursor=cursor, limit=limit)
    return ok(items, next_cursor=next_cursor, limit=limit)


@app.get("/v1/projects/<project_id>/anomaly-groups/<group_id>", tags=["anomalies"])
def get_group(caller: CurrentPrincipal, project_id: UUID, group_id: UUID) -> Envelope[AnomalyGroup]:
    return ok(detectors.get_group(caller, project_id, group_id))


lambda_handler = lambda_handler_for(app, larger_bodies={("POST", BACKTEST_PATH): MAX_BODY_BYTES})
