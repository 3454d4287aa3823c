"""An incident's AI summary: make one now (POST: members and up, or an admin key of the project; the model answers
within the request) and read the latest (GET: viewers and up, or a read key). See docs/ai-summaries.md.

Thin: parse, one call, envelope. google-genai is in this function's requirements.txt and imported on the first model
call only (observai.ai.gemini), never at cold start.
"""

from __future__ import annotations

from uuid import UUID

from observai.ai import summaries
from observai.ai.summary_models import IncidentSummary
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses

app = create_resolver()

AI_DISABLED = "AI insights are off for the organization (ai_disabled)"


@app.post(
    "/v1/projects/<project_id>/incidents/<incident_id>/summary",
    status_code=201,
    tags=["ai"],
    responses=route_responses(201, e409=AI_DISABLED, e429="the month's AI token budget is spent (ai_budget_exhausted)"),
)
def create_summary(caller: CurrentPrincipal, project_id: UUID, incident_id: UUID) -> Envelope[IncidentSummary]:
    """Summarize the incident now: summary, probable cause, impact and next steps, each citing the alerts, log
    lines, traces and anomalies it rests on. The answer is stored whatever came of it: status ok, failed (the
    model's answers were rejected; reason says why) or unavailable (no model configured, timeout, ...)."""
    return ok(summaries.generate(caller, project_id, incident_id))


@app.get(
    "/v1/projects/<project_id>/incidents/<incident_id>/summary",
    tags=["ai"],
    responses=route_responses(200, e404="the incident has no summary yet (summary_not_found)", e409=AI_DISABLED),
)
def get_summary(caller: CurrentPrincipal, project_id: UUID, incident_id: UUID) -> Envelope[IncidentSummary]:
    """The incident's latest summary, with the model, token counts and time; `stale` when the incident changed
    since (POST makes a new one; one is also made when the incident resolves)."""
    return ok(summaries.latest(caller, project_id, incident_id))


lambda_handler = lambda_handler_for(app)
