"""The paging channels against real receivers: Slack and PagerDuty stand-ins on localhost (the exact JSON they
received), SES v2 under moto (recipients split at 50, text and HTML, throttling), and the webhook channel handing
messages to the webhook delivery engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import boto3
import psycopg
import pytest
from observai.config import Settings
from observai.notify import channels
from observai.notify.channels import email as email_channel
from observai.notify.channels import slack
from observai.notify.message import Message
from observai.webhooks.sender import close_connections

from tests.helpers.ingest import make_project
from tests.helpers.moto_queue import REGION, queue_and_bucket
from tests.helpers.webhook_receiver import Reply, WebhookReceiver
from tests.helpers.webhook_rows import insert_endpoint, messages

PROJECT_ID = "6a7f1c1e-1111-4111-8111-111111111111"
INCIDENT_ID = "6a7f1c1e-2222-4222-8222-222222222222"
SENDER = "pager@observai.example.test"
LINKS = {
    "incident": "http://127.0.0.1:1/incidents/42",
    "acknowledge": "http://127.0.0.1:1/v1/actions/ack?t=signed",
    "resolve": "http://127.0.0.1:1/v1/actions/resolve?t=signed",
}


def _alert(i: int, state: str = "firing") -> dict[str, Any]:
    return {
        "labels": {"alertname": "HighLatency", "instance": f"api-{i}"},
        "annotations": {"summary": f"p99 above 2s on api-{i} <b>&</b>"},
        "state": state,
        "value": 2.5,
        "starts_at": "2026-12-06T04:00:00+00:00",
    }


def _message(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "event": "trigger",
        "title": "API latency <high> & rising",
        "text": "The checkout API is slow.",
        "severity": "critical",
        "incident": {
            "id": INCIDENT_ID,
            "number": 42,
            "title": "API latency <high> & rising",
            "status": "triggered",
            "severity": "critical",
            "service": "checkout",
            "project_id": PROJECT_ID,
        },
        "alerts": (_alert(1), _alert(2)),
        "links": LINKS,
        "dedup_key": INCIDENT_ID,
        "delivery_id": str(uuid4()),
    }
    fields.update(overrides)
    return Message(**fields)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(reply=Reply(200, b"ok")) as r:
        yield r
    close_connections()


def _settings(**more: Any) -> Settings:
    return Settings(stage="test", notify_allow_loopback=True, notify_timeout_s=3, **more)


def _text_length(body: dict[str, Any]) -> int:
    total = len(body["text"])
    for block in body["blocks"]:
        if "text" in block and isinstance(block["text"], dict):
            total += len(block["text"]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                total += len(element["text"])
    return total


# --- Slack -----------------------------------------------------------------------------------------------------


def test_slack_posts_block_kit_with_header_mention_alerts_and_buttons(receiver: WebhookReceiver) -> None:
    # Given a paged person's Slack contact point
    message = _message(mention="U024BE7LH")
    # When the message is sent
    result = channels.send("slack", {"url": receiver.url("/services/T/B/x")}, message, settings=_settings())
    # Then Slack's 200 "ok" is a success
    assert result.ok and result.status_code == 200 and result.response_excerpt == "ok"
    body = json.loads(receiver.requests[0].body)
    blocks = body["blocks"]
    # And the header names the incident, its number and severity; the fallback text says the same, with the mention
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[CRITICAL] #42 API latency <high> & rising", "emoji": True},
    }
    assert body["text"] == "<@U024BE7LH> [CRITICAL] #42 API latency <high> & rising"
    assert blocks[1] == {"type": "section", "text": {"type": "mrkdwn", "text": "<@U024BE7LH> you are paged"}}
    # And user text is escaped for mrkdwn
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert any("p99 above 2s on api-1 &lt;b&gt;&amp;&lt;/b&gt;" in t for t in texts)
    # And the actions carry the pinned buttons and the link buttons
    actions = blocks[-1]
    assert actions["type"] == "actions"
    assert actions["elements"][:2] == [
        {
            "type": "button",
            "action_id": "incident_acknowledge",
            "text": {"type": "plain_text", "text": "Acknowledge"},
            "value": f"{PROJECT_ID}/{INCIDENT_ID}",
            "style": "primary",
        },
        {
            "type": "button",
            "action_id": "incident_resolve",
            "text": {"type": "plain_text", "text": "Resolve"},
            "value": f"{PROJECT_ID}/{INCIDENT_ID}",
            "style": "danger",
        },
    ]
    assert [(e["action_id"], e["url"]) for e in actions["elements"][2:]] == [
        ("link_incident", LINKS["incident"]),
        ("link_acknowledge", LINKS["acknowledge"]),
        ("link_resolve", LINKS["resolve"]),
    ]
    assert receiver.requests[0].headers["content-type"] == "application/json"


def test_slack_caps_blocks_and_text(receiver: WebhookReceiver) -> None:
    # Given a huge text and 300 alerts
    huge = ("word " * 10_000).strip()
    message = _message(text=huge, alerts=tuple(_alert(i) for i in range(300)))
    # When it is sent
    assert channels.send("slack", {"url": receiver.url("/s")}, message, settings=_settings()).ok
    body = json.loads(receiver.requests[0].body)
    # Then it has fewer than 50 blocks and all its text stays within 12,000 characters
    assert len(body["blocks"]) < 50
    assert _text_length(body) <= slack.TEXT_CAP
    # And the text was cut on a word with an ellipsis, every section within Slack's 3,000 characters
    sections = [b["text"]["text"] for b in body["blocks"] if b["type"] == "section"]
    assert all(len(s) <= 3000 for s in sections)
    text_sections = [s for s in sections if s.startswith("word")]
    assert text_sections[-1].endswith("word…")
    # And the alerts not shown are counted
    contexts = [b["elements"][0]["text"] for b in body["blocks"] if b["type"] == "context"]
    assert contexts[-1] == "and 290 more alerts"


def test_slack_resolution_has_no_action_buttons(receiver: WebhookReceiver) -> None:
    message = _message(event="resolve", incident={**_message().incident, "status": "resolved"})  # type: ignore[dict-item]
    assert channels.send("slack", {"url": receiver.url("/s")}, message, settings=_settings()).ok
    body = json.loads(receiver.requests[0].body)
    assert body["blocks"][0]["text"]["text"].startswith("[RESOLVED] #42")
    actions = [b for b in body["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == ["link_incident"]


@pytest.mark.parametrize(
    ("reply", "retryable", "retry_after", "disable_reason"),
    [
        (Reply(429, b"rate_limited", {"Retry-After": "7"}), True, 7.0, None),
        (Reply(404, b"no_service"), False, None, "Slack answered 404: the webhook was removed"),
        (Reply(410, b"channel_is_archived"), False, None, "Slack answered 410: the webhook was removed"),
        (Reply(400, b"invalid_payload"), False, None, None),
        (Reply(403, b"action_prohibited"), False, None, None),
        (Reply(500, b"rollup_error"), True, None, None),
        (Reply(302, b"", {"Location": "http://127.0.0.1:1/elsewhere"}), False, None, None),
    ],
)
def test_slack_answers_are_classified(
    receiver: WebhookReceiver, reply: Reply, retryable: bool, retry_after: float | None, disable_reason: str | None
) -> None:
    # Given Slack answering ``reply``
    receiver.script(reply)
    # When a message is sent
    result = channels.send("slack", {"url": receiver.url("/s")}, _message(), settings=_settings())
    # Then the result says whether to retry, when, and whether to disable the contact point
    assert not result.ok
    assert result.status_code == reply.status
    assert result.retryable is retryable
    assert result.retry_after_s == retry_after
    assert result.disable_reason == disable_reason
    assert len(receiver.requests) == 1  # no redirect followed


def test_slack_loopback_needs_the_setting_and_a_local_stage(receiver: WebhookReceiver) -> None:
    refused = channels.send("slack", {"url": receiver.url("/s")}, _message(), settings=Settings(stage="test"))
    assert not refused.ok and not refused.retryable and "refused" in (refused.error or "")
    assert receiver.requests == []


def test_slack_urls_outside_local_stages_must_be_hooks_slack_com() -> None:
    prod = Settings(stage="prod")
    slack.validate_url("https://hooks.slack.com/services/T0/B0/abc", prod)
    for bad in (
        "http://hooks.slack.com/services/T/B/x",
        "https://evil.example/services/x",
        "https://hooks.slack.com.evil.example/services/x",
    ):
        with pytest.raises(ValueError):
            slack.validate_url(bad, prod)
    result = channels.send("slack", {"url": "https://example.com/services/x"}, _message(), settings=prod)
    assert not result.ok and not result.retryable


# --- PagerDuty -------------------------------------------------------------------------------------------------


def test_pagerduty_trigger_is_an_events_v2_event(receiver: WebhookReceiver) -> None:
    # Given PagerDuty's Events API stand-in answering 202
    receiver.script(
        Reply(202, b'{"status":"success","message":"Event processed","dedup_key":"' + INCIDENT_ID.encode() + b'"}')
    )
    settings = _settings(pagerduty_events_url=receiver.url("/v2/enqueue"))
    routing_key = "R" * 32
    # When an incident triggers
    result = channels.send("pagerduty", {"routing_key": routing_key, "severity_map": {}}, _message(), settings=settings)
    # Then 202 is a success
    assert result.ok and result.status_code == 202
    event = json.loads(receiver.requests[0].body)
    assert receiver.requests[0].path == "/v2/enqueue"
    # And the event carries exactly the Events API v2 fields
    assert event == {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": INCIDENT_ID,
        "payload": {
            "summary": "[CRITICAL] #42 API latency <high> & rising",
            "source": "checkout",
            "severity": "critical",
            "timestamp": "2026-12-06T04:00:00+00:00",
            "component": "checkout",
            "group": PROJECT_ID,
            "class": "HighLatency",
            "custom_details": {
                "text": "The checkout API is slow.",
                "incident": {
                    "id": INCIDENT_ID,
                    "number": 42,
                    "title": "API latency <high> & rising",
                    "status": "triggered",
                    "severity": "critical",
                    "service": "checkout",
                },
                "alerts": [
                    {
                        "name": "HighLatency",
                        "state": "firing",
                        "value": 2.5,
                        "labels": {"alertname": "HighLatency", "instance": f"api-{i}"},
                        "summary": f"p99 above 2s on api-{i} <b>&</b>",
                        "starts_at": "2026-12-06T04:00:00+00:00",
                    }
                    for i in (1, 2)
                ],
            },
        },
        "links": [
            {"href": LINKS["incident"], "text": "Open in ObservAI Hub"},
            {"href": LINKS["acknowledge"], "text": "Acknowledge in ObservAI Hub"},
            {"href": LINKS["resolve"], "text": "Resolve in ObservAI Hub"},
        ],
        "client": "ObservAI Hub",
        "client_url": LINKS["incident"],
    }


def test_pagerduty_and_webhook_take_datetimes_in_alerts(receiver: WebhookReceiver, db: psycopg.Connection[Any]) -> None:
    # Given alerts whose start is a datetime (as read from the database) rather than text
    from datetime import UTC, datetime

    from observai.notify.channels.webhook import render

    started = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
    message = _message(alerts=({**_alert(1), "starts_at": started},))
    receiver.script(Reply(202, b"{}"))
    # When it is sent to PagerDuty and rendered for a webhook
    result = channels.send(
        "pagerduty", {"routing_key": "K" * 32}, message, settings=_settings(pagerduty_events_url=receiver.url("/e"))
    )
    # Then both carry RFC 3339 timestamps
    assert result.ok
    event = json.loads(receiver.requests[0].body)
    assert event["payload"]["timestamp"] == "2026-12-06T04:00:00+00:00"
    assert event["payload"]["custom_details"]["alerts"][0]["starts_at"] == "2026-12-06T04:00:00+00:00"
    assert render(message, started)["data"]["alerts"][0]["starts_at"] == "2026-12-06T04:00:00+00:00"


def test_pagerduty_acknowledge_and_resolve_carry_the_same_dedup_key_only(receiver: WebhookReceiver) -> None:
    receiver.script(Reply(202, b"{}"))
    settings = _settings(pagerduty_events_url=receiver.url("/v2/enqueue"))
    config = {"routing_key": "K" * 32}
    for event in ("acknowledge", "resolve"):
        assert channels.send("pagerduty", config, _message(event=event), settings=settings).ok
    # A route's "resolved" notification resolves too
    assert channels.send("pagerduty", config, _message(event="notify", reason="resolved"), settings=settings).ok
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert bodies == [
        {"routing_key": "K" * 32, "event_action": "acknowledge", "dedup_key": INCIDENT_ID},
        {"routing_key": "K" * 32, "event_action": "resolve", "dedup_key": INCIDENT_ID},
        {"routing_key": "K" * 32, "event_action": "resolve", "dedup_key": INCIDENT_ID},
    ]


def test_pagerduty_summary_capped_and_severity_mapped(receiver: WebhookReceiver) -> None:
    receiver.script(Reply(202, b"{}"))
    settings = _settings(pagerduty_events_url=receiver.url("/v2/enqueue"))
    long_title = "x" * 3000
    sent = [
        _message(title=long_title, severity="error"),
        _message(severity="warning", event="notify", reason="first"),
        _message(severity="info"),
    ]
    for message in sent:
        assert channels.send(
            "pagerduty", {"routing_key": "K" * 32, "severity_map": {"info": "warning"}}, message, settings=settings
        ).ok
    payloads = [json.loads(r.body)["payload"] for r in receiver.requests]
    assert len(payloads[0]["summary"]) <= 1024 and payloads[0]["summary"].endswith("…")
    assert [p["severity"] for p in payloads] == ["error", "warning", "warning"]
    assert json.loads(receiver.requests[1].body)["event_action"] == "trigger"


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (429, True), (500, True), (502, True), (403, False)])
def test_pagerduty_answers_are_classified(receiver: WebhookReceiver, status: int, retryable: bool) -> None:
    receiver.script(Reply(status, b'{"status":"invalid event"}'))
    settings = _settings(pagerduty_events_url=receiver.url("/v2/enqueue"))
    result = channels.send("pagerduty", {"routing_key": "K" * 32}, _message(), settings=settings)
    assert not result.ok and result.retryable is retryable and result.status_code == status
    assert result.disable_reason is None


def test_unreachable_receiver_is_retryable() -> None:
    with WebhookReceiver() as gone:
        url = gone.url("/v2/enqueue")
    result = channels.send(
        "pagerduty", {"routing_key": "K" * 32}, _message(), settings=_settings(pagerduty_events_url=url)
    )
    assert not result.ok and result.retryable and result.status_code is None


# --- e-mail ------------------------------------------------------------------------------------------------------


@pytest.fixture
def ses(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with queue_and_bucket(monkeypatch, "notify-unused"):
        client = boto3.client("sesv2", region_name=REGION)
        client.create_email_identity(EmailIdentity=SENDER)
        yield client


def _sent_emails() -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def test_email_sends_text_and_html_split_at_50_recipients(ses: Any) -> None:
    # Given an e-mail contact point with 120 addresses
    addresses = [f"oncall{i}@example.test" for i in range(120)]
    before = len(_sent_emails())
    # When a trigger is sent
    result = channels.send(
        "email", {"addresses": addresses}, _message(), settings=_settings(notify_email_sender=SENDER)
    )
    # Then three messages went out: 50, 50 and 20 recipients
    assert result.ok
    sent = _sent_emails()[before:]
    assert [len(m.destinations["ToAddresses"]) for m in sent] == [50, 50, 20]
    assert [a for m in sent for a in m.destinations["ToAddresses"]] == addresses
    first = sent[0]
    assert first.source == SENDER
    assert first.subject == "[CRITICAL] #42 API latency <high> & rising"
    # And both bodies carry the links; the HTML one escapes what came from users and alerts
    text_body = email_channel.text_body(_message())
    html = email_channel.html_body(_message())
    assert LINKS["acknowledge"] in text_body and LINKS["resolve"] in text_body and LINKS["incident"] in text_body
    assert "<high>" not in html and "&lt;high&gt; &amp; rising" in html
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in html
    assert f'<a href="{LINKS["acknowledge"]}">Acknowledge</a>' in html
    assert first.body == html or first.body == text_body  # moto keeps one of the bodies


def test_email_without_a_sender_is_not_sent_nor_retried(ses: Any) -> None:
    before = len(_sent_emails())
    result = channels.send("email", {"addresses": ["a@example.test"]}, _message(), settings=_settings())
    assert not result.ok and not result.retryable and result.error == "no sender configured"
    assert len(_sent_emails()) == before


class _SesStandIn:
    """SES v2 answering every SendEmail with ``status`` and ``error_type`` (a throttled account)."""

    def __init__(self, status: int, error_type: str) -> None:
        body = json.dumps({"message": "Maximum sending rate exceeded."}).encode()
        self.receiver = WebhookReceiver(
            reply=Reply(status, body, {"x-amzn-ErrorType": error_type, "content-type": "application/json"})
        )

    def __enter__(self) -> Any:
        self.receiver.__enter__()
        return boto3.client(
            "sesv2",
            region_name=REGION,
            endpoint_url=self.receiver.url(""),
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=__import__("botocore.config").config.Config(retries={"max_attempts": 1, "mode": "standard"}),
        )

    def __exit__(self, *exc: object) -> None:
        self.receiver.close()


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (429, "TooManyRequestsException", True),
        (429, "LimitExceededException", True),
        (500, "InternalFailure", True),
        (400, "MessageRejected", False),
        (400, "MailFromDomainNotVerifiedException", False),
    ],
)
def test_email_throttling_is_retryable_rejections_are_not(status: int, error_type: str, retryable: bool) -> None:
    # Given SES answering with an error
    with _SesStandIn(status, error_type) as client:
        # When an e-mail is sent through it
        result = email_channel.send(
            {"addresses": ["a@example.test"]}, _message(), settings=_settings(notify_email_sender=SENDER), client=client
        )
    # Then the result is a failure, retryable only for throttling and SES's own failures
    assert not result.ok
    assert result.retryable is retryable
    assert error_type in (result.error or "")


def test_an_email_retry_after_a_failed_part_sends_only_the_parts_ses_had_not_accepted() -> None:
    # Given 120 addresses (three SES messages) and SES accepting the first message, then throttling
    addresses = [f"oncall{i}@example.test" for i in range(120)]
    accepted = Reply(200, json.dumps({"MessageId": "m-1"}).encode(), {"content-type": "application/json"})
    throttled = Reply(
        429, b'{"message": "Maximum sending rate exceeded."}', {"x-amzn-ErrorType": "TooManyRequestsException"}
    )
    settings = _settings(notify_email_sender=SENDER)
    stand_in = _SesStandIn(200, "unused")
    with stand_in as client:
        stand_in.receiver.script(accepted, throttled)
        # When the e-mail is sent
        first = email_channel.send({"addresses": addresses}, _message(), settings=settings, client=client)
        # Then it failed retryably after one accepted message, and says so
        assert (first.ok, first.retryable, first.progress) == (False, True, 1)
        assert "after 1 of 3 messages were sent" in (first.error or "")
        before = len(stand_in.receiver.requests)
        # When the retry resumes after the accepted part, SES accepting everything now
        stand_in.receiver.script(accepted)
        retry = email_channel.send(
            {"addresses": addresses}, _message(resume_from=first.progress), settings=settings, client=client
        )
    # Then only the two remaining messages went, to the remaining addresses, and the whole e-mail is done
    assert (retry.ok, retry.progress) == (True, 3)
    recipients = [json.loads(r.body)["Destination"]["ToAddresses"] for r in stand_in.receiver.requests]
    assert recipients[:before].count(addresses[:50]) == 1  # (the throttled message may have been tried again)
    assert recipients[before:] == [addresses[50:100], addresses[100:]]


# --- webhook -----------------------------------------------------------------------------------------------------


def test_webhook_channel_hands_the_message_to_the_engine(
    monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]
) -> None:
    # Given a contact point's hidden webhook endpoint and the webhook delivery queue (moto)
    project = make_project(scopes=("read",), label="Notify webhook")
    endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, "http://127.0.0.1:9/hook")
    db.execute("update public.webhook_endpoints set contact_point_owned = true where id = %s", (endpoint_id,))
    config = {"endpoint_id": endpoint_id, "org_id": project.org_id, "project_id": project.project_id}
    delivery_id = str(uuid4())
    with queue_and_bucket(monkeypatch, "notify-webhooks") as queue:
        monkeypatch.setenv("WEBHOOK_QUEUE_URL", queue.queue_url)
        settings = Settings(stage="test", webhook_queue_url=queue.queue_url)
        # When a message is sent twice (a retried delivery)
        first = channels.send("webhook", config, _message(delivery_id=delivery_id), settings=settings)
        second = channels.send("webhook", config, _message(delivery_id=delivery_id), settings=settings)
        woken = queue.receive()
    # Then one webhook message exists for the endpoint, keyed by the delivery id, and was woken once
    assert first.ok and second.ok
    rows = messages(db, endpoint_id=endpoint_id)
    assert len(rows) == 1
    assert rows[0]["event_id"] == UUID(delivery_id)
    assert rows[0]["event_type"] == "incident.trigger"
    assert rows[0]["status"] == "pending"
    payload = rows[0]["payload"]
    assert payload["type"] == "incident.trigger" and payload["data"]["incident"]["id"] == INCIDENT_ID
    assert len(json.dumps(payload)) < 20_000
    assert [json.loads(m["Body"])["webhook_message_id"] for m in woken] == [str(rows[0]["id"])]


def test_webhook_channel_payload_stays_under_20_kb(db: psycopg.Connection[Any]) -> None:
    from datetime import UTC, datetime

    from observai.notify.channels.webhook import render

    payload = render(_message(alerts=tuple(_alert(i) for i in range(500)), text="y" * 50_000), datetime.now(UTC))
    assert len(json.dumps(payload).encode()) < 20_000
    assert payload["data"]["alerts_truncated"] is True


def test_webhook_channel_refuses_a_gone_endpoint(db: psycopg.Connection[Any]) -> None:
    project = make_project(scopes=("read",), label="Notify webhook gone")
    endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, "http://127.0.0.1:9/hook", deleted=True)
    config = {"endpoint_id": endpoint_id, "org_id": project.org_id, "project_id": project.project_id}
    result = channels.send("webhook", config, _message(event="test"), settings=Settings(stage="test"))
    assert not result.ok and not result.retryable
    assert messages(db, endpoint_id=endpoint_id) == []


def test_unknown_kind_is_a_result_not_an_exception() -> None:
    result = channels.send("fax", {}, _message(), settings=_settings())
    assert not result.ok and not result.retryable


def test_webhook_channel_follows_an_endpoint_the_engine_disabled(db: psycopg.Connection[Any]) -> None:
    # Given a contact point's endpoint that the webhook engine disabled (the receiver answered 410)
    project = make_project(scopes=("read",), label="Notify webhook disabled")
    endpoint_id, _ = insert_endpoint(db, project.org_id, project.project_id, "http://127.0.0.1:9/hook", enabled=False)
    db.execute(
        "update public.webhook_endpoints set contact_point_owned = true, disabled_reason = '410 Gone from the receiver'"
        " where id = %s",
        (endpoint_id,),
    )
    config = {"endpoint_id": endpoint_id, "org_id": project.org_id, "project_id": project.project_id}
    # When a message is sent
    result = channels.send("webhook", config, _message(), settings=Settings(stage="test"))
    # Then nothing is handed over, and the contact point is to be disabled with the engine's reason
    assert not result.ok and not result.retryable
    assert result.disable_reason == "the webhook delivery engine disabled its endpoint: 410 Gone from the receiver"
    assert messages(db, endpoint_id=endpoint_id) == []


def test_a_slow_receiver_times_out_after_notify_timeout_s(receiver: WebhookReceiver) -> None:
    # Given Slack answering after 5 seconds, and a notification timeout of half a second
    receiver.script(Reply(200, b"ok", delay_s=5))
    settings = Settings(stage="test", notify_allow_loopback=True, notify_timeout_s=0.5, webhook_timeout_s=30)
    # When a message is sent
    result = channels.send("slack", {"url": receiver.url("/s")}, _message(), settings=settings)
    # Then it gave up at the paging timeout (not the webhook engine's), and may be tried again
    assert not result.ok and result.retryable and result.status_code is None
    assert "timeout" in (result.error or "") and result.duration_ms < 3000


def test_errors_never_quote_the_secret_url_path(receiver: WebhookReceiver) -> None:
    # Given a Slack URL whose path is the secret, unreachable, slow, or refused by the guard
    with WebhookReceiver() as gone:
        closed = gone.url("/services/T0/B0/TopSecretPath")
    receiver.script(Reply(200, b"ok", delay_s=5))
    slow = receiver.url("/services/T0/B0/TopSecretPath")
    results = [
        channels.send("slack", {"url": closed}, _message(), settings=_settings()),
        channels.send(
            "slack", {"url": slow}, _message(), settings=_settings().model_copy(update={"notify_timeout_s": 0.3})
        ),
        channels.send("slack", {"url": slow}, _message(), settings=Settings(stage="test")),
    ]
    # Then no error says the path
    for result in results:
        assert not result.ok and result.error
        assert "TopSecretPath" not in result.error
