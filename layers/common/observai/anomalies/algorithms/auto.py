"""auto: being written (issue 15); robust until then."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observai.anomalies.algorithms.robust import Robust


class Auto(Robust):
    def __init__(self, settings: Mapping[str, Any], state: dict[str, Any] | None) -> None:
        super().__init__(settings, state)
        self.reason = "auto: not written yet, robust meanwhile"
