"""Request and response models of the API key routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from observai.timetext import DateTimeText

Scope = Literal["ingest", "read", "admin"]
MAX_GRACE_S = 7 * 86_400


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    if value <= datetime.now(UTC):
        raise ValueError("expires_at must be in the future")
    return value


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)]
    expires_at: Annotated[DateTimeText | None, AfterValidator(_future)] = None


class ApiKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    grace_period_seconds: int | None = Field(
        default=None, ge=0, le=MAX_GRACE_S, description="How long the old key keeps working (default 24 h)"
    )


class ApiKey(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    project_id: UUID
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it; the secret is never shown again")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from_id: UUID | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The full key: shown only in this response. Store it now.")
