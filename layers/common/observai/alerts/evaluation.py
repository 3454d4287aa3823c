"""evaluate-alerts: claim the due rules, evaluate them under their project's tenancy, persist the alert instances,
their transitions and the rules' evaluation bookkeeping.

A run claims enabled rules whose ``next_eval_at`` has come, oldest due first, in chunks (``FOR UPDATE SKIP LOCKED``,
then a lease ``eval_lease_until`` and ``eval_seq`` + 1 committed at once): an overlapping run skips the rows being
claimed and then the leased ones, so no rule is evaluated twice. The run stops claiming at ``max_rules`` or when its
time ``budget_s`` is spent, hands back the leases of rules it claimed but did not reach, and the next run resumes
with the oldest due.

Rules of a project whose conditions share a query (``RuleKind.share_key``: same metric, filters, aggregation,
group_by and window for ``metric``) are read with ONE query, in a transaction under the project's tenancy (an
API-key-shaped claim of the project: Row Level Security shows it that project's rows and no other). Each such batch
is then written in one transaction of the service role: the rules' bookkeeping first, only where ``eval_seq``
still matches the claim (a run whose lease expired and whose rule was claimed again writes nothing), then the
instances (upsert on (rule_id, fingerprint)), the transitions (append-only, ``routed_at`` null for the router),
and an ``alert.firing`` / ``alert.resolved`` outbox event per transition to firing / resolved.

A rule whose query fails keeps every instance as it is (never a silent resolve) and shows the error
(``last_error``, ``last_error_at``; cleared by the next success); it is still rescheduled.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, TypeAdapter

from observai.alerts import labels as alert_labels_module
from observai.alerts import templates
from observai.alerts.kinds import Observation, RuleKind, get_kind
from observai.alerts.rule_models import Condition
from observai.alerts.states import InstanceState, next_state
from observai.db.connection import Cursor, tenant_transaction, transaction

CLAIM_CHUNK = 500
LEASE_MARGIN = timedelta(seconds=60)
MAX_ERROR = 2000

_CONDITION: TypeAdapter[Any] = TypeAdapter(Condition)


class EvaluationReport(BaseModel):
    model_config = ConfigDict(defer_build=True)
    rules_evaluated: int = 0
    errors: int = 0
    transitions: int = 0
    fenced: int = 0  # claimed, but claimed again by another run before this one wrote (its lease had expired)
    released: int = 0  # claimed, not reached within the budget: handed back for the next run
    queries: int = 0  # shared queries run (one per batch of rules sharing it)
    more_due: bool = False
    seconds: float = 0.0
    # Per rule (ms): the batch's query and write time, for the bench's p50/p95.
    rule_ms: list[float] = []


@dataclass
class ClaimedRule:
    id: UUID
    org_id: UUID
    project_id: UUID
    name: str
    kind: str
    spec: dict[str, Any]
    for_s: int
    keep_firing_for_s: int
    interval_s: int
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    version: int
    due_at: datetime
    eval_seq: int
    condition: Any = None
    error: str | None = None


@dataclass
class _Batch:
    project_id: UUID
    org_id: UUID
    kind: RuleKind | None
    rules: list[ClaimedRule] = field(default_factory=list)


def rls_claims(org_id: UUID, project_id: UUID, rule_id: UUID) -> dict[str, Any]:
    """The claims a rule reads under: an API key of its project with the read scope, as the telemetry policies
    expect, so the rule can read its own project's rows only."""
    return {
        "role": "authenticated",
        "api_key": {"id": str(rule_id), "org_id": str(org_id), "project_id": str(project_id), "scopes": ["read"]},
    }


