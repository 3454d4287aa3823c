"""Escalation pieces without a database: the policy models' rules, the timer messages, the step order."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from observai.escalation import timers
from observai.escalation.engine import _after
from observai.escalation.models import EscalationPolicyIn, EscalationPolicyPatch
from observai.sqs_batches import is_sqs_event
from pydantic import ValidationError

USER = {"type": "user", "id": str(uuid.uuid4())}


def test_a_policy_takes_steps_targets_repeat_and_ack_timeout() -> None:
    policy = EscalationPolicyIn.model_validate(
        {"name": "ops.primary:1", "steps": [{"wait_minutes": 5, "targets": [USER]}], "repeat": 5}
    )
    assert policy.steps[0].wait_minutes == 5 and policy.repeat == 5 and policy.ack_timeout_minutes is None
    # wait_minutes defaults to 0 (the next step at once)
    assert EscalationPolicyIn.model_validate({"name": "a", "steps": [{"targets": [USER]}]}).steps[0].wait_minutes == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "dup", "steps": [{"targets": [USER, USER]}]},  # a target twice in one step
        {"name": "loop", "steps": [{"wait_minutes": 0, "targets": [USER]}], "repeat": 1},  # repeats without a wait
        {"name": "-dash", "steps": [{"targets": [USER]}]},
        {"name": "many", "steps": [{"targets": [{"type": "user", "id": str(uuid.uuid4())} for _ in range(11)]}]},
        {"name": "t", "steps": [{"targets": [USER]}], "ack_timeout_minutes": 10081},
    ],
)
def test_bad_policies_are_refused(body: dict) -> None:
    with pytest.raises(ValidationError):
        EscalationPolicyIn.model_validate(body)


def test_a_patch_needs_a_field_and_refuses_explicit_nulls_but_for_the_ack_timeout() -> None:
    with pytest.raises(ValidationError):
        EscalationPolicyPatch.model_validate({})
    with pytest.raises(ValidationError):
        EscalationPolicyPatch.model_validate({"steps": None})
    patch = EscalationPolicyPatch.model_validate({"ack_timeout_minutes": None})
    assert patch.model_dump(exclude_unset=True) == {"ack_timeout_minutes": None}


def test_timer_messages_round_trip_and_refuse_strangers() -> None:
    incident_id = uuid.uuid4()
    body = timers.message_body(incident_id, 7, datetime(2030, 1, 1, tzinfo=UTC))
    assert timers.parse_message(body) == timers.Timer(incident_id, 7)
    for bad in (
        "nope",
        "[]",
        json.dumps({"v": 1, "group_id": str(incident_id), "due_at": "x"}),  # an alert timer
        json.dumps({"v": 1, "kind": "escalation", "incident_id": "x", "seq": 1}),
        json.dumps({"v": 1, "kind": "escalation", "incident_id": str(incident_id), "seq": -1}),
        json.dumps({"v": 1, "kind": "escalation", "incident_id": str(incident_id), "seq": True}),
    ):
        with pytest.raises(ValueError):
            timers.parse_message(bad)


def test_steps_run_in_order_then_repeat_rounds_then_stop() -> None:
    policy = {"steps": [{}, {}, {}], "repeat": 1}
    order = [(0, 0)]
    while (following := _after(policy, *order[-1])) is not None:
        order.append(following)
    assert order == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert _after({"steps": [{}], "repeat": 0}, 0, 0) is None


def test_sqs_events_are_told_from_the_schedule() -> None:
    assert is_sqs_event({"Records": [{"eventSource": "aws:sqs"}]})
    assert not is_sqs_event({"source": "aws.scheduler"})
    assert not is_sqs_event({"Records": []})
