"""Token metering of model calls, and the monthly token budget of each plan.

Every model call appends one ``ai_usage`` row (``record``): the feature, the model, its input and output tokens, and
how it went (ok; invalid: the answer failed validation; failed: the call failed after its retries, tokens unknown:
0). The row commits in its OWN short transaction, never the caller's: a call whose caller rolls back (a failed
validation, a timeout later on) still spent the tokens, and they count.

The budget (``plans.ai_monthly_tokens``: free 250,000, pro 10,000,000, enterprise 100,000,000 tokens, input and
output together, per calendar month in UTC) is checked before a call (``check_budget``); past it, calls are refused
with 429 ``ai_budget_exhausted`` and ``Retry-After`` until the first of next month. It is a soft bound: calls
already admitted when the budget is reached still finish (a few thousand tokens past it at most).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

from observai.db.connection import Cursor, execute_autocommit, get_connection
from observai.errors import NotFound, RateLimited, Unavailable
from observai.observability import logger

FEATURES = ("summary", "embedding", "ask_logs", "ask_metrics")
OUTCOMES = ("ok", "invalid", "failed")


class AiBudgetExhausted(RateLimited):
    """429 ``ai_budget_exhausted``: the organization's tokens of the month reached its plan's budget."""

    code = "ai_budget_exhausted"


@dataclass(frozen=True, slots=True)
class MonthBudget:
    plan: str
    monthly_tokens: int | None  # None: unlimited
    used_tokens: int
    month_start: datetime
    resets_at: datetime

    @property
    def remaining(self) -> int | None:
        return None if self.monthly_tokens is None else max(0, self.monthly_tokens - self.used_tokens)

    @property
    def exhausted(self) -> bool:
        return self.monthly_tokens is not None and self.used_tokens >= self.monthly_tokens


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """[first instant of the UTC month of ``now``, the first of the next month)."""
    now = now.astimezone(UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_budget(cur: Cursor, org_id: UUID, now: datetime) -> MonthBudget:
    """The plan's budget and this month's tokens, in one statement (``private.ai_month``: the organization's
    members, its API keys and the service read it; anyone else: NotFound)."""
    start, end = month_bounds(now)
    cur.execute("select plan, monthly_tokens, used_tokens from private.ai_month(%s, %s, %s)", (org_id, start, end))
    row = cur.fetchone()
    if row is None:
        raise NotFound("Organization not found", details={"org_id": str(org_id)})
    return MonthBudget(
        plan=row["plan"],
        monthly_tokens=row["monthly_tokens"],
        used_tokens=int(row["used_tokens"]),
        month_start=start,
        resets_at=end,
    )


def check_budget(cur: Cursor, org_id: UUID, now: datetime) -> None:
    """Raise ``AiBudgetExhausted`` (a RateLimited: 429, Retry-After = seconds to the first of next month, UTC) when
    the organization's tokens of the month reached its plan's budget."""
    budget = month_budget(cur, org_id, now)
    if budget.exhausted:
        assert budget.monthly_tokens is not None
        retry_after = max(1, int((budget.resets_at - now).total_seconds() + 0.999))
        raise AiBudgetExhausted(
            f"the AI token budget of the {budget.plan} plan is used up for this month: "
            f"{budget.monthly_tokens:,} tokens; it resets on {budget.resets_at:%Y-%m-%d} 00:00 UTC",
            retry_after_s=retry_after,
            details={
                "plan": budget.plan,
                "monthly_tokens": budget.monthly_tokens,
                "used_tokens": budget.used_tokens,
                "resets_at": budget.resets_at.isoformat(),
            },
        )


# ---------------------------------------------------------------------------------------------------------------
# Recording

_INSERT = """
insert into public.ai_usage (org_id, project_id, feature, model, input_tokens, output_tokens, outcome)
values (%(org)s, %(project)s, %(feature)s, %(model)s, %(input)s, %(output)s, %(outcome)s)
"""

_side_lock = threading.Lock()
_side: psycopg.Connection[DictRow] | None = None


def _side_connection() -> psycopg.Connection[DictRow]:
    """A second connection of the container, for a row that must commit while the caller's transaction is open
    on the first (rare: a model call should never be made inside a transaction). Opened on first need, kept."""
    global _side
    from observai.config import get_settings

    settings = get_settings()
    if _side is None or _side.closed or _side.broken:
        if settings.database_url is None:
            raise Unavailable("database is not configured")
        try:
            _side = psycopg.connect(
                settings.database_url.get_secret_value(),
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=settings.db_connect_timeout_s,
                row_factory=dict_row,
                application_name=f"{settings.service_name}-{settings.stage}-metering",
            )
        except psycopg.OperationalError as exc:
            raise Unavailable("database unavailable") from exc
    return _side


def close_side_connection() -> None:
    global _side
    with _side_lock:
        if _side is not None:
            _side.close()
            _side = None


def record(
    org_id: UUID,
    project_id: UUID | None,
    feature: str,
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    outcome: str,
) -> None:
    """Append one model call's tokens, committed at once in a transaction of its own (service role), whatever
    becomes of the caller's. Never raises for the database: an unreachable one is logged (the call's answer is
    worth more than its meter), a wrong feature or outcome is a programming error (ValueError)."""
    if feature not in FEATURES:
        raise ValueError(f"unknown AI feature {feature!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    params: dict[str, Any] = {
        "org": org_id,
        "project": project_id,
        "feature": feature,
        "model": (model or "unknown")[:200],
        "input": max(0, int(input_tokens)),
        "output": max(0, int(output_tokens)),
        "outcome": outcome,
    }
    try:
        if get_connection().info.transaction_status is TransactionStatus.IDLE:
            execute_autocommit(_INSERT, params)  # one statement outside a transaction block: it commits alone
        else:
            with _side_lock:
                _side_connection().execute(_INSERT, params)
    except (Unavailable, psycopg.Error) as exc:
        logger.warning(
            "AI usage not metered",
            extra={
                "org_id": str(org_id),
                "feature": feature,
                "tokens": params["input"] + params["output"],
                "error": exc.__class__.__name__,
            },
        )
