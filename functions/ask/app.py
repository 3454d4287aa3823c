"""Questions in plain language about a project's logs and metrics: the model translates the question into our log
query language or a metrics query request, our parser and validators check it, and it runs as the caller. The
answer holds the query that ran, so it can be read, edited and run again on the search routes.

Whoever may search the project's logs and query its metrics may ask (viewers and up, ``read`` keys), once the
organization has opted in to AI features. Thin: parse, one call, envelope.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body
from observai.ai import ask
from observai.ai.ask_models import AskIn, AskLogsAnswer, AskMetricsAnswer
from observai.http.dependencies import CurrentPrincipal
from observai.http.envelope import Envelope, ok
from observai.http.resolver import create_resolver, lambda_handler_for
from observai.http.responses import route_responses

app = create_resolver()

ASK_ERRORS = {
    "e409": "The organization has not turned AI features on (ai_disabled)",
    "e422": "The model's query was rejected by our parser twice (ask_invalid_query: details.error, details.query)",
    "e429": "The organization's monthly AI token budget is spent (ai_budget_exhausted)",
    "e503": "No model is configured (ai_not_configured) or it did not answer (ai_unavailable)",
}


@app.post("/v1/projects/<project_id>/logs/ask", tags=["ai"], responses=route_responses(200, **ASK_ERRORS))
def ask_logs(caller: CurrentPrincipal, project_id: UUID, body: Annotated[AskIn, Body()]) -> Envelope[AskLogsAnswer]:
    """The question as a log query (the q of GET /logs), checked by the query parser, run over the project's logs
    as the caller: the query, its range, the model's explanation and the newest matching lines.
    See docs/ai-similar-and-ask.md."""
    return ok(ask.ask_logs(caller, project_id, body))


@app.post("/v1/projects/<project_id>/metrics/ask", tags=["ai"], responses=route_responses(200, **ASK_ERRORS))
def ask_metrics(
    caller: CurrentPrincipal, project_id: UUID, body: Annotated[AskIn, Body()]
) -> Envelope[AskMetricsAnswer]:
    """The question as a metrics query request (the body of POST /metrics/query), validated like one, run as the
    caller: the request, the model's explanation and the results."""
    return ok(ask.ask_metrics(caller, project_id, body))


lambda_handler = lambda_handler_for(app)
