"""The alert state machine, as a pure function of the previous state and one evaluation.

    inactive ──(condition true)──> pending ──(true for ``for``)──> firing ──(false)──> resolved
        ^                            │                               │  ^                  │
        └────────(false)─────────────┘            keep_firing_for ───┘  └─────(true)── pending (again)

* ``for`` 0: the first true evaluation fires at once (one transition, inactive → firing).
* pending → firing when the condition has held for ``for`` (``now - active_at >= for``); a false evaluation in
  between sends it back to inactive (the clock restarts).
* firing stays firing while the condition holds, and after it clears for as long as the last true evaluation is
  at most ``keep_firing_for`` ago (against flapping); then resolved.
* resolved (and inactive) instances re-enter pending (or firing, with ``for`` 0) when the condition holds again.
* a series missing from the result counts as a false condition (the caller passes ``active=False``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

State = Literal["inactive", "pending", "firing", "resolved"]


@dataclass(frozen=True, slots=True)
class InstanceState:
    state: State = "inactive"
    value: float | None = None
    active_at: datetime | None = None  # the condition has held since (pending, firing)
    fired_at: datetime | None = None  # the last time it went firing
    resolved_at: datetime | None = None  # the last time it resolved
    last_true_at: datetime | None = None  # the last evaluation that found the condition true


INACTIVE = InstanceState()


def next_state(
    previous: InstanceState | None,
    *,
    active: bool,
    value: float | None,
    now: datetime,
    for_s: int,
    keep_firing_for_s: int,
) -> InstanceState:
    """The instance's state after an evaluation at ``now`` that found the condition ``active`` with ``value``."""
    prev = previous or INACTIVE
    if active:
        if prev.state == "firing":
            return replace(prev, value=value, last_true_at=now)
        active_at = prev.active_at if prev.state == "pending" and prev.active_at is not None else now
        if now - active_at >= timedelta(seconds=for_s):
            return replace(prev, state="firing", value=value, active_at=active_at, fired_at=now, last_true_at=now)
        return replace(prev, state="pending", value=value, active_at=active_at, last_true_at=now)
    if prev.state == "firing":
        kept = prev.last_true_at is not None and now - prev.last_true_at <= timedelta(seconds=keep_firing_for_s)
        if keep_firing_for_s > 0 and kept:
            return replace(prev, value=value)
        return replace(prev, state="resolved", value=value, active_at=None, resolved_at=now)
    if prev.state == "pending":
        return replace(prev, state="inactive", value=value, active_at=None)
    return replace(prev, value=value)
