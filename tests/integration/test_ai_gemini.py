"""The Gemini adapter (observai.ai.gemini) through the real google-genai SDK against the local stand-in of the Gemini
API (tests/helpers/gemini_standin.py): what the SDK sends, structured answers and their token counts, embeddings,
retries with backoff (Retry-After honoured, bounded), timeouts, the circuit breaker, and the failures' reasons.

The clock and the sleep are injected: a test observes the waits without waiting them."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from observai.ai import provider
from observai.ai.gemini import InvalidOutput, parse_retry_after
from observai.ai.model import AiUnavailable, LanguageModel
from observai.config import Settings
from observai.db.breaker import BreakerState
from pydantic import BaseModel, Field

from tests.helpers.gemini_standin import GeminiStandIn, bag_of_words_vector

pytestmark = pytest.mark.integration

API_KEY = "AIzaTest-not-a-real-key-0123456789"


class Cited(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    citations: list[str] = Field(default_factory=list, max_length=20)


class Answer(BaseModel):
    summary: Cited
    next_steps: list[Cited] = Field(min_length=1, max_length=8)


VALID = {"summary": {"text": "checkout failed", "citations": ["log:1"]}, "next_steps": [{"text": "roll back"}]}


class FakeTime:
    """A monotonic clock that only the injected sleep advances; the sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def gemini() -> Iterator[GeminiStandIn]:
    with GeminiStandIn(api_key=API_KEY) as stand_in:
        yield stand_in


def settings_for(stand_in: GeminiStandIn, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "gemini_api_key": API_KEY,
        "gemini_base_url": stand_in.base_url,
        "ai_timeout_s": 5.0,
        "ai_total_timeout_s": 60.0,
        "ai_max_retries": 2,
        "ai_embedding_dimensions": 64,
    }
    values.update(overrides)
    return Settings(**values)


def model_for(stand_in: GeminiStandIn, fake: FakeTime | None = None, **overrides: Any) -> Any:
    from observai.ai.gemini import GeminiModel

    fake = fake or FakeTime()
    return GeminiModel(settings_for(stand_in, **overrides), clock=fake.clock, sleep=fake.sleep, jitter=lambda: 1.0)


def ask(model: LanguageModel) -> Any:
    return model.generate_json(system="You summarise incidents.", prompt="<<<data>>> ... <<<end>>>", schema=Answer)


# -- the wire ---------------------------------------------------------------------------------------------------


def test_a_structured_answer_is_parsed_with_its_token_counts_and_the_request_is_what_the_sdk_sends(
    gemini: GeminiStandIn,
) -> None:
    # Given the stand-in answers a schema-valid object with token counts
    gemini.answer_json(VALID, input_tokens=1234, output_tokens=56)
    model = provider.language_model(settings_for(gemini, ai_generation_model="gemini-2.5-flash"))

    # When the adapter asks for a structured answer
    generation = model.generate_json(
        system="You summarise incidents.", prompt="the incident", schema=Answer, max_output_tokens=900, temperature=0.1
    )

    # Then it gets the parsed object, the model and the token counts of the usage metadata
    assert generation.data == VALID
    assert (generation.model, generation.input_tokens, generation.output_tokens) == ("gemini-2.5-flash", 1234, 56)
    Answer.model_validate(generation.data)

    # And the SDK's request (captured): generateContent on the model, the key in a header (never the URL), the
    # system instruction apart from the prompt, JSON with the response schema, the bounds of the answer
    [request] = gemini.requests
    assert request.kind == "generateContent" and request.model == "gemini-2.5-flash"
    assert request.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert request.api_key == API_KEY and API_KEY not in request.path
    assert request.system == "You summarise incidents." and request.prompt == "the incident"
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["maxOutputTokens"] == 900 and config["temperature"] == 0.1
    assert config["thinkingConfig"] == {"thinking_budget": 0}
    schema = request.schema
    assert schema is not None and schema["type"] == "OBJECT"
    assert set(schema["required"]) == {"summary", "next_steps"}
    assert schema["properties"]["next_steps"]["type"] == "ARRAY"
    assert schema["properties"]["summary"]["properties"]["citations"]["items"]["type"] == "STRING"


def test_the_default_responder_answers_a_minimal_object_valid_for_the_schema(gemini: GeminiStandIn) -> None:
    generation = ask(model_for(gemini))
    Answer.model_validate(generation.data)
    assert generation.input_tokens > 0 and generation.output_tokens > 0


