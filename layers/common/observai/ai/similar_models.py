"""What the similar-incidents API returns: past resolved incidents of the same organization, nearest first."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SIMILAR = 5
MAX_SIMILAR = 20


class SimilarIncident(BaseModel):
    model_config = ConfigDict(defer_build=True)
    incident_id: UUID
    project_id: UUID
    number: int = Field(description="Per project, for people (#42)")
    title: str
    resolved_at: datetime | None
    resolution_note: str | None = Field(description="What a person wrote when resolving it: what fixed it")
    similarity: float = Field(
        ge=0, le=1, description="Cosine similarity of the two incidents' embeddings (1: the same text), below 0 as 0"
    )
