"""A real HTTP webhook receiver on localhost for tests: records every request, answers as scripted.

    with WebhookReceiver() as receiver:                  # 204 to everything
        receiver.script(Reply(500), Reply(500), Reply(200))  # then these, in order; the last one repeats
        deliver(receiver.url("/hook"), ...)
        receiver.requests[0].headers["webhook-id"]

HTTP/1.1 with keep-alive (``receiver.connections`` counts the TCP connections accepted, to see reuse); a reply may
be delayed (``delay_s``: a slow receiver, for timeouts) — waiting on an event that ``close`` sets, so that a test
never waits out the delay when it ends. ``reply`` may be a function of the request (it may also wait, to hold a
delivery in flight while the test does something else). Each request notes when it arrived (``at``,
``time.monotonic()``), to time a delivery against others. TCP_NODELAY, as real servers: http.server sends the headers
and the body apart, and with Nagle's algorithm each answer would wait ~40 ms for the sender's delayed ACK.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 204
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the status line


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_address: str
    at: float = 0.0  # time.monotonic() when the request arrived


class _Server(ThreadingHTTPServer):
    # A real server's listen backlog, not socketserver's 5: a batch connecting at once must not lose a SYN (its
    # retry comes after 1 s, past the timeouts some tests set).
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender hanging up (a closed kept connection, a cut long answer, a timeout) is not the test's failure;
        # anything else still prints.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class WebhookReceiver:
    def __init__(
        self,
        host: str = "127.0.0.1",
        reply: Reply | Callable[[Received], Reply] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.requests: list[Received] = []
        self.connections = 0
        self._replies: list[Reply] = []
        self._default: Reply | Callable[[Received], Reply] = reply or Reply(204)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        server_class = _IPv6Server if ":" in host else _Server
        self._server = server_class((host, 0), self._handler())
        self._server.daemon_threads = True
        self.scheme = "https" if tls is not None else "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def url(self, path: str = "/", host: str | None = None) -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{self.scheme}://{name}:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        """The next requests get these replies in order; after them, the last one (or the default) repeats."""
        with self._lock:
            self._replies = list(replies)

    def _next_reply(self, request: Received) -> Reply:
        with self._lock:
            self.requests.append(request)
            if len(self._replies) > 1:
                return self._replies.pop(0)
            if self._replies:
                return self._replies[0]
        return self._default(request) if callable(self._default) else self._default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                request = Received(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    str(self.client_address[0]),
                    arrived,
                )
                reply = receiver._next_reply(request)
                if reply.delay_s and receiver._closing.wait(reply.delay_s):
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return None  # quiet tests: the requests are in receiver.requests

        return Handler

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass(frozen=True)
class Certificates:
    ca_file: str  # the CA bundle a client trusts
    server_context: ssl.SSLContext  # for WebhookReceiver(tls=...): a certificate for the names given


def make_certificates(directory: Path, names: tuple[str, ...]) -> Certificates:
    """A throwaway certificate authority and a server certificate it signed for ``names`` (DNS names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "observai test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "server.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "server.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    return Certificates(str(ca_file), context)
