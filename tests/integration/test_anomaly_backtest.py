"""The backtest route in-process (AnomaliesFunction's handler, real Postgres for the membership check): the
detector's settings over the caller's points, one entry per point, nothing stored; 25,000 points within 2 s; the
body limit (413), validation (422 with the field or the index), who may call it, and tenant isolation."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.anomalies.backtest_models import MAX_BODY_BYTES, MAX_POINTS
from observai.anomalies.detection import score_points
from observai.anomalies.settings_models import DetectorSettings

from tests.helpers.ingest import IngestProject, add_key, make_project
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user

pytestmark = pytest.mark.integration

T0 = datetime(2025, 12, 1, tzinfo=UTC)  # a year old


@dataclass
class Tenant:
    project: IngestProject  # an ingest key
    reader: IngestProject  # a read key of the same project
    viewer: User
    owner: User

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}/anomaly-detectors/backtest"


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    project = make_project(scopes=("ingest",), label="Backtest")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        viewer, owner = make_user(db), make_user(db)
        add_membership(db, project.org_id, viewer.id, "viewer")
        add_membership(db, project.org_id, owner.id, "owner")
    return Tenant(project, add_key(project, ("read",)), viewer, owner)


def series(n: int, *, seed: int = 7, spike_at: int | None = None) -> list[dict[str, Any]]:
    """Irregular spacing (1 minute to 2 hours), values around 1e9, one spike."""
    rng = random.Random(seed)
    t = T0
    points = []
    for i in range(n):
        t += timedelta(seconds=rng.choice((60, 60, 60, 300, 7200)))
        value = 1e9 + rng.gauss(0, 1000) + (50_000 if i == spike_at else 0)
        points.append({"time": t.isoformat().replace("+00:00", "Z"), "value": value})
    return points


def backtest(tenant: Tenant, headers: dict[str, str], body: Any) -> Result:
    return invoke("anomalies", "POST", tenant.path, headers=headers, json_body=body)


def test_backtest_scores_every_point_as_the_fold_does(tenant: Tenant) -> None:
    # Given a series with a spike after the warm-up, and a detector that flags a single point
    points = series(500, spike_at=300)
    detector = {"algorithm": "robust", "window": 60, "trigger_window": 1, "trigger_fraction": 1, "min_band_rel": 0}
    # When a viewer backtests it
    result = backtest(tenant, tenant.viewer.headers, {"detector": detector, "points": points})
    # Then there is one entry per point, the warm-up has no band, the spike is anomalous
    assert result.status == 200, result.text
    data = result.data
    for key in ("scores", "is_anomaly", "expected", "lower", "upper", "algorithms"):
        assert len(data[key]) == 500
    assert data["warmup_points"] == 60
    assert data["expected"][:60] == [None] * 60 and data["expected"][60] is not None
    assert data["is_anomaly"][300] and data["scores"][300] > 0.9
    assert data["algorithm"] == "robust"
    # and the numbers are the fold's own, to the last bit (full float precision)
    settings = DetectorSettings.model_validate(detector).model_dump()
    parsed = [(datetime.fromisoformat(p["time"]), p["value"]) for p in points]
    steps = score_points(settings, None, parsed).points
    assert data["scores"] == [s.score for s in steps]
    assert data["upper"] == [s.upper for s in steps]
    assert all(0.0 <= s <= 1.0 for s in data["scores"])


def test_a_read_key_may_backtest_and_a_prefix_scores_the_same(tenant: Tenant) -> None:
    # Given a series and a prefix of it
    points = series(400, seed=3)
    whole = backtest(tenant, tenant.reader.headers, {"detector": {}, "points": points})
    prefix = backtest(tenant, tenant.reader.headers, {"detector": {}, "points": points[:250]})
    # Then the read key may, the defaults are auto's, and the prefix's scores are the whole's first ones
    assert whole.status == 200 and prefix.status == 200, (whole.text, prefix.text)
    assert prefix.data["scores"] == whole.data["scores"][:250]
    assert prefix.data["upper"] == whole.data["upper"][:250]
    assert whole.data["algorithm_reason"].startswith("auto")


def test_an_ingest_key_may_not_backtest(tenant: Tenant) -> None:
    result = backtest(tenant, tenant.project.headers, {"detector": {}, "points": series(5)})
    assert result.status == 403
    assert result.error["code"] == "scope_missing"


def test_another_organization_gets_404(tenant: Tenant, database_url: str) -> None:
    # Given another organization's owner and read key
    other = make_project(scopes=("read",), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        stranger = make_user(db)
        add_membership(db, other.org_id, stranger.id, "owner")
    body = {"detector": {}, "points": series(5)}
    # When they backtest on this project
    for headers in (stranger.headers, other.headers):
        result = backtest(tenant, headers, body)
        # Then the project does not exist for them
        assert result.status == 404, result.text


def test_25000_points_are_each_scored_with_no_nan(tenant: Tenant) -> None:
    # Given 25,000 points (about 1.2 MB of JSON), irregular, around 1e9
    points = series(25_000, seed=11, spike_at=20_000)
    body = {"detector": {"algorithm": "auto"}, "points": points}
    assert len(json.dumps(body)) > 1_000_000
    # When they are backtested (its time is measured by `make bench --part anomalies-quality`, target <= 2 s)
    result = backtest(tenant, tenant.viewer.headers, body)
    # Then every point is scored, with no NaN anywhere
    assert result.status == 200, result.text[:500]
    assert len(result.data["scores"]) == 25_000
    for key in ("scores", "expected", "lower", "upper"):
        assert all(v is None or math.isfinite(v) for v in result.data[key])


def test_larger_bodies_get_413_with_the_limit(tenant: Tenant) -> None:
    # Given a body past the route's limit
    points = series(10, seed=1)
    body = json.dumps({"detector": {}, "points": points, "pad": "x" * MAX_BODY_BYTES})
    result = invoke(
        "anomalies",
        "POST",
        tenant.path,
        headers={**tenant.viewer.headers, "content-type": "application/json"},
        body=body,
    )
    assert result.status == 413
    assert str(MAX_BODY_BYTES) in result.error["message"]
    # and more points than the backtest takes (in a body under the limit)
    many = [{"time": f"2026-01-01T00:00:{0:02d}Z", "value": 0}] * (MAX_POINTS + 1)
    result = backtest(tenant, tenant.viewer.headers, {"detector": {}, "points": many})
    assert result.status == 413
    assert f"{MAX_POINTS}" in result.error["message"]


def test_the_larger_limit_is_this_routes_only(tenant: Tenant) -> None:
    # Given a 1.5 MB body (over the API's default 1 MB, under the backtest's 4 MB) sent to another path
    body = json.dumps({"detector": {}, "points": series(10), "pad": "x" * 1_500_000})
    headers = {**tenant.viewer.headers, "content-type": "application/json"}
    other = f"/v1/projects/{tenant.project.project_id}/anomaly-detectors"
    result = invoke("anomalies", "POST", other, headers=headers, body=body)
    # Then it is refused with the default limit
    assert result.status == 413
    assert result.error["details"]["limit_bytes"] == 1_048_576
    assert MAX_BODY_BYTES > 1_048_576


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (
            {"detector": {"window": 5}, "points": [{"time": "2026-01-01T00:00:00Z", "value": 1}]},
            ["body", "detector", "window"],
        ),
        (
            {"detector": {"algorithm": "magic"}, "points": [{"time": "2026-01-01T00:00:00Z", "value": 1}]},
            ["body", "detector", "algorithm"],
        ),
        (
            {"detector": {"windw": 60}, "points": [{"time": "2026-01-01T00:00:00Z", "value": 1}]},
            ["body", "detector", "windw"],
        ),
        (
            {"detector": {"trigger_fraction": 0}, "points": [{"time": "2026-01-01T00:00:00Z", "value": 1}]},
            ["body", "detector", "trigger_fraction"],
        ),
        (
            {"detector": {}, "points": [{"time": "2026-01-01T00:00:00Z", "value": "NaN"}]},
            ["body", "points", "0", "value"],
        ),
        (
            {"detector": {}, "points": [{"time": "2026-01-01T00:00:00Z", "value": "1.5"}]},
            ["body", "points", "0", "value"],
        ),
        ({"detector": {}, "points": [{"time": "2026-01-01T00:00:00", "value": 1}]}, ["body", "points", "0", "time"]),
        ({"detector": {}, "points": []}, ["body", "points"]),
    ],
)
def test_bad_settings_and_points_are_422_with_the_field(tenant: Tenant, body: Any, loc: list[str]) -> None:
    result = backtest(tenant, tenant.viewer.headers, body)
    assert result.status == 422, result.text
    locs = [[str(part) for part in d["loc"]] for d in result.error["details"]]
    assert loc in locs, locs


def test_unsorted_points_are_422_with_the_index(tenant: Tenant) -> None:
    points = series(10, seed=2)
    points[6], points[7] = points[7], points[6]
    result = backtest(tenant, tenant.viewer.headers, {"detector": {}, "points": points})
    assert result.status == 422
    detail = result.error["details"][0]
    assert detail["loc"] == ["body", "points", "7", "time"]
    assert "point 7" in detail["message"]


def test_non_finite_literals_are_refused(tenant: Tenant) -> None:
    # JSON has no NaN: a literal is malformed JSON (400), a number overflowing to infinity too
    for literal in ("NaN", "Infinity", "1e999"):
        body = '{"detector": {}, "points": [{"time": "2026-01-01T00:00:00Z", "value": ' + literal + "}]}"
        result = invoke(
            "anomalies",
            "POST",
            tenant.path,
            headers={**tenant.viewer.headers, "content-type": "application/json"},
            body=body,
        )
        assert result.status in (400, 422), (literal, result.text)
