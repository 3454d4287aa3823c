"""Alert rule definitions: durations, labels and fingerprints, sandboxed annotation templates, the rule models."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from observai.alerts import templates
from observai.alerts.durations import format_duration, parse_duration
from observai.alerts.labels import alert_labels, fingerprint
from observai.alerts.rule_models import RuleIn, RulePatch
from pydantic import ValidationError

# --- durations -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("90", 90), (120, 120), ("0s", 0)],
)
def test_durations_read_as_prometheus_writes_them(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1h 30m", "500ms", "-5m", "1.5h", True])
def test_durations_refuse_what_is_not_one(text: object) -> None:
    if text == "5":  # whole seconds as text are a duration
        assert parse_duration(text) == 5
        return
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10 * 86400))
def test_a_formatted_duration_reads_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --- labels and fingerprints -----------------------------------------------------------------------------------


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=8))
def test_fingerprints_do_not_depend_on_label_order(labels: dict[str, str]) -> None:
    items = list(labels.items())
    random.Random(len(items)).shuffle(items)
    assert fingerprint(dict(items)) == fingerprint(labels)


def test_fingerprints_tell_label_sets_apart() -> None:
    assert fingerprint({"a": "1", "b": "2"}) != fingerprint({"a": "1", "b": "3"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "1", "b": ""})
    # Keys and values are not confused by concatenation.
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})


def test_alert_labels_put_the_rule_over_the_series_and_name_the_alert() -> None:
    labels = alert_labels("HighCPU", "critical", {"team": "core"}, {"host": "a", "team": "x", "code": 500})
    assert labels == {"host": "a", "team": "core", "code": "500", "alertname": "HighCPU", "severity": "critical"}


# --- templates -------------------------------------------------------------------------------------------------


def test_a_template_renders_value_labels_and_filters() -> None:
    source = "{{ labels.host }} at {{ value | humanize }}{% if value > 90000 %} (very high){% endif %}"
    assert templates.render(source, value=95123.0, labels={"host": "web-1"}) == "web-1 at 95.12k (very high)"
    assert templates.render("{{ value | humanize_percentage }}", value=0.125, labels={}) == "12.5%"
    assert templates.render("{{ value | humanize_duration }}", value=3661, labels={}) == "1h 1m 1s"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% for i in range(9) %}x{% endfor %}", "'for' is not allowed"),
        ("{% set x = 1 %}", "not allowed"),
        ("{% macro m() %}{% endmacro %}", "not allowed"),
        ("{% include 'x' %}", "not allowed"),
        ("{{ value | bogus }}", "unknown filter 'bogus'"),
        ("{{ lipsum() }}", "only methods of values may be called"),
        ("{{ unclosed", "line 1"),
        ("x" * 5000, "at most"),
    ],
)
def test_templates_outside_the_sandboxed_subset_are_refused(source: str, reason: str) -> None:
    with pytest.raises(templates.TemplateError, match=reason):
        templates.check(source)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ labels.__class__.__mro__ }}", "unsafe"),
        ("{{ 'a' * 100000 }}", "more than 1000 times"),
        ("{{ 2 ** 100000 }}", "exponents are at most"),
        ("{{ value | humanize }}", "could not convert"),
    ],
)
def test_rendering_errors_stay_in_the_annotation(source: str, error: str) -> None:
    rendered = templates.render(source, value="not a number", labels={})  # type: ignore[arg-type]
    assert rendered.startswith("<template error:") and error in rendered


# --- the rule models -------------------------------------------------------------------------------------------


def _rule(**overrides: object) -> dict[str, object]:
    rule: dict[str, object] = {
        "name": "HighCPU",
        "condition": {"kind": "metric", "metric": "cpu", "op": ">", "threshold": 90, "window": "5m"},
    }
    rule.update(overrides)
    return rule


def _loc(body: dict[str, object]) -> tuple[object, ...]:
    with pytest.raises(ValidationError) as caught:
        RuleIn.model_validate(body)
    return tuple(caught.value.errors()[0]["loc"])


def test_a_rule_reads_durations_and_defaults() -> None:
    rule = RuleIn.model_validate(_rule(**{"for": "2m", "keep_firing_for": "10m"}))
    assert (rule.for_, rule.keep_firing_for, rule.interval, rule.severity) == (120, 600, 60, "warning")
    assert rule.condition.kind == "metric" and rule.condition.window == 300


def test_bad_rules_name_the_field() -> None:
    assert _loc(_rule(annotations={"summary": "{% for x in y %}{% endfor %}"})) == ("annotations", "summary")
    assert _loc(_rule(labels={"alertname": "x"})) == ("labels",)
    assert _loc(_rule(labels={"bad-name": "x"}))[0] == "labels"
    assert _loc(_rule(condition={"kind": "metric", "metric": "m", "op": ">", "threshold": 1, "window": "90s"})) == (
        "condition",
        "metric",
        "window",
    )
    assert _loc(_rule(condition={"kind": "metric", "metric": "m", "op": "~", "threshold": 1})) == (
        "condition",
        "metric",
        "op",
    )
    assert _loc(_rule(condition={"kind": "nope"})) == ("condition",)
    assert _loc(_rule(condition={"kind": "log", "query": "service:(", "threshold": 1})) == ("condition", "log", "query")
    assert _loc(_rule(condition={"kind": "absence", "target": "service"}))[:2] == ("condition", "absence")
    regex = {"attribute": "host", "op": "=~", "value": "(("}
    assert _loc(_rule(condition={"kind": "metric", "metric": "m", "op": ">", "threshold": 1, "filters": [regex]}))[
        :4
    ] == ("condition", "metric", "filters", 0)
    assert _loc(_rule(**{"for": "5x"})) == ("for",)


def test_a_threshold_is_a_finite_number() -> None:
    for threshold in (float("inf"), float("nan"), "90"):
        body = _rule(condition={"kind": "metric", "metric": "m", "op": ">", "threshold": threshold})
        assert _loc(body)[:2] == ("condition", "metric")


def test_a_patch_takes_any_subset() -> None:
    patch = RulePatch.model_validate({"for": "1m", "enabled": False})
    assert patch.for_ == 60 and patch.enabled is False and patch.condition is None
    with pytest.raises(ValidationError):
        RulePatch.model_validate({"annotations": {"summary": "{% for %}"}})
