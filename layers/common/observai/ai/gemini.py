"""Google Gemini behind ``observai.ai.model.LanguageModel``, through Google's ``google-genai`` SDK.

Nothing here imports the SDK at module import: only the first call does (~0.5 s), so a function that merely
mentions the AI (the organization's settings, the usage report) never pays for it. The SDK is not in the layer: the
functions that call the model list ``google-genai`` in their own requirements.txt.

Each call is bounded:

- **timeout**: ``AI_TIMEOUT_S`` per HTTP attempt (the SDK's ``HttpOptions.timeout``), and the whole call, retries and
  waits included, within ``AI_TOTAL_TIMEOUT_S``: an attempt gets what is left of it, a retry whose wait would pass it
  is not made.
- **retries**: up to ``AI_MAX_RETRIES`` more attempts after a 429, a 5xx (and 408) or a connection error, with
  exponential backoff and full jitter (``BACKOFF_BASE_S`` doubling, at most ``BACKOFF_MAX_S``); a ``Retry-After``
  the server sends is honoured instead, up to ``MAX_RETRY_AFTER_S`` (asked to wait longer, the call gives up at once:
  ``rate_limited``). The SDK's own retry (tenacity: exponential backoff, but it ignores Retry-After and its sleep cannot
  be injected) is left off. A timed-out attempt is not retried: the next one would most likely time out too, and
  the caller (an API request) cannot wait that long.
- **circuit breaker** (``observai.db.breaker.CircuitBreaker``, one per adapter, so one per container in AWS): every
  failed attempt (429, 5xx, timeout, connection error) counts; ``AI_BREAKER_FAILURES`` in a row open it, and for
  ``AI_BREAKER_COOLDOWN_S`` (doubling while probes fail, at most 10 minutes) calls fail at once with
  ``circuit_open`` instead of waiting on a model that is down; then one probe call is let through.

Every failure is ``AiUnavailable(reason)``; the reasons: ``not_configured``, ``circuit_open``, ``timeout``,
``rate_limited`` (429 after the retries), ``server_error`` (5xx after the retries), ``connection_error``,
``rejected`` (another 4xx: a request the API refuses, e.g. an unknown model), ``unauthorized`` (401/403, or 400
API_KEY_INVALID: the key is wrong), ``error`` (the SDK raised something else: logged with its class), ``blocked``
(the model declined to answer: safety), ``invalid_output`` (``InvalidOutput``: the answer is not a JSON object, or
was cut at the token limit; it carries the token counts, and the caller may retry once, as after a failed
validation of its own).

The API key is a ``SecretStr`` until the SDK's client is built; it is never logged (the log lines below carry the
model, the status and the reason only), and the SDK sends it in the ``x-goog-api-key`` header.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from observai.ai.model import AiUnavailable, Embeddings, Generation
from observai.config import Settings
from observai.db.breaker import CircuitBreaker
from observai.observability import logger

if TYPE_CHECKING:  # pragma: no cover
    from google.genai import Client

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
MAX_RETRY_AFTER_S = 10.0
EMBED_BATCH = 100  # batchEmbedContents takes at most 100 texts per request
CHARS_PER_TOKEN = 4  # the Gemini API reports no token count for embeddings: estimated


class InvalidOutput(AiUnavailable):
    """The model answered, but not with a JSON object (or was cut at ``max_output_tokens``). The tokens were spent:
    ``input_tokens``/``output_tokens`` say how many, for metering; ``raw`` is the start of what came back."""

    def __init__(self, detail: str, *, model: str, input_tokens: int, output_tokens: int, raw: str = "") -> None:
        super().__init__("invalid_output")
        self.detail = detail
        self.model = model
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.raw = raw[:2000]

    def __str__(self) -> str:
        return f"invalid_output: {self.detail}"


class _Failure(Exception):
    """One failed attempt: ``retryable``, its reason, and how long the server asked us to wait."""

    def __init__(self, reason: str, *, retryable: bool, retry_after_s: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        from datetime import UTC, datetime

        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


class GeminiModel:
    """The Gemini adapter. Thread-safe; build it through ``observai.ai.provider.language_model`` (one per container
    and settings). ``clock``/``sleep``/``jitter`` are injectable so tests observe the backoff without waiting."""

    def __init__(
        self,
        settings: Settings,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if settings.gemini_api_key is None:
            raise AiUnavailable("not_configured")
        self._api_key = settings.gemini_api_key
        self._base_url = settings.gemini_base_url
        self.generation_model = settings.ai_generation_model
        self.embedding_model = settings.ai_embedding_model
        self.dimensions = settings.ai_embedding_dimensions
        self.timeout_s = settings.ai_timeout_s
        self.total_timeout_s = max(settings.ai_total_timeout_s, settings.ai_timeout_s)
        self.max_retries = settings.ai_max_retries
        self.thinking_budget = settings.ai_thinking_budget
        self.breaker = breaker or CircuitBreaker(
            "gemini",
            failure_threshold=settings.ai_breaker_failures,
            cooldown_s=settings.ai_breaker_cooldown_s,
            max_cooldown_s=max(600.0, settings.ai_breaker_cooldown_s),
            probe_timeout_s=self.total_timeout_s + 5,
            clock=clock,
        )
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._client: Client | None = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"GeminiModel(generation_model={self.generation_model!r}, embedding_model={self.embedding_model!r})"

    # -- the SDK ----------------------------------------------------------------------------------------------
    def _sdk(self) -> Client:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    from google import genai
                    from google.genai import types

                    self._client = genai.Client(
                        api_key=self._api_key.get_secret_value(),
                        http_options=types.HttpOptions(
                            base_url=self._base_url,
                            timeout=int(self.timeout_s * 1000),
                            retry_options=None,  # ours below: Retry-After, the breaker, an injected sleep
                        ),
                    )
        return self._client

    def _http_options(self, timeout_s: float) -> Any:
        from google.genai import types

        return types.HttpOptions(timeout=max(1, int(timeout_s * 1000)))

    # -- the calls --------------------------------------------------------------------------------------------
    def generate_json(
        self,
        *,
        system: str,
        prompt: str,
        schema: type[BaseModel],
        max_output_tokens: int = 2048,
        temperature: float = 0.2,
    ) -> Generation:
        from google.genai import types

        client = self._sdk()
        model = self.generation_model

        def attempt(timeout_s: float) -> Any:
            config = types.GenerateContentConfig(
                system_instruction=system,
                response_mime_type="application/json",
                response_schema=schema,
                max_output_tokens=max_output_tokens,
                temperature=temperature,
                http_options=self._http_options(timeout_s),
            )
            if self.thinking_budget is not None:
                config.thinking_config = types.ThinkingConfig(thinking_budget=self.thinking_budget)
            return client.models.generate_content(model=model, contents=prompt, config=config)

        response = self._call("generate", model, attempt)
        usage = response.usage_metadata
        input_tokens = int((usage.prompt_token_count if usage else None) or 0)
        output_tokens = int((usage.candidates_token_count if usage else None) or 0) + int(
            (usage.thoughts_token_count if usage else None) or 0
        )
        answered_by = response.model_version or model
        candidate = response.candidates[0] if response.candidates else None
        if candidate is None:
            block = response.prompt_feedback.block_reason if response.prompt_feedback else None
            logger.warning("model gave no answer", extra={"model": model, "block_reason": str(block)})
            raise AiUnavailable("blocked")
        finish = str(getattr(candidate.finish_reason, "value", candidate.finish_reason) or "")
        text = (
            "".join(p.text for p in (candidate.content.parts or []) if p.text and not p.thought)
            if (candidate.content)
            else ""
        )
        if finish in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION") and not text:
            raise AiUnavailable("blocked")
        if finish == "MAX_TOKENS":
            raise InvalidOutput(
                f"the answer was cut at max_output_tokens ({max_output_tokens})",
                model=answered_by,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                raw=text,
            )
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidOutput(
                f"the answer is not JSON: {exc}",
                model=answered_by,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                raw=text,
            ) from None
        if not isinstance(data, dict):
            raise InvalidOutput(
                "the answer is not a JSON object",
                model=answered_by,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                raw=text,
            )
        return Generation(data=data, model=answered_by, input_tokens=input_tokens, output_tokens=output_tokens)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        from google.genai import types

        texts = list(texts)
        if not texts:
            return Embeddings(vectors=[], model=self.embedding_model, input_tokens=0)
        client = self._sdk()
        model = self.embedding_model
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]

            def attempt(timeout_s: float, batch: list[str] = batch) -> Any:
                return client.models.embed_content(
                    model=model,
                    contents=batch,  # a list of strings: one embedding each
                    config=types.EmbedContentConfig(
                        output_dimensionality=self.dimensions, http_options=self._http_options(timeout_s)
                    ),
                )

            response = self._call("embed", model, attempt)
            got = [list(e.values or []) for e in (response.embeddings or [])]
            if len(got) != len(batch) or any(len(v) != self.dimensions for v in got):
                logger.warning(
                    "embeddings of an unexpected shape",
                    extra={"model": model, "asked": len(batch), "got": len(got), "dimensions": self.dimensions},
                )
                raise AiUnavailable("invalid_output")
            vectors.extend(_normalised(v) for v in got)
        input_tokens = sum(math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts)
        return Embeddings(vectors=vectors, model=model, input_tokens=input_tokens)

    # -- bounds: deadline, retries, breaker ---------------------------------------------------------------------
    def _call(self, kind: str, model: str, attempt: Callable[[float], T]) -> T:
        started = self._clock()
        tries = 0
        while True:
            remaining = self.total_timeout_s - (self._clock() - started)
            if remaining <= 0:
                raise AiUnavailable("timeout")
            if not self.breaker.allow():
                logger.warning("model call refused: circuit open", extra={"model": model, "kind": kind})
                raise AiUnavailable("circuit_open")
            tries += 1
            try:
                result = attempt(min(self.timeout_s, remaining))
            except Exception as exc:  # classified below; anything unexpected is a failure of the call too
                failure = _classify(exc)
                if failure.retryable or failure.reason in ("timeout", "connection_error"):
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()  # the API answered (a 4xx): it is up; a probe's lease ends
                logger.warning(
                    "model call failed",
                    extra={
                        "model": model,
                        "kind": kind,
                        "attempt": tries,
                        "reason": failure.reason,
                        "status": failure.status,
                        "error": exc.__class__.__name__,
                    },
                )
                if not failure.retryable or tries > self.max_retries:
                    raise AiUnavailable(failure.reason) from None
                delay = self._delay(tries, failure.retry_after_s)
                if delay is None:
                    raise AiUnavailable(failure.reason) from None
                if self._clock() - started + delay >= self.total_timeout_s:
                    raise AiUnavailable(failure.reason) from None
                self._sleep(delay)
                continue
            self.breaker.record_success()
            return result

    def _delay(self, tries: int, retry_after_s: float | None) -> float | None:
        """The wait before retry number ``tries``: the server's Retry-After when it sent one (None when it asks for
        more than MAX_RETRY_AFTER_S: give up), else full-jitter exponential backoff."""
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= MAX_RETRY_AFTER_S else None
        ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** (tries - 1)))
        return ceiling / 2 + self._jitter() * ceiling / 2  # in [ceiling/2, ceiling]: never a zero wait


def _normalised(vector: list[float]) -> list[float]:
    """Unit length (Google recommends it for gemini-embedding-001 below 3,072 dimensions; cosine ignores it)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector


