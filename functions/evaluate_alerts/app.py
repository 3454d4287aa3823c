"""Scheduled every minute (EventBridge Scheduler): evaluate the due alert rules, then route their transitions.

One bounded run (``alert_eval_max_rules`` rules, ``alert_eval_budget_s`` seconds, well inside the timeout): rules
are claimed with a lease, so an overlapping invocation evaluates other rules or none; what is left is due at the
next run, oldest first. The transitions it wrote are routed into their notification groups right after (their
group timers leave as SQS delay messages), instead of waiting for the dispatcher's next sweep: a minute less
between a crossed threshold and its notification. Routing is claimed too, so the sweep and this never route a
transition twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from observai.alerts.evaluation import run_evaluation
from observai.alerts.routing import route_transitions
from observai.observability import logger
from observai.scheduled import scheduled_job

# Route another bounded batch only with this much of the invocation left (the sweep takes what remains).
MIN_REMAINING_MS = 15_000
MAX_ROUTING_ROUNDS = 10


@scheduled_job
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_evaluation()
    summary = report.model_dump(exclude={"rule_ms"})
    routed = timers = 0
    for _ in range(MAX_ROUTING_ROUNDS):
        routing = route_transitions(datetime.now(UTC))
        routed, timers = routed + routing.claimed, timers + routing.timers_sent
        if not routing.more_pending or context.get_remaining_time_in_millis() < MIN_REMAINING_MS:
            break
    summary.update(routed=routed, timers_sent=timers)
    logger.info("alert evaluation done", extra=summary)
    return summary
