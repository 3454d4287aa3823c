"""Serve every HttpApi route of the template on localhost, answering as API Gateway (HTTP API) does.

Requests become payload-2.0 events for the matching function, called in-process. API Gateway's own
answers are reproduced: CORS preflight from the template's CorsConfiguration, 404 {"message":"Not Found"}
for an unknown route, 413 for a body over 10 MB, 500 {"message":"Internal Server Error"} when the
function fails.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from observai_local.events import http_event
from observai_local.functions import Environment, HttpResponse, Invoker, to_http_response
from observai_local.routing import Router
from observai_local.template import CorsConfig, Template, load_template

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API payload limit
DEFAULT_PORT = 3000


def _json(status: int, payload: dict[str, str]) -> HttpResponse:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


def origin_allowed(cors: CorsConfig, origin: str) -> bool:
    for allowed in cors.allow_origins:
        if allowed == "*" or allowed.lower() == origin.lower():
            return True
        if "*" in allowed:  # https://*.example.com
            pattern = "^" + ".*".join(re.escape(p) for p in allowed.lower().split("*")) + "$"
            if re.match(pattern, origin.lower()):
                return True
    return False


def _allow_origin_value(cors: CorsConfig, origin: str) -> str:
    return "*" if "*" in cors.allow_origins and not cors.allow_credentials else origin


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        template: Template,
        invoker: Invoker,
        *,
        quiet: bool = False,
        listen: bool = True,
    ) -> None:
        """``listen=False`` binds the port (a busy one fails here) without accepting connections yet: call
        ``server_activate()`` when ready, so a client meanwhile is refused rather than left waiting."""
        super().__init__(address, _RequestHandler, bind_and_activate=False)
        try:
            self.server_bind()
            if listen:
                self.server_activate()
        except BaseException:
            self.server_close()
            raise
        self.template = template
        self.invoker = invoker
        self.router = Router(template.routes)
        self.quiet = quiet
        self.host, self.port = address[0], int(self.server_address[1])  # the port chosen when 0 was asked

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up before its answer (gave up waiting, Ctrl-C) is no error of ours: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without TCP_NODELAY, Nagle + delayed ACK adds ~40 ms.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "observai-local"

    def do_GET(self) -> None:
        self._handle()

    # Any method reaches the router, as at API Gateway: one no route has (TRACE, ...) is its 404, not http.server's 501.
    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = do_GET

    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_") and name[3:].isupper():  # an extension method (PROPFIND, QUERY, ...)
            return self.do_GET
        raise AttributeError(name)

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} [{self.log_date_time_string()}] {format % args}\n")

    def _handle(self) -> None:
        method = self.command.upper()
        split = urlsplit(self.path)
        raw_path, raw_query = split.path or "/", split.query
        cors = self.server.template.cors
        origin = self.headers.get("origin")
        request_id = str(uuid.uuid4())

        if cors and method == "OPTIONS" and origin and self.headers.get("access-control-request-method"):
            self._send(self._preflight(cors, origin), request_id)
            return

        body = self._read_body()
        if body is None:
            self.close_connection = True
            self._send(_json(413, {"message": "Request Entity Too Large"}), request_id)
            return

        match = self.server.router.match(method, raw_path)
        if match is None:
            response = _json(404, {"message": "Not Found"})
        else:
            headers = [*self.headers.items(), ("x-forwarded-port", str(self.server.port))]
            event = http_event(
                method,
                raw_path,
                raw_query=raw_query,
                headers=headers,
                body=body if body else None,
                route_key="$default" if match.route.path == "$default" else match.route.route_key,
                path_parameters=match.path_parameters,
                source_ip=self.client_address[0],
                domain_name=self.headers.get("host") or f"{self.server.host}:{self.server.port}",
                protocol=self.request_version,
            )
            try:
                response = to_http_response(self.server.invoker.invoke(match.route.function, event))
            except Exception:
                traceback.print_exc(file=sys.stderr)
                response = _json(500, {"message": "Internal Server Error"})
        if cors and origin and origin_allowed(cors, origin):
            # With CORS configured, API Gateway replaces the integration's CORS headers with its own.
            response.headers = [(k, v) for k, v in response.headers if not k.lower().startswith("access-control-")]
            response.headers.append(("access-control-allow-origin", _allow_origin_value(cors, origin)))
            if cors.expose_headers:
                response.headers.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
            if cors.allow_credentials:
                response.headers.append(("access-control-allow-credentials", "true"))
            response.headers.append(("vary", "origin"))
        self._send(response, request_id)

    def _preflight(self, cors: CorsConfig, origin: str) -> HttpResponse:
        """API Gateway answers preflight itself (204); without CORS headers when the request is not allowed."""
        requested_method = (self.headers.get("access-control-request-method") or "").upper()
        requested_headers = self.headers.get("access-control-request-headers") or ""
        methods_ok = "*" in cors.allow_methods or requested_method in cors.allow_methods
        if not origin_allowed(cors, origin) or not methods_ok:
            return HttpResponse(204)
        headers = [("access-control-allow-origin", _allow_origin_value(cors, origin))]
        methods = requested_method if "*" in cors.allow_methods else ",".join(cors.allow_methods)
        headers.append(("access-control-allow-methods", methods))
        allow_headers = requested_headers if "*" in cors.allow_headers else ",".join(cors.allow_headers)
        if allow_headers:
            headers.append(("access-control-allow-headers", allow_headers))
        if cors.max_age is not None:
            headers.append(("access-control-max-age", str(cors.max_age)))
        if cors.allow_credentials:
            headers.append(("access-control-allow-credentials", "true"))
        headers.append(("vary", "origin"))
        return HttpResponse(204, headers)

    def _read_body(self) -> bytes | None:
        """The request body; None when it is over the limit (the rest is not read)."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk_size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if chunk_size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                size += chunk_size
                if size > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(chunk_size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            if length <= 4 * MAX_BODY_BYTES:  # drain it, so the client reads the 413 rather than a reset
                remaining = length
                while remaining > 0 and (chunk := self.rfile.read(min(1 << 20, remaining))):
                    remaining -= len(chunk)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: HttpResponse, request_id: str) -> None:
        self.send_response(response.status)
        names = {k.lower() for k, _ in response.headers}
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        if "apigw-requestid" not in names:
            self.send_header("apigw-requestid", request_id)
        self.send_header("content-length", str(len(response.body)))
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)


def make_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    template: Template | None = None,
    template_path: Path | None = None,
    overrides: Environment | None = None,
    invoker: Invoker | None = None,
    quiet: bool = False,
    listen: bool = True,
) -> LocalApiServer:
    template = template or load_template(template_path)
    invoker = invoker or Invoker(template, overrides)
    return LocalApiServer((host, port), template, invoker, quiet=quiet, listen=listen)


def start_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    template: Template | None = None,
    overrides: Environment | None = None,
    invoker: Invoker | None = None,
    quiet: bool = False,
) -> tuple[LocalApiServer, str]:
    """Serve in a daemon thread (port 0 picks a free port); stop with ``server.shutdown(); server.server_close()``."""
    server = make_server(host, port, template=template, overrides=overrides, invoker=invoker, quiet=quiet)
    threading.Thread(target=server.serve_forever, name="observai-local-http", daemon=True).start()
    return server, server.base_url
