"""Similar past incidents of an incident: the nearest resolved incidents of the same organization (pgvector), with
their resolution notes, so the people on an incident see what fixed the last one like it.

Read with a user token (viewer and up) or an API key with the ``read`` scope bound to the project (which sees its
own project's incidents only). The organization must have opted in to AI features. Thin: parse, one call, envelope.
google-genai is imported only when an incident without an embedding must be embedded now.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Query
from observai.ai import similar
from observai.ai.similar_models import DEFAULT_SIMILAR, MAX_SIMILAR, SimilarIncident
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses

app = create_resolver()


@app.get(
    "/v1/projects/<project_id>/incidents/<incident_id>/similar",
    tags=["ai"],
    responses=route_responses(
        200,
        e409="The organization has not turned AI features on (ai_disabled)",
        e429="The organization's monthly AI token budget is spent (ai_budget_exhausted)",
        e503="No model is configured (ai_not_configured) or it did not answer (ai_unavailable), when the incident"
        " had to be embedded now",
    ),
)
def similar_incidents(
    caller: CurrentPrincipal,
    project_id: UUID,
    incident_id: UUID,
    limit: Annotated[int, Query(ge=1, le=MAX_SIMILAR, description=f"At most this many, 1 to {MAX_SIMILAR}")] = (
        DEFAULT_SIMILAR
    ),
) -> Envelope[list[SimilarIncident]]:
    """The nearest resolved incidents of the organization, nearest first, with their resolution notes and a
    similarity in [0, 1] (cosine similarity of their embeddings). An incident still open is compared by its
    current text (embedded now). See docs/ai-similar-and-ask.md."""
    return ok(similar.similar_incidents(caller, project_id, incident_id, limit))


lambda_handler = lambda_handler_for(app)
