"""The benchmarks' receiver of outbound HTTP (webhooks, Slack stand-in): a process of its own (spawned), answering
200 ``ok`` at once with keep-alive, counting the requests. Out of the measured process, so its threads do not take
that interpreter's lock (a receiver is elsewhere in real life).

It answers like a real server: TCP_NODELAY (http.server writes the headers and the body apart, and with Nagle on each
body waits ~40 ms for the client's delayed ACK, which a bench would measure instead of us), and a listen backlog of
128, not socketserver's 5 (a batch connecting at once would lose SYNs, retried only after 1 s).
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RealisticServer(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def _serve_counting(port: Any, count: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            with count.get_lock():
                count.value += 1
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = RealisticServer(("127.0.0.1", 0), Handler)
    port.value = server.server_address[1]
    server.serve_forever()


class CountingReceiver:
    def __init__(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # not fork: the child must not inherit the database's atexit
        self._port = context.Value("i", 0)
        self._count = context.Value("q", 0)
        self._process = context.Process(target=_serve_counting, args=(self._port, self._count), daemon=True)
        self._process.start()
        deadline = time.monotonic() + 30
        while not self._port.value and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self._port.value:
            raise RuntimeError("the receiver process did not start")
        self.base = f"http://127.0.0.1:{self._port.value}"

    @property
    def count(self) -> int:
        return int(self._count.value)

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(5)
