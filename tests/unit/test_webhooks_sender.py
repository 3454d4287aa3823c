"""One delivery attempt against real HTTP receivers on localhost: headers and signature, HTTP semantics, the guard."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from observai.config import Settings
from observai.webhooks.sender import USER_AGENT, close_connections, deliver, parse_retry_after
from observai.webhooks.signing import new_secret
from standardwebhooks.webhooks import Webhook

from tests.helpers.webhook_receiver import Reply, WebhookReceiver

LOCAL = Settings(stage="test", webhook_allow_loopback=True)
BODY = json.dumps({"type": "webhook.test", "timestamp": "2026-12-06T03:00:00+00:00", "data": {}}).encode()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r
    close_connections()


def _now() -> datetime:
    # Real time: the reference verifier refuses timestamps more than 5 minutes away from its clock.
    return datetime.now(UTC)


def test_a_delivery_is_signed_and_verifies_with_the_standard_webhooks_library(receiver: WebhookReceiver) -> None:
    # Given an endpoint's secret and a receiver answering 200
    secret = new_secret()
    receiver.script(Reply(200, b'{"ok":true}'))
    now = _now()
    # When a message is delivered
    attempt = deliver(
        receiver.url("/hooks/in?src=observai"), msg_id="evt_1", body=BODY, secrets=[secret], now=now, settings=LOCAL
    )
    # Then it succeeded with the receiver's answer
    assert attempt.succeeded and not attempt.gone
    assert (attempt.status_code, attempt.response_excerpt, attempt.error) == (200, '{"ok":true}', None)
    # And the receiver got the Standard Webhooks headers, the body as is, and verifies the signature
    [request] = receiver.requests
    assert request.path == "/hooks/in?src=observai" and request.body == BODY
    assert request.headers["webhook-id"] == "evt_1"
    assert request.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert Webhook(secret).verify(request.body, request.headers) == json.loads(BODY)


def test_during_a_rotation_the_receiver_verifies_with_either_secret(receiver: WebhookReceiver) -> None:
    old, new = new_secret(), new_secret()
    deliver(receiver.url(), msg_id="evt_2", body=BODY, secrets=[new, old], now=_now(), settings=LOCAL)
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_a_success(receiver: WebhookReceiver, status: int) -> None:
    receiver.script(Reply(status))
    assert deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL).succeeded


@pytest.mark.parametrize("status", [400, 401, 404, 410, 413, 500, 502])
def test_other_statuses_are_failures_with_the_status_recorded(receiver: WebhookReceiver, status: int) -> None:
    receiver.script(Reply(status, b"nope"))
    attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    assert not attempt.succeeded
    assert (attempt.status_code, attempt.error, attempt.response_excerpt) == (status, f"HTTP {status}", "nope")
    assert attempt.gone is (status == 410)
    assert attempt.retry_after_s is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_and_is_not_followed(status: int) -> None:
    # Given a receiver redirecting to a private address (and another receiver standing in for a second hop)
    with WebhookReceiver() as receiver, WebhookReceiver() as elsewhere:
        receiver.script(Reply(status, headers={"Location": "http://169.254.169.254/latest/meta-data/"}))
        # When a message is delivered
        attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
        # Then it failed with the redirect's status, and only the first receiver was asked
        assert not attempt.succeeded and attempt.status_code == status
        assert attempt.error == f"HTTP {status}: redirect to http://169.254.169.254/latest/meta-data/ not followed"
        assert len(receiver.requests) == 1
        # And a redirect to a receiver that exists is not followed either
        receiver.script(Reply(status, headers={"Location": elsewhere.url("/x")}))
        deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
        assert elsewhere.requests == []
    close_connections()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_or_as_a_date_is_read_on_429_and_503(receiver: WebhookReceiver, status: int) -> None:
    now = _now().replace(microsecond=0)
    receiver.script(Reply(status, headers={"Retry-After": "120"}))
    attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=now, settings=LOCAL)
    assert (attempt.status_code, attempt.retry_after_s) == (status, 120.0)
    receiver.script(Reply(status, headers={"Retry-After": format_datetime(now + timedelta(minutes=5), usegmt=True)}))
    attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=now, settings=LOCAL)
    assert attempt.retry_after_s == 300.0


def test_retry_after_is_ignored_on_other_statuses(receiver: WebhookReceiver) -> None:
    receiver.script(Reply(500, headers={"Retry-After": "120"}))
    attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    assert attempt.retry_after_s is None


def test_retry_after_parsing() -> None:
    now = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    assert parse_retry_after("0", now) == 0.0
    assert parse_retry_after(" 30 ", now) == 30.0
    assert parse_retry_after("Sun, 06 Dec 2026 03:01:00 GMT", now) == 60.0
    assert parse_retry_after("Sun, 06 Dec 2026 02:00:00 GMT", now) == 0.0  # in the past: now
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_only_one_kilobyte_of_the_answer_is_kept_and_the_connection_is_reused(receiver: WebhookReceiver) -> None:
    # Given a receiver answering 10 kB
    receiver.script(Reply(500, b"x" * 10_000))
    # When two messages are delivered
    first = deliver(receiver.url(), msg_id="a", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    second = deliver(receiver.url(), msg_id="b", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    # Then 1024 bytes of each answer are kept
    assert first.response_excerpt == "x" * 1024 and second.response_excerpt == "x" * 1024
    # And both went over one connection (the rest of the answer was read to reuse it)
    assert receiver.connections == 1


def test_an_answer_too_long_to_drain_closes_the_connection_instead(receiver: WebhookReceiver) -> None:
    receiver.script(Reply(200, b"y" * 200_000))
    for msg in ("a", "b"):
        attempt = deliver(receiver.url(), msg_id=msg, body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
        assert attempt.succeeded and attempt.response_excerpt == "y" * 1024
    assert receiver.connections == 2


def test_deliveries_reuse_connections(receiver: WebhookReceiver) -> None:
    for n in range(20):
        deliver(receiver.url(), msg_id=f"m{n}", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    assert len(receiver.requests) == 20 and receiver.connections == 1


def test_a_receiver_that_closed_an_idle_connection_still_gets_the_next_delivery(receiver: WebhookReceiver) -> None:
    # Given a kept connection the receiver closes after answering (Connection: close is not announced)
    receiver.script(Reply(204, headers={"Connection": "close"}), Reply(204))
    deliver(receiver.url(), msg_id="a", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    # When the next message goes
    attempt = deliver(receiver.url(), msg_id="b", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    # Then it is delivered (on a new connection)
    assert attempt.succeeded and [r.headers["webhook-id"] for r in receiver.requests] == ["a", "b"]


def test_a_slow_receiver_times_out(receiver: WebhookReceiver) -> None:
    # Given a receiver answering after 30 s, and a timeout of 0.3 s
    receiver.script(Reply(200, delay_s=30))
    settings = Settings(stage="test", webhook_allow_loopback=True, webhook_timeout_s=0.3)
    # When a message is delivered
    attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=settings)
    # Then the attempt failed as a timeout, without an answer, after about the timeout
    assert attempt.status_code is None and not attempt.succeeded
    assert attempt.error == "timeout: no answer within 0.3 s"
    assert 250 <= attempt.duration_ms < 2000


def test_nothing_listening_is_a_connection_failure() -> None:
    with WebhookReceiver() as gone:
        url = gone.url()
    attempt = deliver(url, msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    assert attempt.status_code is None and attempt.error is not None
    assert attempt.error.startswith("connection failed") and "refused" in attempt.error.lower()


def test_the_guard_refuses_before_anything_is_sent(receiver: WebhookReceiver) -> None:
    # Given a receiver on loopback, and loopback not allowed
    settings = Settings(stage="test")
    # When a message is delivered to it
    attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=settings)
    # Then it was refused by the guard, and nothing reached the receiver
    assert attempt.status_code is None
    assert attempt.error == "refused: loopback address 127.0.0.1"
    assert receiver.requests == []


def test_the_connection_goes_to_the_checked_address_not_a_second_resolution(receiver: WebhookReceiver) -> None:
    # Given a name whose DNS answer changes after the first lookup (DNS rebinding): first the receiver's loopback
    # address (allowed here), then the metadata service
    answers = [["127.0.0.1"], ["169.254.169.254"]]
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        return answers[min(len(lookups) - 1, 1)]

    # When a message is delivered to that name
    url = f"http://hooks.rebind.example:{receiver.port}/in"
    attempt = deliver(url, msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL, resolve=rebinding)
    # Then the name was resolved once, by the guard, and the request reached the checked address with the name as Host
    assert attempt.succeeded and lookups == ["hooks.rebind.example"]
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.rebind.example:{receiver.port}"
    # And the next delivery, whose lookup now answers the metadata address, is refused before connecting
    attempt = deliver(url, msg_id="f", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL, resolve=rebinding)
    assert attempt.error == "refused: host hooks.rebind.example resolves to cloud metadata address 169.254.169.254"
    assert len(receiver.requests) == 1


def test_a_receiver_on_ipv6_loopback() -> None:
    with WebhookReceiver(host="::1") as receiver:
        attempt = deliver(
            receiver.url("/v6"), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL
        )
        assert attempt.succeeded and receiver.requests[0].headers["host"] == f"[::1]:{receiver.port}"
    close_connections()
