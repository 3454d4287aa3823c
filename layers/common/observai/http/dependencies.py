"""Route dependencies (Powertools ``Depends``): who is calling, checked once per request."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Request
from aws_lambda_powertools.event_handler.depends import Depends

from observai.auth.authenticate import authenticate
from observai.auth.principal import Principal
from observai.config import get_settings
from observai.errors import Forbidden


def current_principal(request: Request) -> Principal:
    """A user (JWT) or a program (API key)."""
    event = request.resolved_event
    return authenticate(event.headers, event.get("requestContext") or {}, get_settings())


def current_user(request: Request) -> Principal:
    """A person: organization management needs a user token, not an API key."""
    principal = current_principal(request)
    if principal.kind != "user":
        raise Forbidden("This route needs a user token (Supabase JWT), not an API key", code="user_token_required")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUser = Annotated[Principal, Depends(current_user)]
