"""Anomaly detection of a project: the backtest (a detector's settings over points the caller sends, nothing
stored). The detector CRUD, bands and anomaly events join this function. Thin: parse, one call, envelope.
See docs/anomalies.md."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body
from observai.anomalies import backtest
from observai.anomalies.backtest_models import MAX_BODY_BYTES, MAX_POINTS, BacktestIn, BacktestResult
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses

app = create_resolver()

BACKTEST_PATH = "/v1/projects/<project_id>/anomaly-detectors/backtest"


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


lambda_handler = lambda_handler_for(app, larger_bodies={("POST", BACKTEST_PATH): MAX_BODY_BYTES})