def floor_minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def next_due(due_at: datetime, interval_s: int, now: datetime) -> datetime:
    """The first slot after ``now`` of due_at's minute + k * interval (missed slots are skipped, not caught up).

    Slots are whole minutes, the evaluation times windows end on: a rule created at 12:00:37 is due then, and next
    at 12:01:00 (interval 1m), so the run at the start of each minute finds it due and its lag reads true."""
    interval = timedelta(seconds=interval_s)
    base = floor_minute(due_at)
    missed = max(0, math.floor((now - base) / interval))
    return base + (missed + 1) * interval


def error_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {message}"[:MAX_ERROR]


# --- claiming --------------------------------------------------------------------------------------------------


def claim(
    cur: Cursor, *, now: datetime, limit: int, lease_until: datetime, project_ids: Sequence[UUID] | None
) -> list[ClaimedRule]:
    """Lease up to ``limit`` due enabled rules, oldest due first (rows another run is claiming are skipped)."""
    scope = " and project_id = any(%(projects)s)" if project_ids is not None else ""
    cur.execute(
        "with due as (select id from public.alert_rules"
        " where enabled and next_eval_at <= %(now)s and (eval_lease_until is null or eval_lease_until <= %(now)s)"
        # Oldest due minute first, then a project's rules together: rules sharing a query land in one chunk.
        f"{scope} order by date_trunc('minute', next_eval_at), project_id, id limit %(limit)s for update skip locked)"
        " update public.alert_rules r set eval_lease_until = %(lease)s, eval_seq = r.eval_seq + 1"
        " from due where r.id = due.id"
        " returning r.id, r.org_id, r.project_id, r.name, r.kind, r.spec, r.for_s, r.keep_firing_for_s,"
        " r.interval_s, r.severity, r.labels, r.annotations, r.version, r.next_eval_at, r.eval_seq",
        {"now": now, "limit": limit, "lease": lease_until, "projects": list(project_ids or [])},
    )
    rules = [
        ClaimedRule(
            id=r["id"],
            org_id=r["org_id"],
            project_id=r["project_id"],
            name=r["name"],
            kind=r["kind"],
            spec=r["spec"],
            for_s=r["for_s"],
            keep_firing_for_s=r["keep_firing_for_s"],
            interval_s=r["interval_s"],
            severity=r["severity"],
            labels=dict(r["labels"]),
            annotations=dict(r["annotations"]),
            version=r["version"],
            due_at=r["next_eval_at"],
            eval_seq=r["eval_seq"],
        )
        for r in cur.fetchall()
    ]
    rules.sort(key=lambda rule: (floor_minute(rule.due_at), str(rule.project_id), str(rule.id)))
    return rules


def _release(rules: Iterable[ClaimedRule]) -> int:
    """Hand back the leases of claimed rules this run will not evaluate (still due: the next run takes them)."""
    ids = [r.id for r in rules]
    if not ids:
        return 0
    with transaction() as cur:
        cur.execute(
            "update public.alert_rules r set eval_lease_until = null from unnest(%s::uuid[], %s::bigint[]) v(id, seq)"
            " where r.id = v.id and r.eval_seq = v.seq",
            (ids, [r.eval_seq for r in rules]),
        )
        return cur.rowcount


# --- evaluating ------------------------------------------------------------------------------------------------


def _parse(rule: ClaimedRule) -> tuple[RuleKind | None, Hashable]:
    """The rule's kind and share key; a rule that cannot be read (unknown kind, invalid spec) gets its error."""
    try:
        kind = get_kind(rule.kind)
        rule.condition = _CONDITION.validate_python({**rule.spec, "kind": rule.kind})
        return kind, (rule.kind, kind.share_key(rule.condition))
    except Exception as exc:  # recorded as the rule's error, the run goes on
        rule.error = f"the rule cannot be evaluated: {error_text(exc)}"
        return None, ("error", rule.id)