def test_embeddings_are_batched_at_the_setting_dimension_normalised_and_meaningful(gemini: GeminiStandIn) -> None:
    # Given 150 texts (two requests of at most 100), three of them about the same failure
    model = model_for(gemini, ai_embedding_dimensions=64)
    texts = [f"filler text number {i}" for i in range(147)] + [
        "checkout payment timeout database pool exhausted",
        "checkout payment timeout after deploy database pool",
        "disk full on the log shipper",
    ]
    # When they are embedded
    embeddings = model.embed(texts)

    # Then one unit vector per text, in order, at the configured dimension, from two batchEmbedContents calls
    assert [r.kind for r in gemini.requests] == ["batchEmbedContents", "batchEmbedContents"]
    assert [len(r.texts) for r in gemini.requests] == [100, 50]
    assert gemini.requests[0].body["requests"][0]["outputDimensionality"] == 64
    assert gemini.requests[0].body["requests"][0]["model"] == "models/gemini-embedding-001"
    assert len(embeddings.vectors) == 150 and all(len(v) == 64 for v in embeddings.vectors)
    assert all(abs(sum(x * x for x in v) - 1) < 1e-6 for v in embeddings.vectors)
    assert embeddings.vectors[-3] == pytest.approx(bag_of_words_vector(texts[-3], 64))
    assert embeddings.model == "gemini-embedding-001" and embeddings.input_tokens > 0

    # And texts sharing words are nearer than unrelated ones (cosine of unit vectors: the dot product)
    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    a, b, c = embeddings.vectors[-3:]
    assert cosine(a, b) > 0.5 > cosine(a, c)


def test_no_texts_no_call(gemini: GeminiStandIn) -> None:
    assert model_for(gemini).embed([]).vectors == []
    assert gemini.requests == []


# -- retries ---------------------------------------------------------------------------------------------------


def test_a_429_with_retry_after_is_retried_after_the_wait_the_server_asked(gemini: GeminiStandIn) -> None:
    # Given the API refuses once with 429 and Retry-After: 3
    fake = FakeTime()
    model = model_for(gemini, fake)
    gemini.fail(429, retry_after=3)
    gemini.answer_json(VALID, input_tokens=10, output_tokens=5)

    # When the adapter asks
    generation = ask(model)

    # Then it waited exactly the 3 s asked, then got the answer on the second attempt
    assert fake.sleeps == [3.0]
    assert len(gemini.requests) == 2 and generation.data == VALID


def test_without_retry_after_the_backoff_is_exponential_and_capped(gemini: GeminiStandIn) -> None:
    # Given two 429s without Retry-After, then an answer; jitter at its top (waits at their ceiling)
    fake = FakeTime()
    model = model_for(gemini, fake, ai_max_retries=3)
    gemini.fail(429)
    gemini.fail(503)
    gemini.fail(500)
    gemini.answer_json(VALID)
    # When / Then: 0.5 s, 1 s, 2 s between the four attempts
    assert ask(model).data == VALID
    assert fake.sleeps == [0.5, 1.0, 2.0]
    assert len(gemini.requests) == 4


def test_5xx_are_retried_then_the_call_is_unavailable(gemini: GeminiStandIn) -> None:
    # Given the API fails with 500 then 503 then 503 (two retries allowed)
    fake = FakeTime()
    model = model_for(gemini, fake, ai_max_retries=2)
    for status in (500, 503, 503):
        gemini.fail(status)
    # When / Then: three attempts, two waits, then AiUnavailable("server_error")
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "server_error"
    assert len(gemini.requests) == 3 and len(fake.sleeps) == 2


def test_429s_past_the_retries_say_rate_limited(gemini: GeminiStandIn) -> None:
    model = model_for(gemini, ai_max_retries=1)
    gemini.fail(429, retry_after=1)
    gemini.fail(429, retry_after=1)
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "rate_limited" and len(gemini.requests) == 2


def test_a_retry_after_longer_than_the_bound_is_not_waited_for(gemini: GeminiStandIn) -> None:
    # Given the API asks to come back in an hour
    fake = FakeTime()
    gemini.fail(429, retry_after=3600)
    # When / Then: no wait, no second attempt
    with pytest.raises(AiUnavailable) as info:
        ask(model_for(gemini, fake))
    assert info.value.reason == "rate_limited"
    assert fake.sleeps == [] and len(gemini.requests) == 1


