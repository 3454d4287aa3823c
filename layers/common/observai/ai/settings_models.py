"""The organization's AI settings (GET/PUT /v1/orgs/{org_id}/ai) and the AI part of its usage report."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class AiSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    enabled: StrictBool = Field(description="Whether the organization's telemetry may go to the model (opt-in)")


class AiSettings(BaseModel):
    model_config = ConfigDict(defer_build=True)
    org_id: UUID
    enabled: bool = Field(description="The organization opted in (off by default)")
    available: bool = Field(description="This deployment has a Gemini API key; without one the features are off")
    generation_model: str
    embedding_model: str
    embedding_dimensions: int
    plan: str
    monthly_token_budget: int | None = Field(description="Tokens (input + output) per calendar month; null: unlimited")
    tokens_used_this_month: int
    month_start: datetime = Field(description="The first of this month, 00:00 UTC")
    resets_at: datetime = Field(description="The first of next month, 00:00 UTC, when the budget starts again")
    updated_at: datetime | None = Field(description="When the opt-in last changed; null: never")
    updated_by: UUID | None = None


class AiFeatureUsage(BaseModel):
    model_config = ConfigDict(defer_build=True)
    feature: str = Field(description="summary, embedding, ask_logs or ask_metrics")
    calls: int
    failed_calls: int = Field(description="Calls that failed after their retries (no tokens counted)")
    input_tokens: int
    output_tokens: int


class AiUsage(BaseModel):
    """This calendar month's model calls (UTC), whatever the report's range of days."""

    model_config = ConfigDict(defer_build=True)

    month_start: datetime
    resets_at: datetime
    input_tokens: int
    output_tokens: int
    total_tokens: int
    monthly_token_budget: int | None = Field(description="The plan's budget; null: unlimited")
    remaining_tokens: int | None
    features: list[AiFeatureUsage] = Field(description="Per feature, those used this month")
