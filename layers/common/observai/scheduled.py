"""The handler of every scheduled function (EventBridge Scheduler): its log context, its tracing, and what a run
does when the database cannot be reached.

A run that falls inside a database outage logs one line (a warning, no traceback) and ends normally: retrying it
now would only meet the same outage, and each job keeps its place in the database (watermarks, pending lists,
partitions still missing), so the next scheduled run resumes the work. Any other error is raised as before (the
error metrics, the schedule's retry policy).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar, cast

from observai.db.breaker import is_connection_failure
from observai.observability import Handler, logger, traced

SKIPPED = {"skipped": "database unreachable"}


def scheduled_job(handler: Handler) -> Handler:
    """Wrap a scheduled function's ``lambda_handler``: Powertools' Lambda context in every log line, the Tracer
    when on, and one warning line instead of a traceback when the database cannot be reached."""

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        except Exception as exc:
            if not is_connection_failure(exc):
                raise
            logger.warning(
                "scheduled run skipped: the database is unreachable; the next run resumes",
                extra={"error": _root_cause(exc)},
            )
            return dict(SKIPPED)

    return cast(Handler, logger.inject_lambda_context(log_event=False)(traced(run)))


def _root_cause(exc: BaseException) -> str:
    """The innermost error (psycopg's "connection refused"), not our Unavailable wrapping it."""
    seen: set[int] = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return f"{exc.__class__.__name__}: {exc}".strip()


class _Round(Protocol):
    more_pending: bool


R = TypeVar("R", bound=_Round)


def bounded_rounds(run_round: Callable[[], R], context: Any, *, max_rounds: int, min_remaining_ms: int) -> list[R]:
    """Run a job's bounded round again while it says more is pending, at most ``max_rounds`` times and only while the
    invocation has ``min_remaining_ms`` left: a backlog drains quickly without ever risking the Lambda timeout."""
    rounds = [run_round()]
    while (
        len(rounds) < max_rounds
        and rounds[-1].more_pending
        and context.get_remaining_time_in_millis() >= min_remaining_ms
    ):
        rounds.append(run_round())
    return rounds


def summed_outcomes(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The rounds' outcome counts added up by outcome."""
    total: dict[str, int] = {}
    for count in counts:
        for outcome, n in count.items():
            total[outcome] = total.get(outcome, 0) + n
    return total
