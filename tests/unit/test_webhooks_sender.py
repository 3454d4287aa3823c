"""One delivery attempt against real HTTP receivers on localhost: headers and signature, HTTP semantics, the guard."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from observai.config import Settings
from observai.webhooks.sender import USER_AGENT, close_connections, deliver, parse_retry_after
from observai.webhooks.signing import new_secret
from standardwebhooks.webhooks import Webhook

from tests.helpers.webhook_receiver import Reply, WebhookReceiver, make_certificates

LOCAL = Settings(stage="test", webhook_allow_loopback=True)
BODY = json.dumps({"type": "webhook.test", "timestamp": "2026-12-06T03:00:00+00:00", "data": {}}).encode()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r
    close_connections()


class _RawReceiver:
    """A TCP receiver that answers ``answer`` bytes to one request per connection, whatever they are, and hangs up."""

    def __init__(self, answer: bytes, connections: int = 1) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._answer = answer
        self._connections = connections
        self.accepted = 0
        self.hung_up = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        for _ in range(self._connections):
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.recv(65536)
                conn.sendall(self._answer)
            self.hung_up.set()

    def __enter__(self) -> _RawReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._thread.join(timeout=5)


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


def test_a_receiver_that_closed_an_idle_connection_still_gets_the_next_delivery() -> None:
    # Given a receiver that answers one request per connection and then hangs up without saying so (no
    # Connection: close), so the sender keeps a connection that is closed by the time of the next delivery
    with _RawReceiver(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", connections=2) as receiver:
        url = f"http://127.0.0.1:{receiver.port}/"
        first = deliver(url, msg_id="a", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
        receiver.hung_up.wait(5)
        # When the next message goes
        second = deliver(url, msg_id="b", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    # Then both were delivered, the second on a new connection
    assert first.succeeded and second.succeeded, second.error
    assert receiver.accepted == 2
    close_connections()


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


def test_https_goes_to_the_checked_address_with_the_name_for_sni_and_certificate(tmp_path) -> None:
    # Given a TLS receiver on loopback with a certificate for hooks.tls.example (a CA of the test's own),
    # and a resolver that knows the name
    certificates = make_certificates(tmp_path, ("hooks.tls.example",))
    resolve = lambda host, port: ["127.0.0.1"] if host in ("hooks.tls.example", "other.tls.example") else []  # noqa: E731
    with WebhookReceiver(tls=certificates.server_context) as receiver:
        url = f"https://hooks.tls.example:{receiver.port}/in"
        # When a message is delivered over https, trusting that CA
        attempt = deliver(
            url,
            msg_id="e",
            body=BODY,
            secrets=[new_secret()],
            now=_now(),
            settings=LOCAL,
            resolve=resolve,
            ca_certs=certificates.ca_file,
        )
        # Then the certificate was verified against the name, and the receiver got the request
        assert attempt.succeeded, attempt.error
        assert receiver.requests[0].headers["host"] == f"hooks.tls.example:{receiver.port}"
        # And a name the certificate does not cover fails the TLS handshake, with nothing sent
        attempt = deliver(
            f"https://other.tls.example:{receiver.port}/in",
            msg_id="f",
            body=BODY,
            secrets=[new_secret()],
            now=_now(),
            settings=LOCAL,
            resolve=resolve,
            ca_certs=certificates.ca_file,
        )
        assert attempt.status_code is None and attempt.error is not None and attempt.error.startswith("tls:")
        # And so does a certificate from an authority not trusted (the system's bundle)
        attempt = deliver(
            url, msg_id="g", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL, resolve=resolve
        )
        assert attempt.error is not None and attempt.error.startswith("tls:")
        assert len(receiver.requests) == 1
    close_connections()


class _TricklingReceiver:
    """A raw TCP receiver that answers a status line, then one header byte every 50 ms: each read gets data well
    within any read timeout, so only a total deadline ends the attempt."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Trickle: ")
                while not self._stop.wait(0.05):
                    conn.sendall(b"a")
            except OSError:
                return  # the sender hung up: what the test expects

    def __enter__(self) -> _TricklingReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(timeout=5)


