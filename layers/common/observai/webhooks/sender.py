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

import email.utils
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from observai.config import Settings, get_settings
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
        if target.scheme == "https":
            # TCP to the checked address; SNI and certificate verification against the URL's host.
            return urllib3.HTTPSConnectionPool(
                address,
                cert_reqs="CERT_REQUIRED",
                ca_certs=ca_certs,
                server_hostname=target.host,
                assert_hostname=target.host,
                **common,
            )
        return urllib3.HTTPConnectionPool(address, **common)

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
    return text[:_MAX_ERROR_CHARS]


def _is_stale_connection(exc: BaseException) -> bool:
    """A kept connection the receiver closed while idle: the request never reached it, so it is sent again once."""
    from urllib3 import exceptions as e

    if not isinstance(exc, e.ProtocolError):
        return False
    cause = exc.args[1] if len(exc.args) > 1 else exc.__cause__
    import http.client

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
    settings = settings or get_settings()
    started = time.perf_counter()
    try:
        target = check_url(url, settings=settings, resolve=resolve)
    except UnsafeTarget as refused:
        return Attempt(None, _elapsed_ms(started), None, f"refused: {refused.reason}"[:_MAX_ERROR_CHARS])

    import urllib3

    timestamp = int(now.timestamp())
    headers = {
        "Host": _host_header(target),
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    timeout = settings.webhook_timeout_s
    pool = _pools.get(target, target.address, ca_certs)
    response = None
    for attempt in (1, 2):
        remaining = max(0.001, timeout - (time.perf_counter() - started))
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
            if attempt == 1 and _is_stale_connection(exc) and time.perf_counter() - started < timeout:
                continue
            return Attempt(None, _elapsed_ms(started), None, _describe(exc, timeout))
    assert response is not None
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
    if not complete:
        response.close()
    response.release_conn()
    status = response.status
    retry_after = parse_retry_after(response.headers.get("retry-after"), now) if status in (429, 503) else None
    excerpt = excerpt_bytes.decode("utf-8", errors="replace")[:EXCERPT_BYTES] if excerpt_bytes else None
    error = None if 200 <= status < 300 else _status_error(status, response.headers.get("location"))
    return Attempt(status, duration_ms, excerpt, error, retry_after)


def _status_error(status: int, location: str | None) -> str:
    if 300 <= status < 400:
        # Shown to the endpoint's owners, who chose the URL: the Location says where to point it instead.
        where = f" to {location[:500]}" if location else ""
        return f"HTTP {status}: redirect{where} not followed"
    return f"HTTP {status}"


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))