def batches(rules: Sequence[ClaimedRule]) -> list[_Batch]:
    """The claimed rules grouped by project and shared query (rules that cannot be read: alone)."""
    grouped: dict[tuple[UUID, Hashable], _Batch] = {}
    for rule in rules:
        kind, key = _parse(rule)
        batch = grouped.get((rule.project_id, key))
        if batch is None:
            batch = grouped[(rule.project_id, key)] = _Batch(rule.project_id, rule.org_id, kind)
        batch.rules.append(rule)
    return list(grouped.values())


def observe(batch: _Batch, eval_at: datetime) -> list[Observation] | None:
    """The batch's one query, under the project's tenancy; None when it failed (each rule's error set)."""
    from observai.db.breaker import is_connection_failure

    first = batch.rules[0]
    if batch.kind is None:
        return None
    try:
        with tenant_transaction(rls_claims(batch.org_id, batch.project_id, first.id)) as cur:
            return batch.kind.observe(cur, batch.project_id, first.condition, eval_at)
    except Exception as exc:
        if is_connection_failure(exc):
            raise  # the database is gone: the run stops, the leases expire, the next run resumes
        for rule in batch.rules:
            rule.error = error_text(exc)
        return None


# --- writing ---------------------------------------------------------------------------------------------------

_INSTANCE_COLUMNS = "id, rule_id, fingerprint, state, value, active_at, fired_at, resolved_at, last_true_at"


def _lock_current(cur: Cursor, batch: _Batch) -> set[UUID]:
    """Lock the batch's rules that are still this run's (eval_seq as claimed): the fence. A rule claimed again by
    another run (this run's lease expired) is not written by this one; the lock keeps a third run from claiming it
    until this transaction ends."""
    cur.execute(
        "select r.id from public.alert_rules r join unnest(%s::uuid[], %s::bigint[]) v(id, seq)"
        " on r.id = v.id and r.eval_seq = v.seq for update of r",
        ([r.id for r in batch.rules], [r.eval_seq for r in batch.rules]),
    )
    return {row["id"] for row in cur.fetchall()}


def _bookkeep(cur: Cursor, rules: list[ClaimedRule], *, now: datetime, eval_at: datetime, duration_ms: float) -> None:
    """The rules' next due time (skipping missed slots), last evaluation, lag, duration and error; the lease ends."""
    cur.execute(
        "update public.alert_rules r set next_eval_at = v.next_eval_at, last_eval_at = %(at)s,"
        " last_eval_lag_ms = v.lag_ms, last_eval_duration_ms = %(duration)s, eval_lease_until = null,"
        " last_error = v.error, last_error_at = case when v.error is null then null else %(now)s end"
        " from unnest(%(ids)s::uuid[], %(seqs)s::bigint[], %(next)s::timestamptz[], %(lags)s::int[],"
        " %(errors)s::text[]) v(id, seq, next_eval_at, lag_ms, error)"
        " where r.id = v.id and r.eval_seq = v.seq",
        {
            "ids": [r.id for r in rules],
            "seqs": [r.eval_seq for r in rules],
            "next": [next_due(r.due_at, r.interval_s, now) for r in rules],
            # Lag: how late the evaluation started after the rule was due.
            "lags": [max(0, round((now - r.due_at).total_seconds() * 1000)) for r in rules],
            "errors": [r.error for r in rules],
            "at": eval_at,
            "now": now,
            "duration": min(round(duration_ms), 2**31 - 1),
        },
    )


def write_batch(
    batch: _Batch, observations: list[Observation] | None, *, now: datetime, eval_at: datetime, query_ms: float
) -> tuple[int, int, int]:
    """Persist one batch in one transaction: (rules written, transitions, rules fenced out)."""
    started = time.perf_counter()
    transitions = 0
    with transaction() as cur:
        current = _lock_current(cur, batch)
        mine = [r for r in batch.rules if r.id in current]
        rules = [r for r in mine if r.error is None]
        if observations is not None and rules:
            cur.execute(
                f"select {_INSTANCE_COLUMNS} from public.alert_instances where rule_id = any(%s)",
                ([r.id for r in rules],),
            )
            existing: dict[UUID, dict[str, dict[str, Any]]] = defaultdict(dict)
            for row in cur.fetchall():
                existing[row["rule_id"]][row["fingerprint"]] = row
            upserts: list[dict[str, Any]] = []
            for rule in rules:
                upserts.extend(_rule_changes(batch.kind, rule, observations, existing.get(rule.id, {}), eval_at))
            transitions = _persist(cur, batch, upserts, eval_at)
        if mine:
            duration_ms = query_ms + (time.perf_counter() - started) * 1000
            _bookkeep(cur, mine, now=now, eval_at=eval_at, duration_ms=duration_ms)
    return len(mine), transitions, len(batch.rules) - len(mine)


