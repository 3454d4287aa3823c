"""The configured language model: ``language_model(settings)``, the one place that picks the provider (Gemini).

One adapter per container and settings (the SDK's client and its connection pool, and the circuit breaker, live in
it), so a warm container reuses them. Importing this module is cheap: the SDK is imported by the adapter's first call.
"""

from __future__ import annotations

import hashlib
import threading

from observai.ai.model import AiUnavailable, LanguageModel
from observai.config import Settings

_lock = threading.Lock()
_models: dict[tuple[object, ...], LanguageModel] = {}


def _key(settings: Settings) -> tuple[object, ...]:
    assert settings.gemini_api_key is not None
    # A digest, not the key itself: nothing keeps the secret around but the adapter.
    key_digest = hashlib.sha256(settings.gemini_api_key.get_secret_value().encode()).hexdigest()
    return (
        key_digest,
        settings.gemini_base_url,
        settings.ai_generation_model,
        settings.ai_embedding_model,
        settings.ai_embedding_dimensions,
        settings.ai_timeout_s,
        settings.ai_total_timeout_s,
        settings.ai_max_retries,
        settings.ai_breaker_failures,
        settings.ai_breaker_cooldown_s,
        settings.ai_thinking_budget,
    )


def is_configured(settings: Settings) -> bool:
    """Whether a model can be called at all (an API key is configured)."""
    return settings.gemini_api_key is not None and bool(settings.gemini_api_key.get_secret_value())


def language_model(settings: Settings) -> LanguageModel:
    """The Gemini adapter for these settings (one per container). Raises ``AiUnavailable("not_configured")`` when
    there is no API key."""
    if not is_configured(settings):
        raise AiUnavailable("not_configured")
    key = _key(settings)
    model = _models.get(key)
    if model is None:
        from observai.ai.gemini import GeminiModel

        with _lock:
            model = _models.get(key)
            if model is None:
                model = GeminiModel(settings)
                _models[key] = model
    return model


def reset_models() -> None:
    """Forget the adapters (and so their circuit breakers): tests."""
    with _lock:
        _models.clear()
