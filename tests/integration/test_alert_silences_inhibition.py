"""Silences and inhibition at the dispatcher, with an injected clock: the matrix of matching and non-matching
matchers and of equal labels present, absent and different; silences pending, active, ended; a resolution that
happened while silenced; silences that expire when their alerts resolve. A silenced alert still records its
transitions (they are the evaluator's rows, never touched here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from observai.alerts.dispatch import flush_group, sweep
from observai.alerts.routing import route_transitions

from tests.helpers.alert_rows import AlertBoard, new_board

pytestmark = pytest.mark.integration

T0 = datetime(2031, 5, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def board(db: psycopg.Connection) -> AlertBoard:
    return new_board(db, "Silences")


def m(label: str, op: str, value: str) -> dict[str, str]:
    return {"label": label, "op": op, "value": value}


def fired_names(board: AlertBoard) -> list[list[str]]:
    return [
        sorted(e["labels"]["alertname"] + ":" + e["labels"].get("service", "") for e in r["firing"])
        for r in board.log()
    ]


# --- silences: which alerts a silence mutes --------------------------------------------------------------------

SILENCE_MATRIX = [
    ([m("service", "=", "api")], {"service": "api"}, True),
    ([m("service", "=", "api")], {"service": "web"}, False),
    ([m("service", "=~", "ap")], {"service": "api"}, False),  # regexes are anchored: "ap" is not "api"
    ([m("service", "=~", "api|web")], {"service": "web"}, True),
    ([m("service", "!~", "db.*")], {"service": "api"}, True),
    ([m("team", "=", ""), m("service", "=", "api")], {"service": "api"}, True),  # absent label is ""
    ([m("team", "!=", ""), m("service", "=", "api")], {"service": "api"}, False),
    ([m("team", "=", "ops"), m("service", "=", "api")], {"service": "api", "team": "web"}, False),  # all must match
]


@pytest.mark.parametrize(("matchers", "labels", "silenced"), SILENCE_MATRIX)
def test_an_active_silence_mutes_exactly_the_alerts_its_matchers_all_match(
    board: AlertBoard, matchers: list[dict[str, str]], labels: dict[str, str], silenced: bool
) -> None:
    # Given an active silence, and an alert firing
    board.silence(matchers, at(-60), at(3600))
    board.fire(at(0), **labels)
    route_transitions(at(0))

    # When its group flushes
    result = flush_group(board.group()["id"], at(30))

    # Then it is notified unless the silence matches it
    assert (result.outcome == "notified") is not silenced
    assert len(board.log()) == (0 if silenced else 1)
    # And the alert's transition is recorded either way (routed, kept)
    (transition,) = board.db.execute(
        "select to_state, routed_at from public.alert_transitions where project_id = %s", (board.project_id,)
    ).fetchall()
    assert transition["to_state"] == "firing" and transition["routed_at"] == at(0)


@pytest.mark.parametrize(
    ("starts", "ends", "expired", "silenced"),
    [(-60, 3600, False, True), (60, 3600, False, False), (-3600, -60, False, False), (-60, 3600, True, False)],
    ids=["active", "pending", "ended", "expired-by-hand"],
)
def test_only_a_silence_in_force_mutes(
    board: AlertBoard, starts: int, ends: int, expired: bool, silenced: bool
) -> None:
    silence_id = board.silence([m("service", "=", "api")], at(starts), at(ends))
    if expired:
        board.db.execute("update public.silences set expired_at = %s where id = %s", (at(-1), silence_id))
    board.fire(at(0), service="api")
    route_transitions(at(0))
    assert (flush_group(board.group()["id"], at(30)).outcome == "notified") is not silenced


def test_a_silenced_alert_notifies_when_its_silence_ends(board: AlertBoard) -> None:
    # Given an alert firing under a silence that ends at +600 s
    board.silence([m("service", "=", "api")], at(-60), at(600))
    board.fire(at(0), service="api")
    route_transitions(at(0))

    # When its group flushes during the silence, Then nothing is sent, and the next flush is the silence's end
    result = flush_group(board.group()["id"], at(30))
    assert result.outcome == "nothing_new" and result.next_flush_at == at(600)

    # When the silence has ended, Then the alert is notified
    sweep(at(600))
    assert [r["reason"] for r in board.log()] == ["first"]


@pytest.mark.parametrize("after_silence", [True, False])
def test_a_resolution_while_silenced_is_announced_after_the_silence_if_configured(
    board: AlertBoard, after_silence: bool
) -> None:
    # Given a notified alert, then silenced, which resolves under the silence
    board.put_policy({"notify_resolved_after_silence": after_silence})
    alert = board.fire(at(0), service="api")
    route_transitions(at(0))
    flush_group(board.group()["id"], at(30))
    board.silence([m("service", "=", "api")], at(60), at(1000))
    board.resolve(alert, at(100))
    route_transitions(at(100))

    # When the group flushes during the silence, Then nothing is sent
    sweep(at(330))
    assert [r["reason"] for r in board.log()] == ["first"]

    # When the silence has ended
    sweep(at(1000))

    # Then the resolution is announced once if configured, else never; the group is resolved either way
    assert [r["reason"] for r in board.log()] == (["first", "resolved"] if after_silence else ["first"])
    assert board.group()["status"] == "resolved"
    sweep(at(5000))
    assert len(board.log()) == (2 if after_silence else 1)
    # And the incident resolved with its alert either way
    (incident,) = board.db.execute(
        "select status from public.incidents where project_id = %s", (board.project_id,)
    ).fetchall()
    assert incident["status"] == "resolved"


def test_a_silence_that_expires_when_resolved_expires_once_its_alerts_have_resolved(board: AlertBoard) -> None:
    # Given a silence set to expire when its alerts resolve, muting two firing alerts
    silence_id = board.silence([m("alertname", "=", "HighLatency")], at(-60), at(86400), expire_when_resolved=True)
    a = board.fire(at(0), service="api")
    b = board.fire(at(0), service="web")
    route_transitions(at(0))
    sweep(at(30))

    def expired_at() -> Any:
        return board.db.execute("select expired_at from public.silences where id = %s", (silence_id,)).fetchone()[
            "expired_at"
        ]

    # When one resolves, Then the silence holds (the other still fires)
    board.resolve(a, at(100))
    route_transitions(at(100))
    sweep(at(100))
    assert expired_at() is None

    # When the other resolves too, Then the silence expires; nothing was ever notified
    board.resolve(b, at(200))
    route_transitions(at(200))
    sweep(at(200))
    assert expired_at() == at(200)
    assert board.log() == []


# --- inhibition ------------------------------------------------------------------------------------------------

INHIBIT = {
    "inhibit_rules": [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["cluster"],
        }
    ]
}

# (source labels, target labels, inhibited): matching / non-matching matchers × equal labels present, absent,
# different.
INHIBIT_MATRIX = [
    ({"severity": "critical", "cluster": "a"}, {"severity": "warning", "cluster": "a"}, True),
    ({"severity": "critical", "cluster": "a"}, {"severity": "warning", "cluster": "b"}, False),  # different
    ({"severity": "critical"}, {"severity": "warning"}, True),  # absent on both: equal, as in Alertmanager
    ({"severity": "critical"}, {"severity": "warning", "cluster": "a"}, False),  # absent on one side only
    ({"severity": "error", "cluster": "a"}, {"severity": "warning", "cluster": "a"}, False),  # not a source
    ({"severity": "critical", "cluster": "a"}, {"severity": "info", "cluster": "a"}, False),  # not a target
]


@pytest.mark.parametrize(("source", "target", "inhibited"), INHIBIT_MATRIX)
def test_inhibition_matrix(board: AlertBoard, source: dict[str, str], target: dict[str, str], inhibited: bool) -> None:
    # Given the inhibition rule, a source alert firing and a target alert firing (in their own groups)
    board.put_policy(INHIBIT)
    board.fire(at(0), "NodeDown", **source)
    board.fire(at(0), "HighLatency", **target)
    route_transitions(at(0))

    # When both groups flush
    sweep(at(30))

    # Then the source is notified, and the target unless inhibited
    notified = {r["group_labels"]["alertname"] for r in board.log()}
    assert "NodeDown" in notified
    assert ("HighLatency" not in notified) is inhibited


def test_an_inhibited_alert_notifies_once_its_source_resolves(board: AlertBoard) -> None:
    # Given a target inhibited by a firing source
    board.put_policy(INHIBIT)
    source = board.fire(at(0), "NodeDown", severity="critical", cluster="a")
    board.fire(at(0), "HighLatency", severity="warning", cluster="a")
    route_transitions(at(0))
    sweep(at(30))
    target_group = board.group(alertname="HighLatency")
    assert target_group["next_flush_at"] == at(330)  # looked at again every group_interval while inhibited

    # When the source resolves
    board.resolve(source, at(100))
    route_transitions(at(100))
    sweep(at(330))

    # Then the target is notified at its next tick, and the source's resolution too
    by_group = {(r["group_labels"]["alertname"], r["reason"]) for r in board.log()}
    assert by_group == {("NodeDown", "first"), ("NodeDown", "resolved"), ("HighLatency", "first")}


def test_an_alert_matching_both_sides_never_inhibits_itself(board: AlertBoard) -> None:
    # Given a rule whose source and target matchers both match the same alerts
    board.put_policy(
        {"inhibit_rules": [{"source_matchers": ['team="ops"'], "target_matchers": ['team="ops"'], "equal": []}]}
    )
    board.fire(at(0), "DiskFull", team="ops", service="a")
    board.fire(at(0), "DiskFull", team="ops", service="b")
    route_transitions(at(0))

    # When the group flushes, Then both are notified (two alerts matching both sides do not mute each other)
    sweep(at(30))
    assert fired_names(board) == [["DiskFull:a", "DiskFull:b"]]


def test_mute_time_intervals_hold_notifications_until_they_end(board: AlertBoard) -> None:
    # Given a route muted on Mondays from 09:00 to 10:00 UTC (T0 is a Monday, 09:00)
    board.put_policy(
        {
            "route": {"routes": [{"matchers": ['service="api"'], "mute_time_intervals": ["standup"]}]},
            "mute_time_intervals": [
                {
                    "name": "standup",
                    "time_intervals": [
                        {"weekdays": ["monday"], "times": [{"start_time": "09:00", "end_time": "10:00"}]}
                    ],
                }
            ],
        }
    )
    board.fire(at(0), service="api")
    route_transitions(at(0))

    # When the group flushes inside the interval, Then nothing is sent and it looks again every group_interval
    result = flush_group(board.group()["id"], at(30))
    assert result.outcome == "muted" and result.next_flush_at == at(330)
    sweep(at(3300))
    assert board.log() == []

    # When the interval is over, Then the alert is notified
    sweep(at(3600 + 300))
    assert [r["reason"] for r in board.log()] == ["first"]


def test_an_alert_that_left_silently_under_a_silence_is_notified_when_it_fires_again(board: AlertBoard) -> None:
    # Given a notified alert that resolved under a silence, with resolutions after silences not announced
    board.put_policy({"notify_resolved_after_silence": False})
    alert = board.fire(at(0), service="api")
    route_transitions(at(0))
    sweep(at(30))
    board.silence([m("service", "=", "api")], at(60), at(600))
    board.resolve(alert, at(100))
    route_transitions(at(100))
    sweep(at(330))
    assert board.group()["status"] == "resolved"

    # When it fires again after the silence
    board.fire(at(1000), service="api")
    route_transitions(at(1000))
    sweep(at(1030))

    # Then the group formed again and notified it as a first notification
    assert [r["reason"] for r in board.log()] == ["first", "first"]


def test_silences_and_inhibition_never_cross_projects(db: psycopg.Connection) -> None:
    # Given two projects with the same alerts; in the first, a silence and an inhibition rule with its source firing
    first, second = new_board(db, "Tenant A"), new_board(db, "Tenant B")
    for board in (first, second):
        board.put_policy(INHIBIT)
    first.silence([m("alertname", "=", "HighLatency")], at(-60), at(3600))
    first.fire(at(0), "NodeDown", severity="critical", cluster="a")
    second.fire(at(0), "HighLatency", severity="warning", cluster="a")
    second.fire(at(0), "DiskFull", severity="warning", cluster="a")
    route_transitions(at(0))

    # When the second project's groups flush
    sweep(at(30))

    # Then its alerts are notified: the first project's silence and firing source do not reach them
    assert sorted(r["group_labels"]["alertname"] for r in second.log()) == ["DiskFull", "HighLatency"]
