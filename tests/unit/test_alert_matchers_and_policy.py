"""Matchers (Alertmanager semantics: anchored regexes, an absent label is ""), the text form, time intervals, and
the policy tree (first match, continue, inheritance, group keys)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from observai.alerts.matchers import Matcher, matches_empty, parse_text
from observai.alerts.policy import Policy, check_document, inhibited_by
from observai.alerts.policy_models import InhibitRule, PolicyDocument
from observai.alerts.time_intervals import NamedTimeInterval, TimeInterval
from observai.alerts.timers import message_body, parse_message
from pydantic import ValidationError


def matcher(text: str) -> Matcher:
    return Matcher.model_validate(parse_text(text))


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('service="api"', {"service": "api"}, True),
        ('service="api"', {"service": "api2"}, False),
        ('service!="api"', {}, True),  # absent is "", which is not "api"
        ('team=""', {}, True),  # absent label matches the empty string
        ('team=""', {"team": "ops"}, False),
        ('team!=""', {}, False),
        ('service=~"api|web"', {"service": "web"}, True),
        ('service=~"api|web"', {"service": "my-api"}, False),  # anchored: a full match only
        ('service=~"ap"', {"service": "api"}, False),
        ('service=~"ap.*"', {"service": "api"}, True),
        ('service!~"db.*"', {"service": "db-1"}, False),
        ('service!~"db.*"', {}, True),
        ('team=~".*"', {}, True),
        ('team=~".+"', {}, False),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert matcher(text).matches(labels) is expected


def test_the_text_form_parses_quotes_escapes_and_bare_values() -> None:
    assert parse_text('service=~"api|web"') == {"label": "service", "op": "=~", "value": "api|web"}
    assert parse_text(" env = prod ") == {"label": "env", "op": "=", "value": "prod"}
    assert parse_text(r'msg="say \"hi\""') == {"label": "msg", "op": "=", "value": 'say "hi"'}
    assert parse_text("http.route!~'x'") == {"label": "http.route", "op": "!~", "value": "'x'"}
    assert parse_text('a!=""') == {"label": "a", "op": "!=", "value": ""}
    # And the object round-trips through its text
    m = matcher(r'msg="say \"hi\""')
    assert matcher(m.text()) == m
    for bad in ("service", "=api", 'service=="x"x'):
        with pytest.raises(ValueError):
            parse_text(bad)


def test_regexes_are_checked_when_saved() -> None:
    with pytest.raises(ValidationError) as bad:
        Matcher(label="s", op="=~", value="(x")
    assert bad.value.errors()[0]["loc"] == ("value",)
    with pytest.raises(ValidationError):
        Matcher(label="s", op="=~", value="a" * 257)
    assert Matcher(label="s", op="=", value="(x").matches({"s": "(x"})  # not a regex with =


def test_matches_empty() -> None:
    assert matches_empty(matcher('team=~".*"')) and matches_empty(matcher('team!="x"'))
    assert not matches_empty(matcher('team="x"')) and not matches_empty(matcher('team=~".+"'))


# --- time intervals ---------------------------------------------------------------------------------------------


def interval(**fields: object) -> TimeInterval:
    return TimeInterval.model_validate(fields)


def test_time_intervals() -> None:
    monday_2300 = datetime(2031, 3, 3, 23, 0, tzinfo=UTC)
    nights = interval(times=[{"start_time": "22:00", "end_time": "24:00"}])
    assert nights.contains(monday_2300)
    assert not nights.contains(datetime(2031, 3, 3, 21, 59, tzinfo=UTC))
    # In Paris (UTC+1 in March) it is already Tuesday 00:00
    assert not interval(times=[{"start_time": "22:00", "end_time": "24:00"}], location="Europe/Paris").contains(
        monday_2300
    )
    assert interval(weekdays=["monday:wednesday"]).contains(monday_2300)
    assert not interval(weekdays=["saturday", "sunday"]).contains(monday_2300)
    assert interval(weekdays=["tuesday"], location="Europe/Paris").contains(monday_2300)
    assert interval(days_of_month=["-1"]).contains(datetime(2031, 2, 28, tzinfo=UTC))  # the month's last day
    assert not interval(days_of_month=["-1"]).contains(datetime(2031, 2, 27, tzinfo=UTC))
    assert interval(days_of_month=["1:5"]).contains(datetime(2031, 2, 3, tzinfo=UTC))
    assert interval(months=["january:march"], years=["2031"]).contains(monday_2300)
    assert not interval(months=["4"]).contains(monday_2300)
    named = NamedTimeInterval.model_validate(
        {"name": "n", "time_intervals": [{"months": ["may"]}, {"weekdays": ["monday"]}]}
    )
    assert named.contains(monday_2300)  # any of its intervals


@pytest.mark.parametrize(
    "fields",
    [
        {"times": [{"start_time": "10:00", "end_time": "09:00"}]},
        {"times": [{"start_time": "24:00", "end_time": "24:00"}]},
        {"times": [{"start_time": "9:00", "end_time": "10:00"}]},
        {"weekdays": ["friday:monday"]},
        {"weekdays": ["funday"]},
        {"days_of_month": ["0"]},
        {"days_of_month": ["32"]},
        {"months": ["13"]},
        {"years": ["2030:2020"]},
        {"location": "Nowhere/Town"},
    ],
)
def test_bad_time_intervals_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        interval(**fields)


# --- the tree ---------------------------------------------------------------------------------------------------

TREE = {
    "route": {
        "receivers": {"contact_points": ["root"]},
        "group_by": ["alertname"],
        "routes": [
            {
                "matchers": ['team="db"'],
                "receivers": {"contact_points": ["db"]},
                "group_wait": "1m",
                "routes": [{"name": "db-critical", "matchers": ['severity="critical"'], "group_by": ["..."]}],
            },
            {"name": "all-prod", "matchers": ['env="prod"'], "continue": True, "repeat_interval": "1h"},
            {"name": "web", "matchers": ['team="web"']},
            {"name": "web-again", "matchers": ['team="web"']},
        ],
    }
}


def routes_of(labels: dict[str, str]) -> list[str]:
    return [r.id for r in Policy.of(PolicyDocument.model_validate(TREE)).routes_for(labels)]


def test_first_match_continue_and_fall_back_to_the_parent() -> None:
    assert routes_of({"team": "db", "severity": "critical"}) == ["db-critical"]
    assert routes_of({"team": "db", "severity": "warning"}) == ["0.0"]  # no child matches: the parent takes it
    assert routes_of({"team": "web", "env": "prod"}) == ["all-prod", "web"]  # continue, then the first web route
    assert routes_of({"team": "web"}) == ["web"]  # never web-again: web matched first without continue
    assert routes_of({"env": "prod"}) == ["all-prod"]  # continue, and nothing after it matches
    assert routes_of({"team": "other"}) == ["0"]  # the root


def test_children_inherit_unset_fields() -> None:
    policy = Policy.of(PolicyDocument.model_validate(TREE))
    critical = policy.route("db-critical")
    assert critical.receivers["contact_points"] == ["db"] and critical.group_wait_s == 60
    assert critical.group_interval_s == 300 and critical.repeat_interval_s == 14400
    assert policy.route("all-prod").repeat_interval_s == 3600 and policy.route("all-prod").group_wait_s == 30
    assert policy.route("gone-since").id == "0"  # a group's route removed since: the root


def test_group_keys() -> None:
    policy = Policy.of(PolicyDocument.model_validate(TREE))
    root, critical = policy.route("0"), policy.route("db-critical")
    a = {"alertname": "X", "service": "api"}
    assert root.group_key(a) == root.group_key({"service": "web", "alertname": "X"})  # same alertname, same group
    assert root.group_key(a) != root.group_key({"alertname": "Y"})
    assert root.group_labels({}) == {"alertname": ""}
    assert critical.group_key(a) != critical.group_key({"alertname": "X", "service": "web"})  # "...": every label
    assert critical.group_key(a) == critical.group_key(dict(reversed(list(a.items()))))
    assert root.group_key(a) != policy.route("all-prod").group_key(a)  # the route is part of the key


def test_inhibition_needs_a_firing_source_with_equal_labels_and_never_the_alert_itself() -> None:
    rule = InhibitRule.model_validate(
        {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'], "equal": ["dc"]}
    )
    target = {"severity": "warning", "dc": "eu"}
    assert inhibited_by([rule], target, "t", [("s", {"severity": "critical", "dc": "eu"})])
    assert not inhibited_by([rule], target, "t", [("s", {"severity": "critical", "dc": "us"})])
    assert not inhibited_by([rule], target, "t", [])
    both = InhibitRule.model_validate({"source_matchers": ['a="1"'], "target_matchers": ['a="1"']})
    assert not inhibited_by([both], {"a": "1"}, "t", [("t", {"a": "1"}), ("u", {"a": "1"})])


def test_the_whole_document_checks() -> None:
    doc = PolicyDocument.model_validate(
        {
            "route": {"routes": [{"mute_time_intervals": ["x"], "active_time_intervals": ["y"]}]},
            "mute_time_intervals": [
                {"name": "y", "time_intervals": [{"weekdays": ["monday"]}]},
                {"name": "y", "time_intervals": [{"weekdays": ["friday"]}]},
            ],
        }
    )
    problems = {tuple(p["loc"]): p["type"] for p in check_document(doc)}
    assert problems == {
        ("body", "route", "routes", "0", "mute_time_intervals", "0"): "unknown_time_interval",
        ("body", "mute_time_intervals", "1", "name"): "duplicate",
    }
    assert check_document(PolicyDocument()) == []


def test_timer_messages() -> None:
    from uuid import uuid4

    group_id = uuid4()
    assert parse_message(message_body(group_id, datetime(2031, 1, 1, tzinfo=UTC))) == group_id
    for bad in ("", "[]", '{"v": 2, "group_id": "x"}', '{"v": 1}', '{"v": 1, "group_id": "nope"}'):
        with pytest.raises(ValueError):
            parse_message(bad)


@pytest.mark.parametrize("pattern", ["(a+)+$", "(.*x)*", "(a*)*", "((a|b)+c)+", "(?:x+y?)*", "(a{1,}){2}"])
def test_nested_unbounded_repetition_is_refused(pattern: str) -> None:
    # A regex Python's re would take exponential time on (one tenant's would stall the dispatcher for all)
    with pytest.raises(ValidationError) as refused:
        Matcher(label="s", op="=~", value=pattern)
    assert "repetition" in refused.value.errors()[0]["msg"]


@pytest.mark.parametrize("pattern", ["(a|aa)+", "(a|aa)+$", "(x|y?)+", "(ab|a)*c", "(.|a)+", "(?:\\d|\\w\\w)+"])
def test_repeated_alternatives_that_start_alike_are_refused(pattern: str) -> None:
    # Given an alternation inside an unbounded repetition whose branches can start alike (or match nothing)
    # Then the repetition could split one input in exponentially many ways: refused, with how to rewrite it
    with pytest.raises(ValidationError) as refused:
        Matcher(label="s", op="=~", value=pattern)
    assert "alternatives that can start alike" in refused.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    "pattern",
    [
        "api|web",
        "ap.*",
        "(a|b){2,5}x*",
        "[a-z]+-[0-9]+",
        "(?:db|cache)-.*",
        "(ab)+",
        "(foo|bar)+",
        "(a|b)+",
        "(\\w|-)+",
        "(?:x|xy){2,5}",
    ],
)
def test_ordinary_regexes_are_accepted(pattern: str) -> None:
    assert Matcher(label="s", op="=~", value=pattern).op == "=~"