def test_no_retry_whose_wait_would_pass_the_calls_total_bound(gemini: GeminiStandIn) -> None:
    fake = FakeTime()
    gemini.fail(503, retry_after=8)
    with pytest.raises(AiUnavailable) as info:
        ask(model_for(gemini, fake, ai_timeout_s=5.0, ai_total_timeout_s=6.0))
    assert info.value.reason == "server_error" and fake.sleeps == [] and len(gemini.requests) == 1


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "rejected"), (404, "rejected"), (401, "unauthorized"), (403, "unauthorized")]
)
def test_other_4xx_are_not_retried(gemini: GeminiStandIn, status: int, reason: str) -> None:
    fake = FakeTime()
    gemini.fail(status)
    with pytest.raises(AiUnavailable) as info:
        ask(model_for(gemini, fake))
    assert info.value.reason == reason and len(gemini.requests) == 1 and fake.sleeps == []


def test_a_wrong_key_is_unauthorized_and_the_key_is_never_logged(
    gemini: GeminiStandIn, captured_logs: io.StringIO
) -> None:
    # Given a wrong key (the real API answers 400 API_KEY_INVALID) and failures that log
    wrong = "AIzaWrong-key-that-must-not-leak-999"
    model = model_for(gemini, gemini_api_key=wrong)
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "unauthorized" and len(gemini.requests) == 1
    gemini.fail(503)
    gemini.fail(503)
    gemini.fail(503)
    with pytest.raises(AiUnavailable):
        model_for(gemini).embed(["x"])
    # Then no log line, no repr, no error message carries either key
    logged = captured_logs.getvalue()
    assert "model call failed" in logged
    for secret in (wrong, API_KEY):
        assert secret not in logged and secret not in repr(model) and secret not in str(info.value)


def test_a_slow_answer_hits_the_timeout_and_is_not_retried(gemini: GeminiStandIn) -> None:
    # Given the API takes 5 s to answer and the adapter waits at most 0.5 s
    gemini.slow(5)
    model = model_for(gemini, ai_timeout_s=0.5, ai_max_retries=2)
    # When the adapter asks
    started = time.monotonic()
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    # Then it gave up after ~0.5 s with "timeout", one attempt only
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 3
    assert len(gemini.requests) == 1


def test_an_unreachable_api_is_a_connection_error_after_the_retries() -> None:
    with GeminiStandIn() as gone:
        settings = settings_for(gone)
    fake = FakeTime()
    from observai.ai.gemini import GeminiModel

    model = GeminiModel(settings, clock=fake.clock, sleep=fake.sleep, jitter=lambda: 0.0)
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "connection_error"
    assert fake.sleeps == [0.25, 0.5]  # jitter 0: half the ceiling, never zero


# -- invalid output ----------------------------------------------------------------------------------------------


def test_text_that_is_not_json_is_invalid_output_with_its_tokens(gemini: GeminiStandIn) -> None:
    gemini.answer_text("Sure! Here is your summary: {", input_tokens=700, output_tokens=12)
    with pytest.raises(InvalidOutput) as info:
        ask(model_for(gemini))
    error = info.value
    assert isinstance(error, AiUnavailable) and error.reason == "invalid_output"
    assert (error.input_tokens, error.output_tokens, error.model) == (700, 12, "gemini-2.5-flash")
    assert error.raw.startswith("Sure!")


def test_a_json_array_or_an_answer_cut_at_the_token_limit_is_invalid_output(gemini: GeminiStandIn) -> None:
    gemini.answer_text("[1, 2]")
    with pytest.raises(InvalidOutput, match="not a JSON object"):
        ask(model_for(gemini))
    gemini.answer_text('{"summary": {"text": "cut', finish_reason="MAX_TOKENS")
    with pytest.raises(InvalidOutput, match="max_output_tokens"):
        ask(model_for(gemini))


def test_a_blocked_answer_is_unavailable_blocked(gemini: GeminiStandIn) -> None:
    gemini.answer_text("", finish_reason="SAFETY")
    with pytest.raises(AiUnavailable) as info:
        ask(model_for(gemini))
    assert info.value.reason == "blocked"


# -- the circuit breaker ----------------------------------------------------------------------------------------


def test_the_breaker_opens_after_n_failures_then_lets_one_probe_through_after_its_cool_down(
    gemini: GeminiStandIn,
) -> None:
    # Given a breaker that opens after 3 failed attempts, with a 30 s cool-down, and no retries
    fake = FakeTime()
    model = model_for(gemini, fake, ai_max_retries=0, ai_breaker_failures=3, ai_breaker_cooldown_s=30.0)
    for _ in range(3):
        gemini.fail(503)
    # When three calls fail
    for _ in range(3):
        with pytest.raises(AiUnavailable) as info:
            ask(model)
        assert info.value.reason == "server_error"
    assert model.breaker.state is BreakerState.OPEN

    # Then the next calls fail at once without reaching the API
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "circuit_open"
    with pytest.raises(AiUnavailable):
        model.embed(["x"])
    assert len(gemini.requests) == 3

    # When the cool-down is over, one probe goes through; it succeeds and the breaker closes
    fake.now += 30
    gemini.answer_json(VALID)
    assert ask(model).data == VALID
    assert len(gemini.requests) == 4
    assert model.breaker.state is BreakerState.CLOSED