def _rule_changes(
    kind: RuleKind | None,
    rule: ClaimedRule,
    observations: list[Observation],
    existing: dict[str, dict[str, Any]],
    eval_at: datetime,
) -> list[dict[str, Any]]:
    """The instance rows to write for one rule: every series of the result that is (or becomes) pending or firing
    or already has a row, and every row whose series left the result (condition false)."""
    assert kind is not None
    seen: dict[str, tuple[dict[str, str] | None, float | None, bool]] = {}
    for o in observations:
        labels = alert_labels_module.alert_labels(rule.name, rule.severity, rule.labels, o.labels)
        seen[alert_labels_module.fingerprint(labels)] = (labels, o.value, kind.judge(rule.condition, o))
    changes = []
    for fp in sorted(seen.keys() | existing.keys()):
        row = existing.get(fp)
        series_labels, value, active = seen.get(fp, (None, None, False))
        previous = (
            InstanceState(
                state=row["state"],
                value=row["value"],
                active_at=row["active_at"],
                fired_at=row["fired_at"],
                resolved_at=row["resolved_at"],
                last_true_at=row["last_true_at"],
            )
            if row
            else None
        )
        state = next_state(
            previous,
            active=active,
            value=value,
            now=eval_at,
            for_s=rule.for_s,
            keep_firing_for_s=rule.keep_firing_for_s,
        )
        before = previous.state if previous else "inactive"
        if row is None and state.state == "inactive":
            continue  # a quiet series: no row until its condition first holds
        if row is not None and state.state == before and before in ("inactive", "resolved"):
            continue  # nothing to tell: the row keeps its last values (and its last_eval_at)
        changes.append({"rule": rule, "fingerprint": fp, "labels": series_labels, "state": state, "from": before})
    return changes