def _classify(exc: BaseException) -> _Failure:
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        status = int(exc.code or 0)
        retry_after = None
        headers = getattr(exc.response, "headers", None)
        if headers is not None:
            retry_after = parse_retry_after(headers.get("retry-after"))
        if status in RETRYABLE_STATUSES:
            reason = "rate_limited" if status == 429 else "timeout" if status == 408 else "server_error"
            return _Failure(reason, retryable=True, retry_after_s=retry_after, status=status)
        # A wrong key: 401/403, or (the Gemini API's way) 400 INVALID_ARGUMENT with the reason API_KEY_INVALID.
        if status in (401, 403) or (status == 400 and "API_KEY_INVALID" in json.dumps(exc.details, default=str)):
            return _Failure("unauthorized", retryable=False, status=status)
        if 500 <= status < 600:
            return _Failure("server_error", retryable=True, retry_after_s=retry_after, status=status)
        return _Failure("rejected", retryable=False, status=status)
    # The SDK sends through httpx, or through its fork httpx2 when that is installed (other classes, same names).
    http_classes = {c.__name__ for c in type(exc).__mro__ if c.__module__.split(".")[0] in ("httpx", "httpx2")}
    if "TimeoutException" in http_classes:
        return _Failure("timeout", retryable=False)
    if "TransportError" in http_classes:
        return _Failure("connection_error", retryable=True)
    return _Failure("error", retryable=False)
