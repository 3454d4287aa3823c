"""Query parameters every list route shares: the cursor and the page size."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from observai.pagination import MAX_LIMIT

Cursor = Annotated[str | None, Query(description="next_cursor from the previous page", max_length=512)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}")]
