"""What the contact points API accepts, by stage: Slack URLs only on hooks.slack.com and webhook URLs only over
https outside local stages; e-mail addresses, routing keys, severity maps and Slack member ids."""

from __future__ import annotations

from typing import Any

import pytest
from observai.notify.contact_point_models import ContactPointIn, NotificationSettingsIn
from pydantic import TypeAdapter, ValidationError

ADAPTER: TypeAdapter[Any] = TypeAdapter(ContactPointIn)


def _locs(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        ADAPTER.validate_python(body)
    return [e["loc"] for e in caught.value.errors()]


def test_outside_local_stages_slack_urls_are_hooks_slack_com_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE", "prod")
    good = {"name": "s", "kind": "slack", "settings": {"url": "https://hooks.slack.com/services/T0/B0/abc"}}
    assert ADAPTER.validate_python(good).settings.url == good["settings"]["url"]
    for url in (
        "http://127.0.0.1:8000/services/x",
        "https://example.com/services/x",
        "http://hooks.slack.com/services/x",
    ):
        assert _locs({"name": "s", "kind": "slack", "settings": {"url": url}}) == [("slack", "settings", "url")]
    # And webhook URLs are https
    assert _locs({"name": "w", "kind": "webhook", "settings": {"url": "http://example.com/hook"}}) == [
        ("webhook", "settings", "url")
    ]


def test_local_stages_accept_a_slack_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE", "local")
    body = {"name": "s", "kind": "slack", "settings": {"url": "http://127.0.0.1:8000/services/x"}}
    assert ADAPTER.validate_python(body).kind == "slack"


@pytest.mark.parametrize(
    "address", ["plain", "a@b", "a b@example.com", "a@example..com", ".a@example.com", "a.@example.com", "a@-x.com"]
)
def test_bad_addresses_are_refused(address: str) -> None:
    assert _locs({"name": "m", "kind": "email", "settings": {"addresses": [address]}}) == [
        ("email", "settings", "addresses", 0)
    ]


def test_addresses_are_kept_once_each_in_order() -> None:
    body = {
        "name": "m",
        "kind": "email",
        "settings": {"addresses": ["b@example.com", "a@example.com", "B@example.com"]},
    }
    assert ADAPTER.validate_python(body).settings.addresses == ["b@example.com", "a@example.com"]


def test_routing_key_and_severity_map() -> None:
    key = "a" * 32
    parsed = ADAPTER.validate_python(
        {"name": "p", "kind": "pagerduty", "settings": {"routing_key": key, "severity_map": {"warning": "error"}}}
    )
    assert parsed.settings.severity_map == {"warning": "error"}
    assert _locs({"name": "p", "kind": "pagerduty", "settings": {"routing_key": "a" * 31}}) == [
        ("pagerduty", "settings", "routing_key")
    ]
    assert _locs({"name": "p", "kind": "pagerduty", "settings": {"routing_key": key, "severity_map": {"info": "page"}}})


@pytest.mark.parametrize("slack_user_id", ["U024BE7LH", "W0ABC"])
def test_slack_member_ids(slack_user_id: str) -> None:
    assert NotificationSettingsIn(slack_user_id=slack_user_id).slack_user_id == slack_user_id


@pytest.mark.parametrize("slack_user_id", ["u024", "U1", "@alice", "U024BE7LH<"])
def test_bad_slack_member_ids(slack_user_id: str) -> None:
    with pytest.raises(ValidationError):
        NotificationSettingsIn(slack_user_id=slack_user_id)
