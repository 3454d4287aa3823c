"""An incident summary: the answer the model must give (sent as its response schema, then validated here and by the
citation check), and what the summaries API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 2000
MAX_CITATIONS = 20
MAX_STEPS = 8


class CitedText(BaseModel):
    model_config = ConfigDict(defer_build=True)
    text: str = Field(min_length=1, max_length=MAX_TEXT, description="Plain text, no markup")
    citations: list[str] = Field(
        default_factory=list,
        max_length=MAX_CITATIONS,
        description="The ids of the data blocks this text rests on (alert:..., log:..., trace:..., anomaly:...,"
        " event:..., incident:...)",
    )


class Grounded(CitedText):
    citations: list[str] = Field(
        min_length=1,
        max_length=MAX_CITATIONS,
        description="The ids of the data blocks this text rests on: at least one",
    )


class SummaryAnswer(BaseModel):
    """The model's answer: each part with the ids of the data blocks it rests on."""

    model_config = ConfigDict(defer_build=True)

    summary: Grounded = Field(description="What happened, in two to four sentences")
    probable_cause: Grounded = Field(description="The most likely cause, and how sure the data makes it")
    impact: CitedText = Field(description="Who or what was affected, how much and for how long")
    next_steps: list[CitedText] = Field(
        min_length=1, max_length=MAX_STEPS, description="Suggested next steps, most useful first"
    )

    def citations(self) -> list[str]:
        parts: list[CitedText] = [self.summary, self.probable_cause, self.impact, *self.next_steps]
        return [c for part in parts for c in part.citations]


SummaryStatus = Literal["ok", "failed", "unavailable"]
SummaryTrigger = Literal["requested", "resolved", "changed"]


class SummaryContextInfo(BaseModel):
    model_config = ConfigDict(defer_build=True)
    items: int = Field(description="Data blocks the model was given (the incident included)")
    tokens: int = Field(description="Their estimated size in tokens")
    omitted: int = Field(description="Items left out for the size limit")


class IncidentSummary(BaseModel):
    model_config = ConfigDict(defer_build=True)
    id: UUID
    incident_id: UUID
    project_id: UUID
    status: SummaryStatus = Field(
        description="ok: a validated answer; failed: the model's answers were rejected (reason says why);"
        " unavailable: the model could not be asked (reason: not_configured, timeout, circuit_open, ...)"
    )
    answer: SummaryAnswer | None = Field(default=None, description="Present when status is ok")
    reason: str | None = None
    model: str | None = None
    input_tokens: int
    output_tokens: int
    trigger: SummaryTrigger = Field(description="requested (POST), resolved (the incident resolved), changed")
    context: SummaryContextInfo | None = None
    created_at: datetime
    stale: bool = Field(description="The incident changed since this summary was made")

    @classmethod
    def from_row(cls, row: dict[str, Any], *, stale: bool) -> IncidentSummary:
        context = row.get("context") or {}
        info = (
            SummaryContextInfo(
                items=len(context.get("ids") or []),
                tokens=int(context.get("tokens") or 0),
                omitted=int(context.get("omitted") or 0),
            )
            if context.get("ids")
            else None
        )
        return cls(
            id=row["id"],
            incident_id=row["incident_id"],
            project_id=row["project_id"],
            status=row["status"],
            answer=SummaryAnswer.model_validate(row["answer"]) if row["answer"] is not None else None,
            reason=row["reason"],
            model=row["model"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            trigger=row["trigger"],
            context=info,
            created_at=row["created_at"],
            stale=stale,
        )