def test_while_the_probe_is_in_flight_other_calls_are_refused(gemini: GeminiStandIn) -> None:
    # Given an open breaker whose cool-down is over
    fake = FakeTime()
    model = model_for(gemini, fake, ai_max_retries=0, ai_breaker_failures=1, ai_breaker_cooldown_s=10.0)
    gemini.fail(503)
    with pytest.raises(AiUnavailable):
        ask(model)
    fake.now += 10
    # When a probe is under way (a slow answer) and another call comes
    gemini.slow(1.0)
    gemini.answer_json(VALID)
    results: list[Any] = []
    probe = threading.Thread(target=lambda: results.append(ask(model)))
    probe.start()
    deadline = time.monotonic() + 5
    while len(gemini.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    # Then the other call is refused at once; the probe's success closes the breaker
    assert info.value.reason == "circuit_open"
    probe.join(10)
    assert results and results[0].data == VALID
    assert model.breaker.state is BreakerState.CLOSED and len(gemini.requests) == 2


def test_a_probe_answered_with_a_4xx_closes_the_breaker(gemini: GeminiStandIn) -> None:
    fake = FakeTime()
    model = model_for(gemini, fake, ai_max_retries=0, ai_breaker_failures=1, ai_breaker_cooldown_s=10.0)
    gemini.fail(500)
    with pytest.raises(AiUnavailable):
        ask(model)
    fake.now += 10
    gemini.fail(400)  # the API is up: it answered, if only to refuse
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "rejected"
    assert model.breaker.state is BreakerState.CLOSED
    assert ask(model).data


def test_a_failed_probe_reopens_the_breaker_for_a_longer_cool_down(gemini: GeminiStandIn) -> None:
    fake = FakeTime()
    model = model_for(gemini, fake, ai_max_retries=0, ai_breaker_failures=1, ai_breaker_cooldown_s=10.0)
    gemini.fail(500)
    with pytest.raises(AiUnavailable):
        ask(model)
    fake.now += 10
    gemini.fail(500)  # the probe fails
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "server_error"
    fake.now += 10  # not yet: the cool-down doubled
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "circuit_open"
    fake.now += 10
    assert ask(model).data  # the default answer
    assert len(gemini.requests) == 3


def test_the_breaker_stops_the_retries_of_a_call_once_it_opens(gemini: GeminiStandIn) -> None:
    fake = FakeTime()
    model = model_for(gemini, fake, ai_max_retries=5, ai_breaker_failures=2)
    for _ in range(6):
        gemini.fail(503)
    with pytest.raises(AiUnavailable) as info:
        ask(model)
    assert info.value.reason == "circuit_open"
    assert len(gemini.requests) == 2


# -- the provider ------------------------------------------------------------------------------------------------


def test_no_key_means_not_configured() -> None:
    with pytest.raises(AiUnavailable) as info:
        provider.language_model(Settings())
    assert info.value.reason == "not_configured"
    with pytest.raises(AiUnavailable):
        provider.language_model(Settings(gemini_api_key=""))


def test_one_adapter_per_container_and_settings(gemini: GeminiStandIn) -> None:
    provider.reset_models()
    settings = settings_for(gemini)
    first = provider.language_model(settings)
    assert provider.language_model(settings_for(gemini)) is first
    assert provider.language_model(settings_for(gemini, ai_generation_model="gemini-2.5-pro")) is not first
    provider.reset_models()
    assert provider.language_model(settings) is not first


def test_the_key_comes_from_the_environment(gemini: GeminiStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    from observai.config import get_settings

    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", gemini.base_url)
    settings = get_settings()
    assert settings.gemini_api_key is not None
    assert API_KEY not in repr(settings) and API_KEY not in json.dumps(settings.model_dump(mode="json"))
    gemini.answer_json(VALID)
    assert ask(provider.language_model(settings)).data == VALID


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # an HTTP date in the past: now
        ("soon", None),
        ("", None),
        ("nan", None),
    ],
)
def test_retry_after_values(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds
