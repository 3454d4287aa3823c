"""The provider-neutral interface to a language model: what the AI features call, and what they get back.

``observai.ai.provider.language_model(settings)`` returns the configured adapter (Gemini's, ``observai.ai.gemini``).
An adapter bounds each call (timeout, retries with backoff on 429 and 5xx, a circuit breaker) and raises
``AiUnavailable`` when the model cannot answer; the features then degrade (the incident works as before, the summary
says "unavailable"), never a 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel


class AiUnavailable(Exception):
    """The model cannot answer now: not configured, circuit open, timed out, 429/5xx after the retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Generation:
    """A structured answer: ``data`` is the JSON object the model returned for the requested schema, parsed but not
    yet validated by the caller's rules (citations and the like)."""

    data: dict[str, Any]
    model: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One vector per input text, in order."""

    vectors: list[list[float]]
    model: str
    input_tokens: int


class LanguageModel(Protocol):
    def generate_json(
        self,
        *,
        system: str,
        prompt: str,
        schema: type[BaseModel],
        max_output_tokens: int = 2048,
        temperature: float = 0.2,
    ) -> Generation:
        """Ask for a JSON object of ``schema`` (sent as the response schema). Raises AiUnavailable."""
        ...

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` (at the settings' dimension). Raises AiUnavailable."""
        ...
