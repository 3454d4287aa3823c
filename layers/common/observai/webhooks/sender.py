"""One delivery attempt of a webhook message: the SSRF check, the signed POST, and what the receiver answered.

The POST goes to the address the guard checked (``ssrf.Target.address``), with the URL's host as the Host header
and, for https, as the TLS server name the certificate is verified against: the name is resolved once, by the
guard, so a DNS answer that changes after the check (DNS rebinding) is never used.

HTTP semantics (Standard Webhooks, issue 13 §3): success is a 2xx only; a 3xx is a failure and its Location is not
followed; 410 means the receiver wants no more (the engine disables the endpoint); 429 and 503 may say when to come
back (``Retry-After``, seconds or an HTTP date). At most 1 kB of the answer is kept. Connections are kept per
(address, port, host) in a small per-process pool, so a burst to one receiver pays one TCP and TLS handshake.

urllib3 (maintained, the HTTP client of botocore and requests, ~15 ms to import) is imported on the first delivery,
not with the layer: only the functions that deliver pay for it.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import itertools
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from observai.config import Settings, get_settings
from observai.text import storable_text
from observai.webhooks.signing import sign
from observai.webhooks.ssrf import Resolver, Target, UnsafeTarget, check_url

if TYPE_CHECKING:
    from urllib3 import HTTPConnectionPool

USER_AGENT = "ObservAI-Hub-Webhooks/1.0"
EXCERPT_BYTES = 1024
# A longer answer is not read to its end: the connection is closed instead of drained for reuse.
_DRAIN_LIMIT_BYTES = 64 * 1024
_MAX_ERROR_CHARS = 1000
_POOLS_MAX = 128  # distinct (address, port, host) kept open per process; the least recently used goes first
_CONNECTIONS_PER_POOL = 8  # concurrent deliveries of one process to one receiver keep this many open


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to; ``status_code`` None means no answer (refused by the guard, timeout, no route)."""

    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None
    retry_after_s: float | None = None  # only from a 429 or 503 that said when to come back

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (RFC 9110 §10.2.3); else None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(eq=False)
class _Watch:
    """One delivery's deadline, and the connection it is using (set when the connection connects or sends)."""

    deadline: float  # time.monotonic()
    conn: Any = None
    expired: bool = False
    done: bool = False
    connected: bool = False  # this try opened a new connection (not one kept from an earlier delivery)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Watchdog:
    """Closes the socket of a delivery past its deadline: the timeout is a total, not a per-read one.

    urllib3's read timeout bounds each wait for data; a receiver that trickles a byte every few seconds would keep a
    delivery (and the endpoint's concurrency slot) for as long as it likes. One daemon thread per process, sleeping
    until the earliest deadline, shuts such a socket down, which ends the blocked read at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, watch: _Watch, conn: Any) -> None:
        with watch.lock:
            first = watch.conn is None
            watch.conn = conn
        if not first:
            return
        with self._cond:
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhook-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is watch:
                self._cond.notify()

    @staticmethod
    def disarm(watch: _Watch) -> None:
        with watch.lock:
            watch.done = True
            watch.conn = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                watch = heapq.heappop(self._heap)[2]
            self._expire(watch)

    @staticmethod
    def _expire(watch: _Watch) -> None:
        with watch.lock:
            if watch.done or watch.conn is None:
                return
            watch.expired = True
            sock = getattr(watch.conn, "sock", None)
            if sock is not None:
                # The plain socket's shutdown (not SSLSocket's): the reading thread's SSL_read just sees the end.
                # Already closed (OSError): the delivery is over anyway.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


_watchdog = _Watchdog()
_current_watch: ContextVar[_Watch | None] = ContextVar("observai_webhook_watch", default=None)


@cache
def _connection_classes() -> tuple[type, type]:
    """urllib3's connection classes, registering each connection with the running delivery's deadline."""
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class _Armed:
        def _arm(self, connecting: bool = False) -> None:
            watch = _current_watch.get()
            if watch is not None:
                watch.connected = watch.connected or connecting
                _watchdog.arm(watch, self)

    class WatchedHTTPConnection(_Armed, HTTPConnection):
        def connect(self) -> None:
            self._arm(connecting=True)
            super().connect()

        def request(self, *args: Any, **kwargs: Any) -> None:
            self._arm()
            super().request(*args, **kwargs)

    class WatchedHTTPSConnection(_Armed, HTTPSConnection):
        def connect(self) -> None:
            self._arm(connecting=True)
            super().connect()

        def request(self, *args: Any, **kwargs: Any) -> None:
            self._arm()
            super().request(*args, **kwargs)

    return WatchedHTTPConnection, WatchedHTTPSConnection


class _Pools:
    """Open connection pools per (scheme, address, port, host): reuse across deliveries of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: OrderedDict[tuple[str, str, int, str, str | None], HTTPConnectionPool] = OrderedDict()

    def get(self, target: Target, address: str, ca_certs: str | None) -> HTTPConnectionPool:
        key = (target.scheme, address, target.port, target.host, ca_certs)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            pool = self._new(target, address, ca_certs)
            self._pools[key] = pool
            evicted = self._pools.popitem(last=False)[1] if len(self._pools) > _POOLS_MAX else None
        if evicted is not None:
            evicted.close()
        return pool

    @staticmethod
    def _new(target: Target, address: str, ca_certs: str | None) -> HTTPConnectionPool:
        import urllib3

        common: dict[str, Any] = {
            "port": target.port,
            "maxsize": _CONNECTIONS_PER_POOL,
            "block": False,
            "retries": False,
        }
        plain, tls = _connection_classes()
        pool: HTTPConnectionPool
        if target.scheme == "https":
            # TCP to the checked address; SNI and certificate verification against the URL's host.
            pool = urllib3.HTTPSConnectionPool(
                address,
                cert_reqs="CERT_REQUIRED",
                ca_certs=ca_certs,
                server_hostname=target.host,
                assert_hostname=target.host,
                **common,
            )
            pool.ConnectionCls = tls
        else:
            pool = urllib3.HTTPConnectionPool(address, **common)
            pool.ConnectionCls = plain
        return pool

    def clear(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()


_pools = _Pools()


def close_connections() -> None:
    """Close every kept connection (tests; a process about to fork)."""
    _pools.clear()


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _describe(exc: BaseException, timeout_s: float) -> str:
    """The error of an attempt that got no answer, in words for the delivery log (never a header or the body)."""
    from urllib3 import exceptions as e

    if isinstance(exc, e.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, e.NewConnectionError):  # first: urllib3 makes it a ConnectTimeoutError too
        text = f"connection failed: {exc}"
    elif isinstance(exc, e.ConnectTimeoutError):
        text = f"timeout: no connection within {timeout_s:g} s"
    elif isinstance(exc, e.ReadTimeoutError | TimeoutError):
        text = f"timeout: no answer within {timeout_s:g} s"
    elif isinstance(exc, e.SSLError):
        text = f"tls: {exc}"
    elif isinstance(exc, e.ProtocolError):
        text = f"connection broken: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return storable_text(text)[:_MAX_ERROR_CHARS]  # may quote what the receiver sent


def _is_stale_connection(exc: BaseException) -> bool:
    """A kept connection that turned out closed (the receiver's keep-alive ended while it was idle). The request most
    likely never reached the receiver; sent again once, on a new connection (at least once: a receiver drops a
    duplicate webhook-id)."""
    import http.client

    from urllib3 import exceptions as e

    if not isinstance(exc, e.ProtocolError):
        return False
    cause = exc.args[1] if len(exc.args) > 1 else exc.__cause__
    return isinstance(cause, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)


def deliver(
    url: str,
    *,
    msg_id: str,
    body: bytes,
    secrets: Sequence[str],
    now: datetime,
    settings: Settings | None = None,
    resolve: Resolver | None = None,
    ca_certs: str | None = None,
) -> Attempt:
    """POST ``body`` to ``url`` signed with ``secrets`` (``webhook-timestamp`` is ``now``): one attempt, no retry.

    ``resolve`` replaces getaddrinfo for the guard (tests); ``ca_certs`` is a CA bundle for https (tests with their
    own certificate authority; the system's otherwise). Never raises for what the receiver or the network does."""
    timestamp = int(now.timestamp())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    return post(url, body=body, headers=headers, now=now, settings=settings, resolve=resolve, ca_certs=ca_certs)


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    now: datetime,
    settings: Settings | None = None,
    resolve: Resolver | None = None,
    ca_certs: str | None = None,
) -> Attempt:
    """POST ``body`` with ``headers`` to ``url`` through the SSRF guard (``settings.webhook_allow_loopback``), within
    ``settings.webhook_timeout_s``, no redirects: one attempt. The Host header is the URL's. The webhook engine's
    signed deliveries and the paging channels (observai.notify.channels: Slack, PagerDuty) both send through it.
    Never raises for what the receiver or the network does."""
    settings = settings or get_settings()
    started = time.perf_counter()
    try:
        target = check_url(url, settings=settings, resolve=resolve)
    except UnsafeTarget as refused:
        return Attempt(None, _elapsed_ms(started), None, f"refused: {refused.reason}"[:_MAX_ERROR_CHARS])

    headers = {"Host": _host_header(target), **headers}
    timeout = settings.webhook_timeout_s
    watch = _Watch(deadline=time.monotonic() + timeout - (time.perf_counter() - started))
    token = _current_watch.set(watch)
    try:
        # The checked addresses in turn (IPv4 first), the next only when one refuses the connection outright (a host
        # with an IPv6 address this network cannot reach); never the name again.
        addresses = target.addresses or (target.address,)
        for index, address in enumerate(addresses):
            pool = _pools.get(target, address, ca_certs)
            attempt, unreachable = _post(pool, target, body, headers, timeout, started, now, watch)
            if not (unreachable and index + 1 < len(addresses) and not watch.expired):
                return attempt
        return attempt
    finally:
        _current_watch.reset(token)
        _watchdog.disarm(watch)


