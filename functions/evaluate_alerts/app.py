"""Scheduled every minute (EventBridge Scheduler): evaluate the due alert rules.

One bounded run (``alert_eval_max_rules`` rules, ``alert_eval_budget_s`` seconds, well inside the timeout): rules
are claimed with a lease, so an overlapping invocation evaluates other rules or none; what is left is due at the
next run, oldest first.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.alerts.evaluation import run_evaluation
from observai.observability import logger
from observai.scheduled import scheduled_job


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_evaluation()
    summary = report.model_dump(exclude={"rule_ms"})
    logger.info("alert evaluation done", extra=summary)
    return summary
