"""The alert state machine (observai.alerts.states) against a small reference model, on random condition
sequences, ``for`` and ``keep_firing_for``; and the fingerprint of alert labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from observai.alerts.labels import alert_labels, fingerprint
from observai.alerts.states import InstanceState, next_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def reference(events: list[tuple[int, bool]], for_s: int, keep_s: int) -> list[str]:
    """The states a Prometheus-style alert goes through, written as a plain record of the current streak of true
    evaluations, the last true one, and whether the alert is firing."""
    states: list[str] = []
    streak_start: int | None = None
    last_true: int | None = None
    firing = False
    previous = "inactive"
    for t, holds in events:
        if holds:
            last_true = t
            if streak_start is None:
                streak_start = t
            firing = firing or t - streak_start >= for_s
            state = "firing" if firing else "pending"
        else:
            streak_start = None
            if firing and keep_s > 0 and last_true is not None and t - last_true <= keep_s:
                state = "firing"
            elif firing:
                firing = False
                state = "resolved"
            else:
                state = "resolved" if previous == "resolved" else "inactive"
        states.append(state)
        previous = state
    return states


def run_machine(events: list[tuple[int, bool]], for_s: int, keep_s: int) -> list[InstanceState]:
    state: InstanceState | None = None
    out = []
    for t, holds in events:
        state = next_state(
            state, active=holds, value=1.0 if holds else None, now=T0 + timedelta(seconds=t), for_s=for_s,
            keep_firing_for_s=keep_s,
        )  # fmt: skip
        out.append(state)
    return out


events_strategy = st.lists(st.tuples(st.integers(min_value=1, max_value=180), st.booleans()), max_size=60).map(
    lambda steps: [(sum(gap for gap, _ in steps[: i + 1]), holds) for i, (_, holds) in enumerate(steps)]
)
durations = st.sampled_from([0, 30, 60, 90, 120, 300]) | st.integers(min_value=0, max_value=900)


@settings(max_examples=400, deadline=None)
@given(events=events_strategy, for_s=durations, keep_s=durations)
def test_the_state_machine_agrees_with_the_reference_model(
    events: list[tuple[int, bool]], for_s: int, keep_s: int
) -> None:
    # Given random evaluation times and condition outcomes, a random for and keep_firing_for
    # When the machine steps through them
    states = run_machine(events, for_s, keep_s)
    # Then every state is the reference model's
    assert [s.state for s in states] == reference(events, for_s, keep_s)
    # And the bookkeeping holds: firing only after the condition held for `for` without a break, fired_at and
    # resolved_at are the times of those transitions, active_at is set exactly while pending or firing
    previous = "inactive"
    for (t, holds), state in zip(events, states, strict=True):
        now = T0 + timedelta(seconds=t)
        if state.state == "firing" and previous != "firing":
            assert holds and state.fired_at == now
            assert state.active_at is not None and now - state.active_at >= timedelta(seconds=for_s)
        if state.state == "resolved" and previous != "resolved":
            assert previous == "firing" and state.resolved_at == now and not holds
        assert (state.active_at is not None) == (state.state in ("pending", "firing")) or (
            state.state == "firing" and not holds
        )
        if holds:
            assert state.last_true_at == now
        previous = state.state


def test_for_zero_fires_at_the_first_true_evaluation() -> None:
    # Given for 0 / When the condition first holds / Then it fires at once (no pending step)
    assert [s.state for s in run_machine([(0, True), (60, False)], 0, 0)] == ["firing", "resolved"]


def test_pending_fires_once_for_has_passed_and_a_false_evaluation_restarts_the_clock() -> None:
    events = [(0, True), (60, True), (120, True), (180, False), (240, True), (300, True), (360, True)]
    assert [s.state for s in run_machine(events, 120, 0)] == [
        "pending", "pending", "firing", "resolved", "pending", "pending", "firing",
    ]  # fmt: skip


def test_keep_firing_for_holds_the_alert_through_a_short_gap() -> None:
    # Given keep_firing_for 2m / When the condition clears for one evaluation, then for three
    events = [(0, True), (60, False), (120, True), (180, False), (240, False), (300, False)]
    # Then the first gap never resolves it; the second resolves it once the last true evaluation is over 2m ago
    assert [s.state for s in run_machine(events, 0, 120)] == [
        "firing", "firing", "firing", "firing", "firing", "resolved",
    ]  # fmt: skip


def test_a_resolved_alert_re_enters_pending() -> None:
    events = [(0, True), (60, False), (120, True), (180, False)]
    assert [s.state for s in run_machine(events, 60, 0)] == ["pending", "inactive", "pending", "inactive"]
    assert [s.state for s in run_machine(events, 0, 0)] == ["firing", "resolved", "firing", "resolved"]


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=8), st.randoms())
def test_fingerprints_are_stable_across_label_order(series: dict[str, str], rng: object) -> None:
    # Given the same labels built in two different orders
    items = list(series.items())
    rng.shuffle(items)  # type: ignore[attr-defined]
    first = alert_labels("High latency", "critical", {"team": "api"}, series)
    second = alert_labels("High latency", "critical", {"team": "api"}, dict(items))
    # Then their fingerprints are equal, and differ from another label set's
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint({**first, "alertname": "Other"})