def test_the_timeout_is_a_total_a_trickling_receiver_cannot_hold_a_delivery() -> None:
    # Given a receiver trickling its headers a byte at a time, and a timeout of 0.5 s
    settings = Settings(stage="test", webhook_allow_loopback=True, webhook_timeout_s=0.5)
    with _TricklingReceiver() as receiver:
        # When a message is delivered
        attempt = deliver(f"http://127.0.0.1:{receiver.port}/", msg_id="e", body=BODY, secrets=[new_secret()],
                          now=_now(), settings=settings)  # fmt: skip
    # Then it ends as a timeout at about 0.5 s, though no single read waited that long
    assert attempt.status_code is None and attempt.error == "timeout: no answer within 0.5 s"
    assert 450 <= attempt.duration_ms < 1500
    close_connections()


def test_concurrent_deliveries_share_a_bounded_set_of_connections(receiver: WebhookReceiver) -> None:
    # Given 8 threads delivering 25 messages each to one receiver
    from concurrent.futures import ThreadPoolExecutor

    secret = new_secret()

    def send(n: int) -> bool:
        attempt = deliver(receiver.url(), msg_id=f"m{n}", body=BODY, secrets=[secret], now=_now(), settings=LOCAL)
        return attempt.succeeded

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(200)))
    # Then every one succeeded, each id arrived once, over at most 8 connections
    assert all(results)
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(f"m{n}" for n in range(200))
    assert receiver.connections <= 8


def test_what_the_receiver_sends_is_kept_as_storable_text(receiver: WebhookReceiver) -> None:
    # Given a receiver answering NUL bytes and invalid UTF-8
    receiver.script(Reply(400, b"bad\x00input \xff\xfe end"))
    attempt = deliver(receiver.url(), msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL)
    # Then the excerpt holds replacement characters instead (Postgres text holds no NUL)
    assert attempt.response_excerpt == "bad\ufffdinput \ufffd\ufffd end"


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.6\r\n", b"\x00\x01garbage\r\n\r\n", b""])
def test_a_receiver_that_does_not_speak_http_is_a_failure_not_an_exception(answer: bytes) -> None:
    with _RawReceiver(answer) as receiver:
        attempt = deliver(f"http://127.0.0.1:{receiver.port}/", msg_id="e", body=BODY, secrets=[new_secret()],
                          now=_now(), settings=LOCAL)  # fmt: skip
    assert attempt.status_code is None and not attempt.succeeded
    assert attempt.error is not None and attempt.error.startswith("connection broken")
    assert "\x00" not in attempt.error and len(attempt.error) <= 1000
    close_connections()


def test_a_name_whose_dns_never_answers_fails_the_attempt_within_the_timeout(receiver: WebhookReceiver) -> None:
    # Given a webhook timeout of 0.5 s and a resolver that does not answer
    unblock = threading.Event()

    def silent(host: str, port: int) -> Sequence[str]:
        unblock.wait(30)
        return ["127.0.0.1"]

    settings = Settings(stage="test", webhook_allow_loopback=True, webhook_timeout_s=0.5)
    try:
        # When a message is delivered to a name on it
        started = datetime.now(UTC)
        attempt = deliver(receiver.url("/", host="stuck.example"), msg_id="e", body=BODY, secrets=[new_secret()],
                          now=_now(), settings=settings, resolve=silent)  # fmt: skip
        elapsed = (datetime.now(UTC) - started).total_seconds()
        # Then the attempt failed without an answer once the timeout passed, and nothing was sent
        assert attempt.status_code is None and not attempt.succeeded
        assert attempt.error == "refused: host stuck.example: no DNS answer within 0.5 s"
        assert 0.45 <= elapsed < 2 and receiver.requests == []
    finally:
        unblock.set()


def test_the_next_checked_address_is_tried_when_one_refuses_the_connection() -> None:
    # Given a name with an IPv4 and an IPv6 loopback address, and a receiver listening on IPv6 only
    with WebhookReceiver(host="::1") as receiver:
        lookups: list[str] = []

        def dual_stack(host: str, port: int) -> Sequence[str]:
            lookups.append(host)
            return ["::1", "127.0.0.1"]

        # When a message is delivered to the name
        url = f"http://dual.example:{receiver.port}/"
        attempt = deliver(url, msg_id="e", body=BODY, secrets=[new_secret()], now=_now(), settings=LOCAL,
                          resolve=dual_stack)  # fmt: skip
        # Then IPv4 (tried first) refused, the other checked address answered, and the name was resolved once
        assert attempt.succeeded, attempt.error
        assert lookups == ["dual.example"] and len(receiver.requests) == 1
        assert receiver.requests[0].headers["host"] == f"dual.example:{receiver.port}"
    close_connections()
