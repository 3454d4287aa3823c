"""A real HTTP webhook receiver on localhost for tests: records every request, answers as scripted.

    with WebhookReceiver() as receiver:                  # 204 to everything
        receiver.script(Reply(500), Reply(500), Reply(200))  # then these, in order; the last one repeats
        deliver(receiver.url("/hook"), ...)
        receiver.requests[0].headers["webhook-id"]

HTTP/1.1 with keep-alive (``receiver.connections`` counts the TCP connections accepted, to see reuse); a reply may
be delayed (``delay_s``: a slow receiver, for timeouts) — waiting on an event that ``close`` sets, so that a test
never waits out the delay when it ends.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", reply: Reply | Callable[[Received], Reply] | None = None) -> None:
        self.requests: list[Received] = []
        self.connections = 0
        self._replies: list[Reply] = []
        self._default: Reply | Callable[[Received], Reply] = reply or Reply(204)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def url(self, path: str = "/", host: str | None = None) -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{name}:{self.port}{path}"

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

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                request = Received(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    str(self.client_address[0]),
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
