"""The backtest: a detector's settings over points the caller sends, scored by the job's own fold
(observai.anomalies.detection.score_points from an empty state), nothing stored. Whoever may read the project's
telemetry may run it (viewers and up, ``read`` keys); the database is touched for that check only."""

from __future__ import annotations

from uuid import UUID

from observai.anomalies.backtest_models import MAX_POINTS, BacktestIn, BacktestResult
from observai.anomalies.detection import score_points
from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction
from observai.errors import PayloadTooLarge, invalid_field
from observai.tenancy.access import authorize_telemetry


def run_backtest(principal: Principal, project_id: UUID, body: BacktestIn) -> BacktestResult:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
    if len(body.points) > MAX_POINTS:
        raise PayloadTooLarge(
            f"The backtest takes at most {MAX_POINTS} points; this request has {len(body.points)}",
            details={"limit_points": MAX_POINTS},
        )
    points = [(point.time, point.value) for point in body.points]
    for index in range(1, len(points)):
        if points[index][0] <= points[index - 1][0]:
            raise invalid_field(
                ["body", "points", index, "time"],
                "not_ascending",
                f"points must be in ascending time order: point {index} ({points[index][0].isoformat()}) is not "
                f"after point {index - 1} ({points[index - 1][0].isoformat()})",
            )
    scored = score_points(body.detector.model_dump(), None, points)
    steps = scored.points
    return BacktestResult(
        scores=[step.score for step in steps],
        is_anomaly=[step.is_anomaly for step in steps],
        expected=[step.expected for step in steps],
        lower=[step.lower for step in steps],
        upper=[step.upper for step in steps],
        algorithms=[step.algorithm for step in steps],
        algorithm=scored.algorithm,
        algorithm_reason=scored.algorithm_reason,
        warmup_points=scored.warmup_points,
    )
