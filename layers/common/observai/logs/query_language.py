"""PLACEHOLDER, replaced at merge by the logs query language of the "logq" branch (same interface).

Only what exports need until then: free words, matched with the full-text index of ``public.logs``.
The interface is the real one: ``compile_log_query(text) -> LogFilter``, where ``LogFilter.where`` is a
``psycopg.sql.Composable`` over UNQUALIFIED ``public.logs`` columns and ``LogFilter.params`` its bound
parameters, every key prefixed ``lq``. User text only ever reaches SQL as a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from observai.errors import InvalidInput

MAX_QUERY_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class LogFilter:
    where: sql.Composable
    params: dict[str, object] = field(default_factory=dict)


def compile_log_query(text: str) -> LogFilter:
    """Free words (all of them must occur in the body); the empty query matches every line."""
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"The query is longer than {MAX_QUERY_LENGTH} characters", details={"loc": ["query"]})
    if text.count('"') % 2:
        raise InvalidInput(
            "Query syntax error: unterminated quoted phrase",
            code="query_syntax_error",
            details={"position": text.rfind('"')},
        )
    words = text.replace('"', " ").split()
    if not words:
        return LogFilter(sql.SQL("true"), {})
    return LogFilter(sql.SQL("search @@ plainto_tsquery('simple', %(lq0)s)"), {"lq0": " ".join(words)})
