"""A real HTTP server on 127.0.0.1 standing in for the Gemini API (generativelanguage.googleapis.com), so no test
reaches the internet. The google-genai client is pointed at it through its base URL (``GEMINI_BASE_URL``):

    with GeminiStandIn() as gemini:
        settings = Settings(gemini_api_key="test-key", gemini_base_url=gemini.base_url, ...)
        # or: monkeypatch.setenv("GEMINI_BASE_URL", gemini.base_url); monkeypatch.setenv("GEMINI_API_KEY", "test-key")
        gemini.answer_json({"summary": ...}, input_tokens=1200, output_tokens=300)  # the next generateContent
        gemini.fail(429, retry_after=2)   # the next request (any kind) is refused so
        gemini.slow(5)                    # the next request waits 5 s before its answer
        gemini.answer_text("not json")    # the next generateContent answers this text
        ...
        gemini.requests[-1].prompt, .system, .schema, .model, .body, .headers

It speaks what the SDK sends and expects (the REST API, as captured from google-genai 3.x in
tests/integration/test_ai_gemini.py; 3.x calls ``/v1/``, older releases ``/v1beta/``: both are served):

- ``POST /v1/models/{model}:generateContent``: ``{"contents": [{"parts": [{"text"}], "role": "user"}],
  "systemInstruction": {"parts": [{"text"}], "role": "user"}, "generationConfig": {"responseMimeType",
  "responseSchema" (the Gemini Schema, its keys as the SDK writes them: "type": "OBJECT", "min_items", ...),
  "maxOutputTokens", "temperature", "thinkingConfig"}}``;
  answers ``{"candidates": [{"content": {"parts": [{"text"}], "role": "model"}, "finishReason": "STOP"}],
  "usageMetadata": {"promptTokenCount", "candidatesTokenCount", "totalTokenCount"}, "modelVersion"}``.
- ``POST /v1/models/{model}:batchEmbedContents``: ``{"requests": [{"model": "models/…", "content": {"parts":
  [{"text"}]}, "outputDimensionality"}]}``; answers ``{"embeddings": [{"values": [...]}]}``
  (and ``:embedContent`` with one ``content``: ``{"embedding": {"values": [...]}}``).
- The API key arrives in the ``x-goog-api-key`` header; errors are ``{"error": {"code", "message", "status"}}``.

Scripted replies queue up in order; a request takes the first one that fits it (answers fit generateContent only,
failures and delays any request). With nothing queued, ``responder`` (request → the JSON object to answer) is used:
by default a minimal object valid for the request's response schema. Embeddings are deterministic and meaningful: a
normalised bag-of-words hash of the text at the requested dimension, so texts sharing words are near each other.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^:/]+):(?P<method>[A-Za-z]+)$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class StandInRequest:
    kind: str  # generateContent, batchEmbedContents, embedContent
    model: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    system: str = ""
    prompt: str = ""
    schema: dict[str, Any] | None = None
    texts: list[str] = field(default_factory=list)  # the texts to embed

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-goog-api-key")


@dataclass(frozen=True)
class _Answer:
    obj: Any = None
    text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str = "STOP"


@dataclass(frozen=True)
class _Fail:
    status: int
    retry_after: str | None = None
    message: str = ""


@dataclass(frozen=True)
class _Delay:
    seconds: float


def bag_of_words_vector(text: str, dimensions: int) -> list[float]:
    """Each word (lower-case letters and digits) adds ±1 at a position given by its hash; unit length. Texts with
    no word get the first axis."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [x / norm for x in vector]


def instance_of(schema: dict[str, Any] | None) -> Any:
    """A minimal value valid for a Gemini Schema (``"type": "OBJECT"``...) or a JSON Schema: required properties,
    the first enum value, ``minItems`` items, strings of ``minLength``."""
    if not schema:
        return {}
    if "anyOf" in schema or "any_of" in schema:
        options = schema.get("anyOf") or schema.get("any_of") or [{}]
        non_null = [o for o in options if str(o.get("type", "")).lower() != "null"]
        return instance_of((non_null or options)[0])
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required")
        names = required if required is not None else list(properties)
        return {name: instance_of(properties.get(name, {})) for name in names}
    if kind == "array":
        count = int(schema.get("minItems", schema.get("min_items", 0)) or 0)
        return [instance_of(schema.get("items") or {}) for _ in range(count)]
    if kind == "string":
        length = int(schema.get("minLength", schema.get("min_length", 0)) or 0)
        return "stand-in".ljust(max(length, 8), ".")
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        return minimum if minimum is not None else 0
    if kind == "boolean":
        return False
    return None


