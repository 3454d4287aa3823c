"""The detection algorithms and their fold (observai.anomalies.detection.score_points)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from observai.anomalies.detection import Scored


def fold(
    settings: Mapping[str, Any], state: Mapping[str, Any] | None, points: Sequence[tuple[datetime, float]]
) -> Scored:
    raise NotImplementedError("the detection algorithms are being written (issue 15)")