def _persist(cur: Cursor, batch: _Batch, upserts: list[dict[str, Any]], eval_at: datetime) -> int:
    """Write the instance rows (one statement), their transitions (one statement) and the outbox events."""
    if not upserts:
        return 0
    for change in upserts:
        rule: ClaimedRule = change["rule"]
        state: InstanceState = change["state"]
        if change["labels"] is None:
            # A series that left the result keeps its labels (its row has them): only the state and value change.
            change["annotations"] = None
            continue
        threshold = getattr(rule.condition, "threshold", None)
        change["annotations"] = templates.render_all(
            rule.annotations, value=state.value, labels=change["labels"], threshold=threshold, rule=rule.name
        )
    cur.execute(
        "insert into public.alert_instances as i (org_id, project_id, rule_id, rule_version, fingerprint, labels,"
        " annotations, state, value, active_at, fired_at, resolved_at, last_true_at, last_eval_at, updated_at)"
        " select %(org)s, %(project)s, v.rule_id, v.version, v.fingerprint, coalesce(v.labels, '{}'),"
        " coalesce(v.annotations, '{}'), v.state, v.value, v.active_at, v.fired_at, v.resolved_at, v.last_true_at,"
        " %(at)s, now()"
        " from unnest(%(rules)s::uuid[], %(versions)s::int[], %(fps)s::text[], %(labels)s::jsonb[],"
        " %(annotations)s::jsonb[], %(states)s::text[], %(values)s::float8[], %(active)s::timestamptz[],"
        " %(fired)s::timestamptz[], %(resolved)s::timestamptz[], %(true)s::timestamptz[])"
        " v(rule_id, version, fingerprint, labels, annotations, state, value, active_at, fired_at, resolved_at,"
        " last_true_at)"
        " on conflict (rule_id, fingerprint) do update set rule_version = excluded.rule_version,"
        " labels = case when %(keep)s::text[] @> array[excluded.fingerprint] then i.labels else excluded.labels end,"
        " annotations = case when %(keep)s::text[] @> array[excluded.fingerprint] then i.annotations"
        " else excluded.annotations end,"
        " state = excluded.state, value = excluded.value, active_at = excluded.active_at,"
        " fired_at = excluded.fired_at, resolved_at = excluded.resolved_at, last_true_at = excluded.last_true_at,"
        " last_eval_at = excluded.last_eval_at, updated_at = now()"
        " returning i.id, i.rule_id, i.fingerprint, i.labels, i.annotations",
        {
            "org": batch.org_id,
            "project": batch.project_id,
            "at": eval_at,
            "rules": [c["rule"].id for c in upserts],
            "versions": [c["rule"].version for c in upserts],
            "fps": [c["fingerprint"] for c in upserts],
            "labels": [Jsonb(c["labels"]) if c["labels"] is not None else None for c in upserts],
            "annotations": [Jsonb(c["annotations"]) if c["annotations"] is not None else None for c in upserts],
            "states": [c["state"].state for c in upserts],
            "values": [c["state"].value for c in upserts],
            "active": [c["state"].active_at for c in upserts],
            "fired": [c["state"].fired_at for c in upserts],
            "resolved": [c["state"].resolved_at for c in upserts],
            "true": [c["state"].last_true_at for c in upserts],
            "keep": [c["fingerprint"] for c in upserts if c["labels"] is None],
        },
    )
    rows = {(r["rule_id"], r["fingerprint"]): r for r in cur.fetchall()}
    moved = [c for c in upserts if c["state"].state != c["from"]]
    if not moved:
        return 0
    cur.execute(
        "insert into public.alert_transitions (org_id, project_id, rule_id, rule_version, instance_id, fingerprint,"
        " labels, from_state, to_state, value, at)"
        " select %(org)s, %(project)s, v.* from unnest(%(rules)s::uuid[], %(versions)s::int[], %(ids)s::uuid[],"
        " %(fps)s::text[], %(labels)s::jsonb[], %(from)s::text[], %(to)s::text[], %(values)s::float8[],"
        " %(at)s::timestamptz[]) v",
        {
            "org": batch.org_id,
            "project": batch.project_id,
            "rules": [c["rule"].id for c in moved],
            "versions": [c["rule"].version for c in moved],
            "ids": [rows[(c["rule"].id, c["fingerprint"])]["id"] for c in moved],
            "fps": [c["fingerprint"] for c in moved],
            "labels": [Jsonb(rows[(c["rule"].id, c["fingerprint"])]["labels"]) for c in moved],
            "from": [c["from"] for c in moved],
            "to": [c["state"].state for c in moved],
            "values": [c["state"].value for c in moved],
            "at": [eval_at] * len(moved),
        },
    )
    from observai import outbox

    events = []
    for c in moved:
        if c["state"].state not in ("firing", "resolved"):
            continue
        row = rows[(c["rule"].id, c["fingerprint"])]
        data = {
            "rule_id": str(c["rule"].id),
            "rule_name": c["rule"].name,
            "rule_version": c["rule"].version,
            "instance_id": str(row["id"]),
            "fingerprint": c["fingerprint"],
            "labels": row["labels"],
            "annotations": row["annotations"],
            "state": c["state"].state,
            "previous_state": c["from"],
            "value": c["state"].value,
            "at": eval_at.isoformat(),
        }
        type_ = f"alert.{c['state'].state}"
        # Labels and annotations are the users' (50 labels of 1 kB): cut to the webhook size rather than fail.
        events.append(
            outbox.OutboxEvent(batch.org_id, batch.project_id, type_, outbox.fit(type_, data, eval_at), eval_at)
        )
    outbox.emit_many(cur, events)
    return len(moved)