def _post(
    pool: HTTPConnectionPool,
    target: Target,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    started: float,
    now: datetime,
    watch: _Watch,
) -> tuple[Attempt, bool]:
    """One POST through ``pool``; also whether the address refused the connection (another one may be tried)."""
    import urllib3
    from urllib3.exceptions import NewConnectionError

    response = None
    for attempt in (1, 2):
        remaining = max(0.001, timeout - (time.perf_counter() - started))
        watch.connected = False
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                preload_content=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=remaining, read=remaining, total=remaining),
            )
            break
        except Exception as exc:  # anything the network does is the attempt's error, never the caller's
            if watch.expired:
                return Attempt(None, _elapsed_ms(started), None, f"timeout: no answer within {timeout:g} s"), False
            # Once, and only when a kept connection failed: a fresh one that fails is the receiver's answer.
            if attempt == 1 and not watch.connected and _is_stale_connection(exc):
                continue
            failed = Attempt(None, _elapsed_ms(started), None, _describe(exc, timeout))
            return failed, isinstance(exc, NewConnectionError)  # refused, no route (a timeout is ConnectTimeoutError)
    assert response is not None
    if watch.expired:
        # Cut off while reading the headers: http.client takes the end of the stream for the end of the headers, so
        # this "response" may be a status line and half a header. No answer in time is what happened.
        _watchdog.disarm(watch)
        response.close()
        response.release_conn()
        return Attempt(None, _elapsed_ms(started), None, f"timeout: no answer within {timeout:g} s"), False
    try:
        excerpt_bytes = response.read(EXCERPT_BYTES, decode_content=False)
        drained = len(excerpt_bytes)
        # Read the rest (bounded) so that the connection can serve the next delivery; a long answer closes it.
        while drained <= _DRAIN_LIMIT_BYTES:
            chunk = response.read(16384, decode_content=False)
            if not chunk:
                break
            drained += len(chunk)
        complete = drained <= _DRAIN_LIMIT_BYTES
    except Exception:  # the status is what matters; a body cut short only loses the excerpt's end and the reuse
        complete = False
        excerpt_bytes = b""
    finally:
        duration_ms = _elapsed_ms(started)
    # Disarmed before the connection goes back to the pool: the watchdog must never shut a socket that another
    # delivery has taken since. One it shut just now is closed here, not pooled.
    _watchdog.disarm(watch)
    if not complete or watch.expired:
        response.close()
    response.release_conn()
    status = response.status
    retry_after = parse_retry_after(response.headers.get("retry-after"), now) if status in (429, 503) else None
    # What the receiver sent is untrusted text for a Postgres column: no NUL, invalid UTF-8 as U+FFFD.
    excerpt = storable_text(excerpt_bytes.decode("utf-8", errors="replace"))[:EXCERPT_BYTES] if excerpt_bytes else None
    error = None if 200 <= status < 300 else storable_text(_status_error(status, response.headers.get("location")))
    return Attempt(status, duration_ms, excerpt, error, retry_after), False


def _status_error(status: int, location: str | None) -> str:
    if 300 <= status < 400:
        # Shown to the endpoint's owners, who chose the URL: the Location says where to point it instead.
        where = f" to {location[:500]}" if location else ""
        return f"HTTP {status}: redirect{where} not followed"
    return f"HTTP {status}"


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))
