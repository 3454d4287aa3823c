"""evaluate-alerts on real Postgres with an injected clock: instances and transitions (with values, rule versions,
annotations), outbox events, pending then firing, a failing query that keeps the state and shows the error,
evaluation lag and missed slots, a bounded run that resumes, fencing, two overlapping runs that never evaluate a
rule twice, and the scheduled function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from observai.alerts.evaluation import claim, run_evaluation
from observai.metrics.rollup import run_aggregation

from tests.helpers.alert_eval import add_points, add_rule, add_series
from tests.helpers.ingest import IngestProject, make_project

pytestmark = pytest.mark.integration

# Evaluation times in the recent past, whole minutes (the clock is injected; the data sits around them).
T = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
HOT = {"kind": "metric", "metric": "cpu", "aggregation": "max", "group_by": ["host"], "window": "5m", "op": ">",
       "threshold": 50}  # fmt: skip


def drain() -> None:
    for _ in range(1000):
        if not run_aggregation(lag_s=0).more_pending:
            return


def cpu(project: IngestProject, host: str, points: list[tuple[datetime, float]]) -> None:
    add_points(project, add_series(project, "cpu", {"host": host}), points)


def evaluate(project: IngestProject, at: datetime, **kwargs: Any) -> Any:
    return run_evaluation(now=at, project_ids=[project.project_id], **kwargs)


def one(db: psycopg.Connection, sql: str, *params: Any) -> dict[str, Any]:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return row


def instances(db: psycopg.Connection, rule_id: UUID) -> dict[str, dict[str, Any]]:
    rows = db.execute("select * from public.alert_instances where rule_id = %s", (rule_id,)).fetchall()
    return {r["labels"].get("host", ""): r for r in rows}


def transitions(db: psycopg.Connection, rule_id: UUID) -> list[tuple[str, str, float | None]]:
    rows = db.execute(
        "select from_state, to_state, value from public.alert_transitions where rule_id = %s order by id", (rule_id,)
    ).fetchall()
    return [(r["from_state"], r["to_state"], r["value"]) for r in rows]


def test_a_rule_with_for_zero_fires_at_once_and_resolves_when_its_series_goes(db: psycopg.Connection) -> None:
    # Given host a at 90 and host b at 10 in the five minutes before T, and a rule "max cpu > 50" per host
    project = make_project(("read",), label="Fire")
    cpu(project, "a", [(T - timedelta(minutes=2), 90.0)])
    cpu(project, "b", [(T - timedelta(minutes=2), 10.0)])
    drain()
    rule = add_rule(
        project, HOT, name="High CPU", severity="critical", labels={"team": "infra"}, next_eval_at=T,
        annotations={"summary": "{{ labels.host }} at {{ value }} (over {{ threshold }})"},
    )  # fmt: skip

    # When evaluated 5 s after it was due
    report = evaluate(project, T + timedelta(seconds=5))

    # Then host a fires at once with its value, labels and rendered annotations; host b (quiet) gets no row
    assert (report.rules_evaluated, report.errors, report.transitions, report.queries) == (1, 0, 1, 1)
    rows = instances(db, rule)
    assert set(rows) == {"a"}
    a = rows["a"]
    assert a["state"] == "firing" and a["value"] == 90.0 and a["rule_version"] == 1
    assert a["labels"] == {"alertname": "High CPU", "severity": "critical", "team": "infra", "host": "a"}
    assert a["annotations"] == {"summary": "a at 90.0 (over 50)"}
    assert a["fired_at"] == a["active_at"] == a["last_eval_at"] == T
    # And the transition is appended, not routed yet, with an alert.firing event in the outbox
    row = one(db, "select * from public.alert_transitions where rule_id = %s", rule)
    assert (row["from_state"], row["to_state"], row["value"], row["rule_version"]) == ("inactive", "firing", 90.0, 1)
    assert row["routed_at"] is None and row["instance_id"] == a["id"] and row["labels"] == a["labels"]
    event = one(db, "select * from public.outbox_events where project_id = %s", project.project_id)
    assert event["type"] == event["payload"]["type"] == "alert.firing" and event["created_at"] == T
    assert event["payload"]["timestamp"] == T.isoformat() and event["payload"]["data"]["state"] == "firing"
    assert event["payload"]["data"]["instance_id"] == str(a["id"]) and event["payload"]["data"]["value"] == 90.0
    # And the rule's bookkeeping: evaluated at T, 5 s late, next due a minute after T, no error, lease returned
    r = one(db, "select * from public.alert_rules where id = %s", rule)
    assert r["last_eval_at"] == T and r["last_eval_lag_ms"] == 5000 and r["next_eval_at"] == T + timedelta(minutes=1)
    assert r["last_error"] is None and r["eval_lease_until"] is None and r["last_eval_duration_ms"] >= 0

    # When the next evaluation comes 6 minutes late (its window holds no point: the series left the result)
    report = evaluate(project, T + timedelta(minutes=6, seconds=5))

    # Then host a resolves (a missing series is a false condition), announced once; the missed slots are skipped
    assert transitions(db, rule) == [("inactive", "firing", 90.0), ("firing", "resolved", None)]
    assert instances(db, rule)["a"]["state"] == "resolved"
    events = db.execute(
        "select type from public.outbox_events where project_id = %s order by created_at", (project.project_id,)
    ).fetchall()
    types = [e["type"] for e in events]
    assert types == ["alert.firing", "alert.resolved"]
    r = one(db, "select * from public.alert_rules where id = %s", rule)
    assert r["next_eval_at"] == T + timedelta(minutes=7) and r["last_eval_lag_ms"] == 305_000


def test_pending_until_for_has_passed_then_firing(db: psycopg.Connection) -> None:
    # Given host a hot through the next minutes, and a rule with for 2m
    project = make_project(("read",), label="Pending")
    cpu(project, "a", [(T - timedelta(seconds=30), 80.0), (T + timedelta(seconds=30), 85.0),
                       (T + timedelta(seconds=90), 95.0)])  # fmt: skip
    drain()
    rule = add_rule(project, HOT, for_s=120, next_eval_at=T)

    # When evaluated at T, T+1m, T+2m
    for minute in range(3):
        evaluate(project, T + timedelta(minutes=minute, seconds=1))

    # Then pending twice, then firing, each change recorded with the value that caused it
    assert transitions(db, rule) == [("inactive", "pending", 80.0), ("pending", "firing", 95.0)]
    a = instances(db, rule)["a"]
    assert a["state"] == "firing" and a["active_at"] == T and a["fired_at"] == T + timedelta(minutes=2)


def test_a_failing_query_keeps_the_state_and_shows_the_error(db: psycopg.Connection) -> None:
    # Given a firing alert
    project = make_project(("read",), label="Failing")
    cpu(project, "a", [(T - timedelta(seconds=30), 80.0), (T + timedelta(minutes=2), 80.0)])
    drain()
    rule = add_rule(project, HOT, next_eval_at=T)
    evaluate(project, T)
    assert instances(db, rule)["a"]["state"] == "firing"

    # When its query starts failing (a regex the database's dialect refuses)
    spec = {**HOT, "filters": [{"attribute": "host", "op": "=~", "value": "(?P<name>a)"}]}
    spec.pop("kind")
    db.execute("update public.alert_rules set spec = %s where id = %s", (json.dumps(spec), rule))
    report = evaluate(project, T + timedelta(minutes=1, seconds=2))

    # Then the alert keeps firing (no transition), the rule shows the error and is still rescheduled
    assert report.errors == 1 and report.rules_evaluated == 1
    assert instances(db, rule)["a"]["state"] == "firing"
    assert transitions(db, rule) == [("inactive", "firing", 80.0)]
    r = one(db, "select * from public.alert_rules where id = %s", rule)
    assert "regular expression" in r["last_error"] and r["last_error_at"] == T + timedelta(minutes=1, seconds=2)
    assert r["next_eval_at"] == T + timedelta(minutes=2) and r["eval_lease_until"] is None

    # When the query works again / Then the error clears and the alert is still the same firing one
    db.execute("update public.alert_rules set spec = %s where id = %s", (json.dumps(HOT), rule))
    evaluate(project, T + timedelta(minutes=2, seconds=2))
    r = one(db, "select * from public.alert_rules where id = %s", rule)
    assert r["last_error"] is None and r["last_error_at"] is None
    assert transitions(db, rule) == [("inactive", "firing", 80.0)]


def test_a_rule_that_cannot_be_read_shows_why_and_the_others_run(db: psycopg.Connection) -> None:
    project = make_project(("read",), label="Unreadable")
    cpu(project, "a", [(T - timedelta(seconds=30), 80.0)])
    drain()
    good = add_rule(project, HOT, next_eval_at=T)
    bad = add_rule(project, HOT, next_eval_at=T)
    db.execute("update public.alert_rules set kind = 'forecast' where id = %s", (bad,))  # nobody's kind

    report = evaluate(project, T)

    assert (report.rules_evaluated, report.errors) == (2, 1)
    assert (
        "cannot be evaluated" in one(db, "select last_error from public.alert_rules where id = %s", bad)["last_error"]
    )
    assert instances(db, good)["a"]["state"] == "firing" and instances(db, bad) == {}


def test_rules_sharing_a_query_are_evaluated_with_one(db: psycopg.Connection) -> None:
    # Given three rules on the same metric, filters, aggregation, group_by and window (thresholds differ), and one
    # on another window
    project = make_project(("read",), label="Shared")
    cpu(project, "a", [(T - timedelta(seconds=30), 70.0)])
    drain()
    rules = [add_rule(project, {**HOT, "threshold": t}, next_eval_at=T) for t in (50, 60, 90)]
    other = add_rule(project, {**HOT, "window": "10m"}, next_eval_at=T)

    report = evaluate(project, T)

    # Then two queries for four rules, each rule judged on its own threshold
    assert (report.rules_evaluated, report.queries) == (4, 2)
    assert [bool(instances(db, r)) for r in rules] == [True, True, False]
    assert instances(db, other)["a"]["state"] == "firing"


def test_a_bounded_run_resumes_with_the_oldest_due(db: psycopg.Connection) -> None:
    # Given five rules due one minute apart
    project = make_project(("read",), label="Bounded")
    rules = [add_rule(project, HOT, next_eval_at=T - timedelta(minutes=5 - i)) for i in range(5)]

    def evaluated() -> list[bool]:
        return [
            one(db, "select last_eval_at from public.alert_rules where id = %s", r)["last_eval_at"] is not None
            for r in rules
        ]

    # When runs may take two rules each / Then each takes the two oldest still due, and says whether more are
    first = evaluate(project, T, max_rules=2)
    assert evaluated() == [True, True, False, False, False] and first.more_due
    second = evaluate(project, T, max_rules=2)
    assert evaluated() == [True, True, True, True, False] and second.more_due
    third = evaluate(project, T, max_rules=2)
    assert evaluated() == [True] * 5 and not third.more_due and third.rules_evaluated == 1


def test_a_run_whose_claim_was_taken_over_writes_nothing(db: psycopg.Connection) -> None:
    from observai.alerts.evaluation import batches, observe, write_batch
    from observai.db.connection import transaction

    # Given a rule claimed by a run, whose lease then expired and which another run claimed again
    project = make_project(("read",), label="Fenced")
    cpu(project, "a", [(T - timedelta(seconds=30), 80.0)])
    drain()
    rule = add_rule(project, HOT, next_eval_at=T)
    with transaction() as cur:
        (claimed,) = claim(cur, now=T, limit=10, lease_until=T + timedelta(seconds=1), project_ids=[project.project_id])
    db.execute("update public.alert_rules set eval_seq = eval_seq + 1 where id = %s", (rule,))

    # When the first run writes its result
    (batch,) = batches([claimed])
    written, moved, fenced = write_batch(batch, observe(batch, T), now=T, eval_at=T, query_ms=1.0)

    # Then nothing of it is kept: the rule belongs to the other run
    assert (written, moved, fenced) == (0, 0, 1)
    assert instances(db, rule) == {}
    assert one(db, "select last_eval_at from public.alert_rules where id = %s", rule)["last_eval_at"] is None


def test_two_overlapping_runs_never_evaluate_a_rule_twice(db: psycopg.Connection, database_url: str) -> None:
    # Given 40 due rules that all fire
    project = make_project(("read",), label="Overlap")
    cpu(project, "a", [(T - timedelta(seconds=30), 80.0)])
    drain()
    rules = [add_rule(project, HOT, next_eval_at=T) for _ in range(40)]

    # When two runs start at the same time (two processes, as two Lambda invocations), claiming 3 rules at a time
    script = (
        "import json, sys, uuid; from datetime import datetime; from observai.alerts.evaluation import run_evaluation;"
        "r = run_evaluation(now=datetime.fromisoformat(sys.argv[1]), project_ids=[uuid.UUID(sys.argv[2])], chunk=3);"
        "print(json.dumps(r.model_dump(mode='json', exclude={'rule_ms'})))"
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    at = (T + timedelta(seconds=3)).isoformat()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, at, str(project.project_id)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))

    # Then together they evaluated every rule once: one claim each, one transition each, nothing fenced
    assert sum(r["rules_evaluated"] for r in reports) == 40 and sum(r["fenced"] for r in reports) == 0
    seqs = db.execute("select eval_seq from public.alert_rules where id = any(%s)", (rules,)).fetchall()
    assert [s["eval_seq"] for s in seqs] == [1] * 40
    counts = db.execute(
        "select rule_id, count(*) as n from public.alert_transitions where rule_id = any(%s) group by 1", (rules,)
    ).fetchall()
    assert len(counts) == 40 and {c["n"] for c in counts} == {1}
    events = one(db, "select count(*) as n from public.outbox_events where project_id = %s", project.project_id)
    assert events["n"] == 40


def test_the_scheduled_function_runs_an_evaluation(db: psycopg.Connection) -> None:
    from observai_local.lambda_context import LambdaContext

    from tests.helpers.inprocess import load_function

    # Given a rule due now
    project = make_project(("read",), label="Scheduled")
    rule = add_rule(project, {**HOT, "metric": "nothing.here"}, next_eval_at=datetime.now(UTC) - timedelta(seconds=1))

    # When EventBridge Scheduler invokes the function
    module = load_function("evaluate_alerts")
    result = module.lambda_handler(
        {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}},
        LambdaContext("observai-test-evaluate-alerts", memory_limit_in_mb=1024, timeout_s=90),
    )

    # Then the rule was evaluated (no series: no instance) and the run reported
    assert result["rules_evaluated"] >= 1 and "seconds" in result
    assert one(db, "select last_eval_at from public.alert_rules where id = %s", rule)["last_eval_at"] is not None


def test_rules_claimed_past_the_budget_are_handed_back_for_the_next_run(db: psycopg.Connection) -> None:
    import time

    from observai.alerts.evaluation import EvaluationReport, _evaluate_chunk
    from observai.db.connection import transaction

    # Given three rules claimed by a run whose time budget is already spent
    project = make_project(("read",), label="Budget")
    rules = [add_rule(project, HOT, next_eval_at=T) for _ in range(3)]
    with transaction() as cur:
        claimed = claim(cur, now=T, limit=10, lease_until=T + timedelta(minutes=5), project_ids=[project.project_id])
    report = EvaluationReport()

    # When the run reaches its batches
    _evaluate_chunk(claimed, clock=T, started=time.perf_counter() - 100, budget_s=1, report=report)

    # Then it evaluates none and returns their leases: still due, and the next run (same clock) evaluates them
    assert (report.released, report.rules_evaluated) == (3, 0)
    leases = db.execute("select eval_lease_until from public.alert_rules where id = any(%s)", (rules,)).fetchall()
    assert [r["eval_lease_until"] for r in leases] == [None] * 3
    assert evaluate(project, T).rules_evaluated == 3


def test_a_write_that_fails_keeps_the_state_shows_the_error_and_the_run_goes_on(db: psycopg.Connection) -> None:
    # Given two projects' firing rules, and the database refusing instance writes of the first project (a trigger)
    broken, fine = make_project(("read",), label="Broken"), make_project(("read",), label="Fine")
    for project in (broken, fine):
        cpu(project, "a", [(T - timedelta(seconds=30), 80.0)])
    drain()
    failing = add_rule(broken, HOT, next_eval_at=T)
    working = add_rule(fine, HOT, next_eval_at=T)
    db.execute(
        "create function public.alert_test_refuse() returns trigger language plpgsql as $$"
        f" begin if new.project_id = '{broken.project_id}' then raise exception 'refused by the test'; end if;"
        " return new; end $$"
    )
    db.execute(
        "create trigger refuse_instances before insert or update on public.alert_instances"
        " for each row execute function public.alert_test_refuse()"
    )
    try:
        # When one run evaluates both
        report = run_evaluation(now=T, project_ids=[broken.project_id, fine.project_id])
    finally:
        db.execute("drop trigger refuse_instances on public.alert_instances")
        db.execute("drop function public.alert_test_refuse()")

    # Then the failing batch wrote nothing (no instance, no transition, no event) but shows the error and is
    # rescheduled; the other project's rule fired
    assert (report.rules_evaluated, report.errors) == (2, 1)
    assert instances(db, failing) == {} and transitions(db, failing) == []
    r = one(db, "select * from public.alert_rules where id = %s", failing)
    assert "refused by the test" in r["last_error"] and r["next_eval_at"] == T + timedelta(minutes=1)
    assert instances(db, working)["a"]["state"] == "firing"


def test_retiring_a_rule_resolves_its_firing_alerts_and_drops_its_pending_ones(db: psycopg.Connection) -> None:
    from observai.alerts.evaluation import retire_rule
    from observai.db.connection import transaction

    # Given a rule with a firing alert (host a) and a pending one (host b, under a rule with for 5m)
    project = make_project(("read",), label="Retire")
    cpu(project, "a", [(T - timedelta(seconds=30), 80.0)])
    drain()
    firing = add_rule(project, HOT, next_eval_at=T)
    pending = add_rule(project, HOT, for_s=300, next_eval_at=T)
    evaluate(project, T)

    # When both are retired (disabled or deleted through the rules API)
    later = T + timedelta(seconds=20)
    with transaction() as cur:
        ended = [retire_rule(cur, firing, now=later), retire_rule(cur, pending, now=later)]

    # Then the firing alert resolved (a transition and an event, as an evaluation writes them), the pending one is
    # inactive again without an event, and a second retirement changes nothing
    assert ended == [{"resolved": 1, "inactive": 0}, {"resolved": 0, "inactive": 1}]
    assert transitions(db, firing) == [("inactive", "firing", 80.0), ("firing", "resolved", 80.0)]
    assert transitions(db, pending) == [("inactive", "pending", 80.0), ("pending", "inactive", 80.0)]
    assert instances(db, firing)["a"]["resolved_at"] == later and instances(db, pending)["a"]["state"] == "inactive"
    events = db.execute(
        "select type from public.outbox_events where project_id = %s order by created_at", (project.project_id,)
    ).fetchall()
    assert [e["type"] for e in events] == ["alert.firing", "alert.resolved"]
    with transaction() as cur:
        assert retire_rule(cur, firing, now=later) == {"resolved": 0, "inactive": 0}
