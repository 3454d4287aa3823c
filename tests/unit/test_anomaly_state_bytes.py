"""detect-anomalies' stored fold states: MessagePack, exact (NaN, infinities, 1e9 ± tiny), smaller than the JSON
text stored before migration 0045, which is still read."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

import orjson
from observai.anomalies.detection import score_points
from observai.anomalies.job import _state_bytes, _state_of
from observai.anomalies.settings_models import DetectorSettings


def auto_state() -> dict:
    rng = random.Random(1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    points = [(t0 + timedelta(minutes=i), 1e9 + rng.gauss(0, 1e-3)) for i in range(3000)]
    return score_points(DetectorSettings().model_dump(), None, points).state


def test_a_state_round_trips_exactly_and_smaller_than_json() -> None:
    # Given auto's state after two days of 1e9-level points, with a NaN and infinities inside
    state = auto_state()
    state["odd"] = [math.nan, math.inf, -math.inf, None, 5e-324, 2**53 + 1]
    # When stored and read back
    stored = _state_bytes(state)
    back = _state_of(stored)
    # Then every value is the same (NaN as NaN), and it is smaller than its JSON text
    assert back is not None
    assert math.isnan(back["odd"][0]) and back["odd"][1:] == state["odd"][1:]
    del back["odd"], state["odd"]
    assert back == state
    assert len(stored) < 0.8 * len(orjson.dumps(state))


def test_a_state_stored_as_json_before_is_still_read() -> None:
    state = auto_state()
    assert _state_of(orjson.dumps(state)) == state
    assert _state_of(json.dumps({"x": math.nan}).encode())["x"] != 0  # type: ignore[index]
    assert _state_of(None) is None