def retire_rule(cur: Cursor, rule_id: UUID, *, now: datetime) -> dict[str, int]:
    """End a rule's live alerts in the caller's transaction (the rule is being disabled or deleted): firing →
    resolved, with its transition (carrying the alert's last value) and an ``alert.resolved`` event as an evaluation
    would write them, pending → inactive. Returns the count per new state. No evaluation can interleave: the rule's
    row is locked first."""
    from observai import outbox

    cur.execute(
        "select id, org_id, project_id, name, version from public.alert_rules where id = %s for update", (rule_id,)
    )
    rule = cur.fetchone()
    if rule is None:
        return {"resolved": 0, "inactive": 0}
    cur.execute(
        "with live as (select id, state, value from public.alert_instances where rule_id = %(rule)s"
        " and state in ('pending', 'firing') for update)"
        " update public.alert_instances i set"
        " state = case when live.state = 'firing' then 'resolved' else 'inactive' end,"
        " resolved_at = case when live.state = 'firing' then %(now)s else i.resolved_at end,"
        " active_at = null, value = null, last_eval_at = %(now)s, updated_at = now()"
        " from live where i.id = live.id"
        " returning i.id, i.fingerprint, i.labels, i.annotations, i.rule_version, live.state as from_state, i.state,"
        " live.value as last_value",
        {"rule": rule_id, "now": now},
    )
    ended = cur.fetchall()
    counts = {"resolved": sum(r["state"] == "resolved" for r in ended), "inactive": 0}
    counts["inactive"] = len(ended) - counts["resolved"]
    if not ended:
        return counts
    cur.execute(
        "insert into public.alert_transitions (org_id, project_id, rule_id, rule_version, instance_id, fingerprint,"
        " labels, from_state, to_state, value, at)"
        " select %(org)s, %(project)s, %(rule)s, v.version, v.id, v.fp, v.labels, v.from_state, v.to_state, v.value,"
        " %(now)s"
        " from unnest(%(versions)s::int[], %(ids)s::uuid[], %(fps)s::text[], %(labels)s::jsonb[], %(from)s::text[],"
        " %(to)s::text[], %(values)s::float8[]) v(version, id, fp, labels, from_state, to_state, value)",
        {
            "org": rule["org_id"],
            "project": rule["project_id"],
            "rule": rule_id,
            "now": now,
            "versions": [r["rule_version"] for r in ended],
            "ids": [r["id"] for r in ended],
            "fps": [r["fingerprint"] for r in ended],
            "labels": [Jsonb(r["labels"]) for r in ended],
            "from": [r["from_state"] for r in ended],
            "to": [r["state"] for r in ended],
            "values": [r["last_value"] for r in ended],
        },
    )
    outbox.emit_many(
        cur,
        [
            outbox.OutboxEvent(
                rule["org_id"],
                rule["project_id"],
                "alert.resolved",
                outbox.fit(
                    "alert.resolved",
                    {
                        "rule_id": str(rule_id),
                        "rule_name": rule["name"],
                        "rule_version": r["rule_version"],
                        "instance_id": str(r["id"]),
                        "fingerprint": r["fingerprint"],
                        "labels": r["labels"],
                        "annotations": r["annotations"],
                        "state": "resolved",
                        "previous_state": "firing",
                        "value": r["last_value"],
                        "at": now.isoformat(),
                        "reason": "rule retired",
                    },
                    now,
                ),
                now,
            )
            for r in ended
            if r["state"] == "resolved"
        ],
    )
    return counts


# --- the run ---------------------------------------------------------------------------------------------------


def run_evaluation(
    *,
    now: datetime | None = None,
    max_rules: int | None = None,
    budget_s: float | None = None,
    project_ids: Sequence[UUID] | None = None,
    chunk: int = CLAIM_CHUNK,
) -> EvaluationReport:
    """One bounded run (the scheduled function's): claim, evaluate and persist due rules until none is due,
    ``max_rules`` were claimed or ``budget_s`` is spent. ``now``: the clock (tests inject it; default the wall
    clock, read at each chunk). ``project_ids``: only those projects' rules (tests)."""
    from observai.config import get_settings

    settings = get_settings()
    max_rules = settings.alert_eval_max_rules if max_rules is None else max_rules
    budget_s = settings.alert_eval_budget_s if budget_s is None else budget_s
    started = time.perf_counter()
    report = EvaluationReport()
    claimed_total = 0
    clock = now or datetime.now(UTC)
    while claimed_total < max_rules and time.perf_counter() - started < budget_s:
        clock = now or datetime.now(UTC)
        with transaction() as cur:
            rules = claim(
                cur,
                now=clock,
                limit=min(chunk, max_rules - claimed_total),
                lease_until=clock + timedelta(seconds=budget_s) + LEASE_MARGIN,
                project_ids=project_ids,
            )
        if not rules:
            break
        claimed_total += len(rules)
        _evaluate_chunk(rules, clock=clock, started=started, budget_s=budget_s, report=report)
    report.more_due = _any_due(now or datetime.now(UTC), project_ids)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _evaluate_chunk(
    rules: list[ClaimedRule], *, clock: datetime, started: float, budget_s: float, report: EvaluationReport
) -> None:
    eval_at = floor_minute(clock)
    pending = batches(rules)
    for index, batch in enumerate(pending):
        if time.perf_counter() - started >= budget_s:
            report.released += _release([r for b in pending[index:] for r in b.rules])
            return
        batch_started = time.perf_counter()
        observations = observe(batch, eval_at)
        if batch.kind is not None:
            report.queries += 1
        query_ms = (time.perf_counter() - batch_started) * 1000
        written, transitions, fenced = _write_or_record(
            batch, observations, clock=clock, eval_at=eval_at, query_ms=query_ms
        )
        batch_ms = (time.perf_counter() - batch_started) * 1000
        report.rules_evaluated += written
        report.errors += sum(1 for r in batch.rules if r.error is not None)
        report.transitions += transitions
        report.fenced += fenced
        report.rule_ms.extend([batch_ms] * len(batch.rules))


def _write_or_record(
    batch: _Batch, observations: list[Observation] | None, *, clock: datetime, eval_at: datetime, query_ms: float
) -> tuple[int, int, int]:
    """``write_batch``; when the write itself fails (its transaction rolled back, nothing half-written), the batch's
    rules keep their state and show the error, and the run goes on with the next batch."""
    from observai.db.breaker import is_connection_failure

    try:
        return write_batch(batch, observations, now=clock, eval_at=eval_at, query_ms=query_ms)
    except Exception as exc:
        if is_connection_failure(exc):
            raise
        for rule in batch.rules:
            rule.error = f"writing the evaluation failed: {error_text(exc)}"[:MAX_ERROR]
        return write_batch(batch, None, now=clock, eval_at=eval_at, query_ms=query_ms)


def _any_due(now: datetime, project_ids: Sequence[UUID] | None) -> bool:
    scope = " and project_id = any(%(projects)s)" if project_ids is not None else ""
    with transaction() as cur:
        cur.execute(
            "select exists (select 1 from public.alert_rules where enabled and next_eval_at <= %(now)s"
            f" and (eval_lease_until is null or eval_lease_until <= %(now)s){scope}) as due",
            {"now": now, "projects": list(project_ids or [])},
        )
        row = cur.fetchone()
    return bool(row and row["due"])