def _texts(content: Any) -> list[str]:
    if isinstance(content, dict):
        return [str(p.get("text", "")) for p in content.get("parts") or [] if isinstance(p, dict)]
    return []


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class GeminiStandIn:
    def __init__(self, responder: Callable[[StandInRequest], Any] | None = None, api_key: str | None = None) -> None:
        self.requests: list[StandInRequest] = []
        self.responder: Callable[[StandInRequest], Any] = responder or (lambda request: instance_of(request.schema))
        self.api_key = api_key  # when set, another key gets the API's 400 API_KEY_INVALID
        self._queue: list[_Answer | _Fail | _Delay] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def __enter__(self) -> GeminiStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- scripting --------------------------------------------------------------------------------------------
    def answer_json(
        self,
        obj: Any,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reason: str = "STOP",
    ) -> None:
        """The next generateContent answers ``obj`` (as JSON text), with these token counts (default: ~4 chars
        a token of the prompt and of the answer)."""
        self._push(
            _Answer(obj=obj, input_tokens=input_tokens, output_tokens=output_tokens, finish_reason=finish_reason)
        )

    def answer_text(
        self,
        raw: str,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reason: str = "STOP",
    ) -> None:
        """The next generateContent answers this raw text (e.g. invalid JSON)."""
        self._push(
            _Answer(text=raw, input_tokens=input_tokens, output_tokens=output_tokens, finish_reason=finish_reason)
        )

    def fail(self, status: int, retry_after: float | str | None = None, message: str = "") -> None:
        """The next request (any kind) gets this HTTP error, with a Retry-After header when given."""
        self._push(_Fail(status, None if retry_after is None else str(retry_after), message))

    def slow(self, seconds: float) -> None:
        """The next request (any kind) waits ``seconds`` before its answer (the next queued one, else the default).
        Closing the stand-in ends the wait."""
        self._push(_Delay(seconds))

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    def _push(self, item: _Answer | _Fail | _Delay) -> None:
        with self._lock:
            self._queue.append(item)

    def _take(self, kind: str) -> _Answer | _Fail | _Delay | None:
        with self._lock:
            for i, item in enumerate(self._queue):
                if isinstance(item, _Answer) and kind != "generateContent":
                    continue
                return self._queue.pop(i)
        return None

    # -- the API ----------------------------------------------------------------------------------------------
    def _parse(self, path: str, headers: dict[str, str], raw: bytes) -> StandInRequest | None:
        match = _PATH.match(path.split("?", 1)[0])
        if match is None:
            return None
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        kind, model = match["method"], match["model"]
        system = prompt = ""
        schema = None
        texts: list[str] = []
        if kind == "generateContent":
            system = "\n".join(_texts(body.get("systemInstruction")))
            prompt = "\n".join(t for c in body.get("contents") or [] for t in _texts(c))
            config = body.get("generationConfig") or {}
            schema = config.get("responseSchema") or config.get("responseJsonSchema")
        elif kind == "batchEmbedContents":
            texts = ["\n".join(_texts(r.get("content"))) for r in body.get("requests") or []]
        elif kind == "embedContent":
            texts = ["\n".join(_texts(body.get("content")))]
        return StandInRequest(kind, model, path, headers, body, system, prompt, schema, texts)

    def _answer(self, request: StandInRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        if self.api_key is not None and request.api_key != self.api_key:
            body = _error(400, "API key not valid. Please pass a valid API key.")
            body["error"]["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ]
            return 400, {}, body
        item = self._take(request.kind)
        while isinstance(item, _Delay):
            if self._closing.wait(item.seconds):
                return 503, {}, _error(503, "the stand-in is closing")
            item = self._take(request.kind)
        if isinstance(item, _Fail):
            headers = {"Retry-After": item.retry_after} if item.retry_after is not None else {}
            return item.status, headers, _error(item.status, item.message)
        if request.kind in ("batchEmbedContents", "embedContent"):
            vectors = []
            for r, text in zip(_embed_requests(request), request.texts, strict=True):
                dimensions = int(r.get("outputDimensionality") or 3072)
                vectors.append({"values": bag_of_words_vector(text, dimensions)})
            if request.kind == "embedContent":
                return 200, {}, {"embedding": vectors[0]}
            return 200, {}, {"embeddings": vectors}
        if request.kind != "generateContent":
            return 404, {}, _error(404, f"method {request.kind} is not stood in for")
        answer = item if isinstance(item, _Answer) else _Answer(obj=self.responder(request))
        text = answer.text if answer.text is not None else json.dumps(answer.obj)
        input_tokens = (
            answer.input_tokens
            if answer.input_tokens is not None
            else (max(1, (len(request.system) + len(request.prompt)) // 4))
        )
        output_tokens = answer.output_tokens if answer.output_tokens is not None else max(1, len(text) // 4)
        return (
            200,
            {},
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": answer.finish_reason,
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": input_tokens,
                    "candidatesTokenCount": output_tokens,
                    "totalTokenCount": input_tokens + output_tokens,
                },
                "modelVersion": request.model,
                "responseId": hashlib.sha1(text.encode()).hexdigest()[:16],
            },
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = stand_in._parse(self.path, headers, raw)
                if request is None:
                    self._send(404, {}, _error(404, f"no such route: {self.path}"))
                    return
                with stand_in._lock:
                    stand_in.requests.append(request)
                status, extra, body = stand_in._answer(request)
                self._send(status, extra, body)

            def _send(self, status: int, extra: dict[str, str], body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout)

        return Handler


def _embed_requests(request: StandInRequest) -> list[dict[str, Any]]:
    if request.kind == "embedContent":
        return [request.body]
    return list(request.body.get("requests") or [])


def _error(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message or f"stand-in error {status}",
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }
