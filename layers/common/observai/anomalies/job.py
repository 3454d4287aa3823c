"""detect-anomalies: every minute, score the steps that closed since each detector's last run, and the open ones
provisionally.

A run claims the due detectors (enabled, not deleted, their lease expired), the least recently run first and ROUND
ROBIN over projects: each project's oldest detector, then each project's second... at most ``PER_PROJECT`` per
project per run, and it stops claiming work once ``series_budget`` series were scored or ``budget_s`` is spent. So
a project with hundreds of detectors (or of series) takes its share of a run, never the whole run. Claimed rows are
taken with ``FOR UPDATE SKIP LOCKED`` and leased (``claimed_until``): an overlapping run claims other detectors or
none. Each detector is written in ONE transaction fenced on the claim (the row locked, still holding this run's
lease, the cursor it read from, its generation and shard): a run whose lease expired and whose detector was taken
again writes nothing, so no point is ever scored twice. Unreached claims are handed back, and the next run resumes
oldest first. A detector over 1,000 series (the query engine's cap) is read and written a shard of its series at a
time (its labels' hash; ``page_*`` columns: a pass resumable shard by shard), up to MAX_SERIES_PER_DETECTOR. With
``overlap``, the writes go to a second connection (``_Writer``) while the main one reads and scores the next shard or
detector.

Per detector (``process``):

* the closed steps since the cursor ``processed_until`` (a step closes ``SETTLE`` after its end, for ingestion and
  the aggregation job to catch up), read with the metric query engine exactly as the query API and the ``metric``
  alert kind read them (filters, aggregation, group_by; step = the detector's interval; 1-minute and coarser
  rollups, raw points for the last minutes the aggregation job has not surely rolled up yet), under the project's
  tenancy. A new detector starts ``BACKFILL_STEPS`` steps back (its baseline warms at once); a detector far behind
  catches up ``MAX_STEPS_PER_RUN`` steps per run. Only the new steps and the short re-score horizon are read: the
  cost of a run grows with the number of series, never with their history;
* per series (its labels hashed into ``series_key``): the stored state, ``score_points(settings, state, new)``
  (the same fold as the backtest), the new state, the scored points into ``anomaly_points`` (one statement), the
  series' ``last_time``, ``anomalous``, ``algorithm`` and ``algorithm_reason``;
* the open steps (after the last settled one, up to the one holding ``now``): read from raw points with the rest,
  scored from the state after the settled steps, that state NOT kept; written marked ``provisional`` (their epochs
  kept in the state, ``open``: those no later run writes again are deleted). The run after a step settles scores
  it again from the kept state: the final point is what the backtest scores over the same points;
* events: an ``anomaly_events`` row opens when a series' ``is_anomaly`` turns true (started at the first point
  outside the band among the trigger window's points; ``anomaly.detected`` in the outbox, same transaction), its
  peak (score, time, expected, actual, direction) follows while open, and it closes when the series recovers;
* late data: the state kept per series is ``{"fold": state after the last point, "tail": the last HORIZON to
  2*HORIZON steps [epoch, value, outside]}``, and apart (column ``base``, read and written only when needed) the
  fold's state before the tail. Each run re-reads the horizon's steps too; a
  series one of whose tail steps changed (a late batch re-rolled a closed minute) or gained a value is re-scored
  from ``base`` over the tail (corrected) and the new steps: exactly what a run over the final values would have
  scored. Its points are rewritten from the first changed step on. Older than the horizon, a late point is not
  re-scored (documented lag). Events already announced are never withdrawn: a re-score can open, update or close
  an event from the corrected points on.

Then each touched project's open anomalies are correlated (``observai.anomalies.correlation.correlate`` when it
exists), and the sweep (observai.anomalies.sweep) deletes scored points expired or dropped by a reset, in bounded
batches.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from observai.anomalies.detection import Scored, ScoredPoint, score_points
from observai.anomalies.detector_models import MAX_SERIES_PER_DETECTOR
from observai.anomalies.detectors_store import count_series
from observai.db.connection import Cursor, tenant_transaction, transaction

ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)
# A step is scored once it ended this long ago: points arrive a few seconds late, the engine reads the minutes the
# aggregation job has not rolled up yet from raw points.
SETTLE = timedelta(seconds=60)
LEASE = timedelta(seconds=120)
# Claims per run per project (the round robin's depth), and the whole run's defaults.
PER_PROJECT = 20
DEFAULT_LIMIT = 500
DEFAULT_BUDGET_S = 40.0
DEFAULT_SERIES_BUDGET = 50_000
# Steps re-read every run for late data; the tail kept in the state holds HORIZON..2*HORIZON steps.
HORIZON = 10
# A new detector scores this many steps of history at once (capped by its window) so its baseline is warm.
BACKFILL_STEPS = 1440  # (twice the window, at most this)
# A detector behind by more catches up this many steps per run (it stays due: the next run goes on): 4 hours of a
# 1-minute detector, 240,000 points for 1,000 series, a few seconds.
MAX_STEPS_PER_RUN = 240
# The series of a detector are read and written a shard at a time when they are more than the metric query engine
# reads in one query (1,000): shards by the labels' hash of about this many each.
SHARD_SERIES = 800
# The open steps (not settled yet, the current one included) are scored provisionally when at most this many.
MAX_OPEN_STEPS = 5
# A detector whose last run is older than this is due for its open step even when no step closed (a 1-hour
# detector's open hour is scored again every minute).
OPEN_RESCORE = timedelta(seconds=50)
MAX_ERROR = 1000
STATE_VERSION = 1
# Two reads of the same step may differ in the last bits (raw points summed in another order than the rollup's
# sum): a tail value counts as changed only beyond this relative difference.
REL_TOLERANCE = 1e-9


class RunReport(BaseModel):
    detectors: int = 0  # detectors processed (written)
    series: int = 0  # series scored
    points: int = 0  # points scored (new and re-scored)
    rescored_series: int = 0  # series re-scored from their base for late data
    provisional: int = 0  # points of open steps scored provisionally (from raw points; not in ``points``)
    shards: int = 0  # shards of series written (a detector over SHARD_SERIES series is paged)
    events_opened: int = 0
    events_closed: int = 0
    errors: int = 0
    fenced: int = 0  # claimed, but taken by another run before this one wrote (its lease had expired)
    released: int = 0  # claimed, not reached within the budget: handed back
    pruned: int = 0  # scored points deleted by the sweep: expired, or of an older generation
    more_due: bool = False
    seconds: float = 0.0
    read_s: float = 0.0  # in the query engine
    score_s: float = 0.0  # in score_points
    write_s: float = 0.0  # in the write transactions


@dataclass
class Detector:
    id: UUID
    org_id: UUID
    project_id: UUID
    name: str
    query: dict[str, Any]
    interval_s: int
    settings: dict[str, Any]
    processed_until: datetime | None
    lease: datetime  # this run's claimed_until: the fence
    error: str | None = None
    generation: int = 0  # the points' generation (bumped by a reset: older points are invisible, then swept)
    page_shards: int | None = None  # a paged cycle in progress: its shards, the next one, its end
    page_next: int | None = None
    page_to: datetime | None = None


@dataclass
class _SeriesWork:
    key: str
    labels: dict[str, Any]
    points: list[tuple[int, float]]  # (slot epoch, value) read this run: horizon and new steps
    row: dict[str, Any] | None = None
    scored: list[ScoredPoint] = field(default_factory=list)
    result: Scored | None = None
    state: dict[str, Any] | None = None
    rescored: bool = False
    # plan_series
    stored: dict[str, Any] | None = None  # the stored state (fold, tail), None: a new series
    new: list[tuple[int, float]] = field(default_factory=list)  # the points after its last one
    first_changed: int | None = None  # the first tail step a late point changed (epoch)
    replay: list[tuple[int, float]] = field(default_factory=list)  # the corrected tail, to re-score from the base
    needs_base: bool = False
    base: dict[str, Any] | None = None  # the state before the tail (read only when needed)
    base_changed: bool = False
    open: list[tuple[int, float]] = field(default_factory=list)  # the open steps' values (raw points so far)
    provisional: list[ScoredPoint] = field(default_factory=list)  # the open steps scored (state not kept)
    stale: list[int] = field(default_factory=list)  # provisional points of earlier runs to delete (epochs)
    # what _write_series writes (score_series): the verdict of the last point (provisional ones included)
    anomalous: bool = False
    algorithm: str | None = None
    reason: str = ""
    last_time: datetime | None = None


# --- helpers -----------------------------------------------------------------------------------------------------


def _epoch(at: datetime) -> int:
    return math.floor((at - ORIGIN).total_seconds())


def _at(epoch_s: int) -> datetime:
    return ORIGIN + timedelta(seconds=epoch_s)


def series_key(labels: Mapping[str, Any]) -> str:
    """A series' key within its detector: a hash of its labels (sorted keys, JSON)."""
    text = json.dumps(dict(labels), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def closed_end(now: datetime, interval_s: int) -> datetime:
    """The end of the last step of ``interval_s`` (epoch-aligned) that closed by ``now`` (SETTLE after its end)."""
    return _at(_epoch(now - SETTLE) // interval_s * interval_s)


def detector_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The stored settings with their defaults filled, as the fold expects (DetectorSettings' model_dump)."""
    try:
        from observai.anomalies.settings_models import DetectorSettings
    except ImportError:  # pragma: no cover - the settings model comes with the algorithms
        return dict(raw)
    return DetectorSettings.model_validate(dict(raw)).model_dump()


def rls_claims(org_id: UUID, project_id: UUID, detector_id: UUID) -> dict[str, Any]:
    """A read-scoped API key of the detector's project: RLS shows the reads that project's rows only."""
    return {
        "role": "authenticated",
        "api_key": {"id": str(detector_id), "org_id": str(org_id), "project_id": str(project_id), "scopes": ["read"]},
    }


def _state_bytes(value: Any) -> bytes:
    """A fold state as stored in its bytea column: MessagePack (msgspec), binary float64s (exact, NaN and infinities
    included) in a few microseconds. Not jsonb: Postgres would parse every float into a numeric and build the jsonb
    tree for each of 10,000 series a minute, to keep a value nobody queries; nor JSON text (migration 0039): each
    float printed as up to 24 characters, and the json module's fallback for states holding a null (most of them)
    was the most of a run's write time (docs/anomalies-job.md, "Performance")."""
    import msgspec

    return msgspec.msgpack.encode(value)


def _state_of(stored: bytes | memoryview | None) -> dict[str, Any] | None:
    """A stored state: MessagePack, or JSON text (a map always starts with ``{`` there, never in MessagePack) as
    written before migration 0045."""
    if stored is None:
        return None
    raw = bytes(stored)
    if raw[:1] == b"{":
        import orjson

        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = json.loads(raw)  # NaN, Infinity
    else:
        import msgspec

        value = msgspec.msgpack.decode(raw)
    return value if isinstance(value, dict) else None


def error_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {message}"[:MAX_ERROR]


def _outside(p: ScoredPoint) -> bool:
    return (p.upper is not None and p.value > p.upper) or (p.lower is not None and p.value < p.lower)


def _direction(p: ScoredPoint) -> str:
    if p.expected is not None:
        return "above" if p.value >= p.expected else "below"
    return "above" if p.upper is not None and p.value > p.upper else "below"


# --- claiming ----------------------------------------------------------------------------------------------------


def claim(
    cur: Cursor, *, now: datetime, limit: int, per_project: int, project_ids: Sequence[UUID] | None = None
) -> list[Detector]:
    """Lease up to ``limit`` due detectors: ranked within their project by last run (never run first), then taken
    rank by rank across projects (round robin), at most ``per_project`` per project. Rows another run is claiming
    are skipped (SKIP LOCKED); its leased ones are not due."""
    scope = " and project_id = any(%(projects)s)" if project_ids is not None else ""
    # The lease is unique to this run (microseconds of a random id): the fence of its writes.
    lease = now + LEASE + timedelta(microseconds=uuid4().int % 1_000_000)
    cur.execute(
        "with ranked as (select id, project_id, last_run_at,"
        " row_number() over (partition by project_id order by last_run_at nulls first, id) as rn"
        " from public.anomaly_detectors"
        " where deleted_at is null and enabled and (claimed_until is null or claimed_until <= %(now)s)"
        # due: a step closed since the cursor (or never run), a paged cycle to go on with, or the open step to
        # score provisionally again (not run for most of a minute)
        " and (processed_until is null or page_shards is not null or last_run_at is null"
        " or last_run_at <= %(open_due)s or processed_until + make_interval(secs => interval_s)"
        " <= to_timestamp(floor(extract(epoch from %(settled)s::timestamptz) / interval_s) * interval_s))"
        f"{scope}),"
        " picked as (select id from ranked where rn <= %(per_project)s"
        " order by rn, last_run_at nulls first, id limit %(limit)s),"
        " locked as (select d.id from public.anomaly_detectors d join picked p on p.id = d.id"
        " where d.claimed_until is null or d.claimed_until <= %(now)s for update of d skip locked)"
        " update public.anomaly_detectors d set claimed_until = %(lease)s from locked where d.id = locked.id"
        " returning d.id, d.org_id, d.project_id, d.name, d.query, d.interval_s, d.settings, d.processed_until,"
        " d.last_run_at, d.generation, d.page_shards, d.page_next, d.page_to",
        {
            "now": now,
            "open_due": now - OPEN_RESCORE,
            "settled": now - SETTLE,
            "limit": limit,
            "per_project": per_project,
            "lease": lease,
            "projects": list(project_ids or []),
        },
    )
    rows = cur.fetchall()
    # The same round robin order for processing: each project's first, then each project's second...
    by_project: dict[UUID, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["last_run_at"] is not None, r["last_run_at"] or now, str(r["id"]))):
        by_project.setdefault(row["project_id"], []).append(row)
    ordered: list[dict[str, Any]] = []
    depth = max((len(v) for v in by_project.values()), default=0)
    for rank in range(depth):
        ordered.extend(group[rank] for group in by_project.values() if rank < len(group))
    return [
        Detector(
            id=r["id"],
            org_id=r["org_id"],
            project_id=r["project_id"],
            name=r["name"],
            query=dict(r["query"]),
            interval_s=int(r["interval_s"]),
            settings=dict(r["settings"]),
            processed_until=r["processed_until"],
            lease=lease,
            generation=int(r["generation"]),
            page_shards=r["page_shards"],
            page_next=r["page_next"],
            page_to=r["page_to"],
        )
        for r in ordered
    ]


def _release(detectors: Sequence[Detector]) -> int:
    if not detectors:
        return 0
    with transaction() as cur:
        cur.execute(
            "update public.anomaly_detectors d set claimed_until = null from unnest(%s::uuid[]) v(id)"
            " where d.id = v.id and d.claimed_until = %s",
            ([d.id for d in detectors], detectors[0].lease),
        )
        return cur.rowcount


# --- reading -----------------------------------------------------------------------------------------------------


def read_window(detector: Detector, now: datetime) -> tuple[datetime, datetime, datetime, bool]:
    """(read_from, new_from, to, more): the steps read this run, [read_from, to), of which [new_from, to) are new
    (the cursor on); the others are the horizon, re-read for late data. ``more``: the detector is behind."""
    step = detector.interval_s
    end = closed_end(now, step)
    if detector.page_to is not None and detector.page_shards is not None:
        end = min(end, detector.page_to)  # a paged cycle goes on over the steps it started with
    if detector.processed_until is None:
        window = int(detector.settings.get("window") or 60)
        backfill = min(BACKFILL_STEPS, max(window, 1) * 2)
        new_from = end - timedelta(seconds=step * backfill)
    else:
        new_from = _at(_epoch(detector.processed_until) // step * step)
    to = min(end, new_from + timedelta(seconds=step * MAX_STEPS_PER_RUN))
    read_from = new_from - timedelta(seconds=step * HORIZON) if detector.processed_until is not None else new_from
    return read_from, new_from, to, to < end


def open_end(detector: Detector, now: datetime, to: datetime) -> datetime:
    """The end of the open steps scored provisionally after ``to`` (the closed steps' end): the end of the step
    holding ``now``; ``to`` itself (none) when the detector is behind by more than MAX_OPEN_STEPS steps."""
    step = detector.interval_s
    end = _at((_epoch(now) // step + 1) * step)
    return end if end <= to + timedelta(seconds=step * MAX_OPEN_STEPS) else to


def _metric_query(detector: Detector, start: datetime, end: datetime) -> Any:
    from observai.metrics.query_models import MetricQuery

    return MetricQuery.model_validate(
        {
            "id": "anomalies",
            "name": detector.query["name"],
            "filters": detector.query.get("filters") or [],
            "from": start,
            "to": end,
            "step": detector.interval_s,
            "aggregation": detector.query.get("aggregation") or "avg",
            "group_by": detector.query.get("group_by") or [],
        }
    )


class TooManySeries(Exception):
    """A detector's query matches more than MAX_SERIES_PER_DETECTOR series (its last_error)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"The query matches more than {MAX_SERIES_PER_DETECTOR:,} series of {name!r}, the most one detector"
            " watches: add filters, or group_by fewer attributes"
        )


def matched_series(detector: Detector) -> int:
    """The metric series the detector's query matches, at most MAX_SERIES_PER_DETECTOR (else TooManySeries)."""
    with tenant_transaction(rls_claims(detector.org_id, detector.project_id, detector.id)) as cur:
        matched = count_series(cur, detector.project_id, detector.query, MAX_SERIES_PER_DETECTOR + 1)
    if matched > MAX_SERIES_PER_DETECTOR:
        raise TooManySeries(str(detector.query.get("name", "")))
    return matched


def read_points(
    detector: Detector, start: datetime, end: datetime, now: datetime, shard: tuple[int, int] | None = None
) -> list[tuple[dict, list]]:
    """The detector's query over [start, end) at its interval, under its project's tenancy: (labels, [(slot epoch,
    value)]) per series; ``shard`` (index, count): that shard of its series only."""
    from observai.metrics.query import Shard, _run_one, plan

    query = _metric_query(detector, start, end)
    loc = ["query"]
    part = Shard(*shard) if shard is not None and shard[1] > 1 else None
    with tenant_transaction(rls_claims(detector.org_id, detector.project_id, detector.id)) as cur:
        result = _run_one(cur, detector.project_id, query, plan(query, now, loc=loc), loc, part)
    return [(dict(s.labels), [(int(t), float(v)) for t, v in s.points]) for s in result.series]


# --- scoring -----------------------------------------------------------------------------------------------------


def _changed(old: float, new: float) -> bool:
    return abs(old - new) > REL_TOLERANCE * max(abs(old), abs(new), 1e-300)


def _advance_at(key: str) -> int:
    """Past this many tail steps the base folds over the oldest (HORIZON + 1 .. 2 * HORIZON, by series: a run does
    not advance every series at once)."""
    return HORIZON + 1 + int(key[:8], 16) % HORIZON


def plan_series(work: _SeriesWork) -> None:
    """Sort the points read for one series (``work.row`` loaded): the new ones (after its last point), and whether
    a tail step changed (late data: re-score from the base). Says whether the base must be read."""
    row = work.row
    stored: dict[str, Any] | None = row["state"] if row else None
    if stored is not None and stored.get("v") != STATE_VERSION:
        stored = None  # an unknown layout: start over (the baseline warms again)
    last_epoch = _epoch(row["last_time"]) if row and row["last_time"] is not None else None
    work.stored = stored
    if stored is None or last_epoch is None:
        work.new, work.stored = list(work.points), None
        work.needs_base = False
        return
    tail: list[list[Any]] = stored["tail"]
    tail_epochs = {int(e[0]): i for i, e in enumerate(tail)}
    tail_start = int(tail[0][0]) if tail else last_epoch + 1
    corrected = [list(e) for e in tail]
    extra: list[list[Any]] = []  # late values of tail steps that had none
    for t, v in work.points:
        if t > last_epoch:
            work.new.append((t, v))
        elif t >= tail_start:
            i = tail_epochs.get(t)
            if i is None:
                extra.append([t, v, 0])
            elif _changed(float(tail[i][1]), v):
                corrected[i][1] = v
            else:
                continue
            work.first_changed = t if work.first_changed is None else min(work.first_changed, t)
    if work.first_changed is not None:
        work.replay = [(int(e[0]), float(e[1])) for e in sorted(corrected + extra, key=lambda e: int(e[0]))]
        work.needs_base = True
    else:
        work.needs_base = bool(work.new) and len(tail) + len(work.new) > _advance_at(work.key)


def score_series(settings: Mapping[str, Any], work: _SeriesWork) -> None:
    """Score one planned series (its base loaded when needed) into ``work``: scored points, the new state and, when
    it moved, the new base; then its open steps, provisionally."""
    _score_closed(settings, work)
    _score_open(settings, work)


def _score_open(settings: Mapping[str, Any], work: _SeriesWork) -> None:
    """The open steps (their raw points so far) scored from the state after the closed ones, the state left as it
    is: the run after a step settles scores it again from its closed value (and the mark goes). The epochs of the
    provisional points written are kept in the state (``open``): those the next run does not write again go."""
    stored = work.stored
    fold = work.state["fold"] if work.state is not None else stored["fold"] if stored is not None else None
    if work.open and fold is not None:
        result = score_points(settings, fold, [(_at(t), v) for t, v in work.open])
        work.provisional = result.points
        work.anomalous = result.points[-1].is_anomaly
        work.algorithm, work.reason = result.algorithm, result.algorithm_reason
    earlier = (stored or {}).get("open") or []
    written = {_epoch(p.time) for p in work.scored} | {_epoch(p.time) for p in work.provisional}
    work.stale = [int(e) for e in earlier if int(e) not in written]
    if work.state is None and stored is not None and (work.provisional or earlier):
        work.state = {key: value for key, value in stored.items() if key != "open"}
        work.anomalous = bool(fold.get("anomalous")) if not work.provisional and fold is not None else work.anomalous
    if work.state is not None:
        work.state["open"] = [_epoch(p.time) for p in work.provisional]
        if stored is not None and stored.get("ended") is not None:
            work.state.setdefault("ended", stored["ended"])  # (_events)


def _score_closed(settings: Mapping[str, Any], work: _SeriesWork) -> None:
    stored = work.stored
    if work.first_changed is not None:
        # From base over the corrected tail, then the new steps: what a run over the final values scores.
        start, tail, points = work.base, [], [*work.replay, *work.new]
    elif not work.new:
        return
    elif stored is not None:
        start, tail, points = stored["fold"], stored["tail"], work.new
    else:
        start, tail, points = None, [], work.new
    result = score_points(settings, start, [(_at(t), v) for t, v in points])
    new_tail = tail + [[_epoch(p.time), p.value, 1 if _outside(p) else 0] for p in result.points]
    if len(new_tail) > _advance_at(work.key):
        drop = len(new_tail) - HORIZON
        old = new_tail[:drop]
        base = work.base if stored is not None else None  # a new series' base is the empty state
        work.base = score_points(settings, base, [(_at(int(e[0])), float(e[1])) for e in old]).state
        work.base_changed = True
        new_tail = new_tail[drop:]
    elif stored is None:
        work.base, work.base_changed = None, True
    work.state = {"v": STATE_VERSION, "fold": result.state, "tail": new_tail}
    scored = result.points
    if work.first_changed is not None:
        scored = [p for p in scored if _epoch(p.time) >= work.first_changed]
    work.scored = scored
    work.result = result
    work.rescored = work.first_changed is not None
    work.anomalous = result.points[-1].is_anomaly
    work.algorithm, work.reason = result.algorithm, result.algorithm_reason
    work.last_time = result.points[-1].time


# --- writing -----------------------------------------------------------------------------------------------------


def _fence(cur: Cursor, detector: Detector, shard: int = 0) -> bool:
    """Lock the detector if it is still this run's: its lease, the cursor it read from, its generation and the
    shard it is at (``page_next``: null before the first), still enabled and not deleted. Otherwise (taken again
    after this run's lease expired, reset, disabled, deleted) write nothing."""
    cur.execute(
        "select processed_until, generation, page_next from public.anomaly_detectors where id = %s"
        " and claimed_until = %s and deleted_at is null and enabled for update",
        (detector.id, detector.lease),
    )
    row = cur.fetchone()
    return (
        row is not None
        and row["processed_until"] == detector.processed_until
        and row["generation"] == detector.generation
        and row["page_next"] == (shard or None)
    )


def _load_series(cur: Cursor, detector: Detector, works: dict[str, _SeriesWork]) -> None:
    cur.execute(
        "select id, series_key, state, last_time, anomalous from public.anomaly_series"
        " where detector_id = %s and series_key = any(%s)",
        (detector.id, list(works)),
    )
    for row in cur.fetchall():
        row["state"] = _state_of(row["state"])
        works[row["series_key"]].row = row


def _load_bases(cur: Cursor, works: Sequence[_SeriesWork]) -> None:
    """The re-score bases of the series that need theirs (a late point, or their tail is folded into it)."""
    if not works:
        return
    cur.execute(
        "select id, base from public.anomaly_series where id = any(%s)",
        ([w.row["id"] for w in works],),  # type: ignore[index]
    )
    bases = {r["id"]: _state_of(r["base"]) for r in cur.fetchall()}
    for w in works:
        w.base = bases.get(w.row["id"])  # type: ignore[index]


def _insert_series(cur: Cursor, detector: Detector, works: Sequence[_SeriesWork]) -> None:
    fresh = [w for w in works if w.row is None and w.result is not None]
    if not fresh:
        return
    cur.execute(
        "insert into public.anomaly_series (org_id, project_id, detector_id, series_key, labels)"
        " select %s, %s, %s, k, l from unnest(%s::text[], %s::jsonb[]) v(k, l)"
        " on conflict (detector_id, series_key) do update set updated_at = now()"
        " returning id, series_key, state, last_time, anomalous",
        (detector.org_id, detector.project_id, detector.id, [w.key for w in fresh], [Jsonb(w.labels) for w in fresh]),
    )
    by_key = {w.key: w for w in fresh}
    for row in cur.fetchall():
        row["state"] = _state_of(row["state"])
        by_key[row["series_key"]].row = row


def _write_points(cur: Cursor, detector: Detector, works: Sequence[_SeriesWork]) -> int:
    ids: list[int] = []
    times: list[datetime] = []
    values: list[float] = []
    expected: list[float | None] = []
    lower: list[float | None] = []
    upper: list[float | None] = []
    scores: list[float] = []
    flags: list[bool] = []
    provisional: list[bool] = []
    stale_ids: list[int] = []
    stale_times: list[datetime] = []
    for w in works:
        if w.row is None:
            continue
        sid = w.row["id"]
        for p, mark in [*((p, False) for p in w.scored), *((p, True) for p in w.provisional)]:
            ids.append(sid)
            times.append(p.time)
            values.append(p.value)
            expected.append(p.expected)
            lower.append(p.lower)
            upper.append(p.upper)
            scores.append(min(1.0, max(0.0, p.score)))
            flags.append(p.is_anomaly)
            provisional.append(mark)
        for e in w.stale:
            stale_ids.append(sid)
            stale_times.append(_at(e))
    if stale_ids:
        # provisional points of earlier runs that no run writes again
        cur.execute(
            "delete from public.anomaly_points a using unnest(%s::bigint[], %s::timestamptz[]) v(s, t)"
            " where a.series_id = v.s and a.time = v.t and a.provisional",
            (stale_ids, stale_times),
        )
    if not ids:
        return 0
    cur.execute(
        "insert into public.anomaly_points as a (series_id, time, org_id, project_id, detector_id, value, expected,"
        " lower, upper, score, is_anomaly, provisional, generation)"
        " select v.s, v.t, %(org)s, %(project)s, %(detector)s, v.v, v.e, v.l, v.u, v.sc, v.a, v.p, %(generation)s"
        " from unnest(%(s)s::bigint[], %(t)s::timestamptz[], %(v)s::float8[], %(e)s::float8[], %(l)s::float8[],"
        " %(u)s::float8[], %(sc)s::float8[], %(a)s::bool[], %(p)s::bool[]) v(s, t, v, e, l, u, sc, a, p)"
        # a re-score (late data, a settled open step, a reset's backfill) rewrites its steps
        " on conflict (series_id, time) do update set value = excluded.value, expected = excluded.expected,"
        " lower = excluded.lower, upper = excluded.upper, score = excluded.score, is_anomaly = excluded.is_anomaly,"
        " provisional = excluded.provisional, generation = excluded.generation",
        {
            "org": detector.org_id,
            "project": detector.project_id,
            "detector": detector.id,
            "generation": detector.generation,
            "p": provisional,
            "s": ids,
            "t": times,
            "v": values,
            "e": expected,
            "l": lower,
            "u": upper,
            "sc": scores,
            "a": flags,
        },
    )
    return len(ids) - sum(provisional)


def _write_series(cur: Cursor, works: Sequence[_SeriesWork]) -> None:
    done = [w for w in works if w.state is not None and w.row is not None]
    if not done:
        return
    cur.execute(
        "update public.anomaly_series s set state = v.state, last_time = v.last_time, anomalous = v.anomalous,"
        # base only when it moved: left alone, its stored (TOAST) value is kept as it is, not written again
        " base = case when v.set_base then v.base else s.base end,"
        " algorithm = coalesce(v.algorithm, s.algorithm),"
        " algorithm_reason = coalesce(left(v.reason, 500), s.algorithm_reason), updated_at = now()"
        # the states as binary parameters: a text array of kB-long documents is escaped element by element
        " from unnest(%s::bigint[], %b::bytea[], %s::bool[], %b::bytea[], %s::timestamptz[], %s::bool[], %s::text[],"
        " %s::text[]) v(id, state, set_base, base, last_time, anomalous, algorithm, reason) where s.id = v.id",
        (
            [w.row["id"] for w in done],  # type: ignore[index]
            [_state_bytes(w.state) for w in done],
            [w.base_changed for w in done],
            [_state_bytes(w.base) if w.base_changed and w.base is not None else None for w in done],
            [_last_time(w) for w in done],
            [w.anomalous for w in done],
            [w.algorithm for w in done],
            [w.reason if w.algorithm is not None else None for w in done],
        ),
    )


def _last_time(work: _SeriesWork) -> datetime | None:
    stored = work.row["last_time"] if work.row is not None else None
    if work.last_time is None:
        return stored
    return work.last_time if stored is None else max(stored, work.last_time)


@dataclass
class _Event:
    id: UUID
    series_id: int
    labels: dict[str, Any]
    started_at: datetime
    peak: ScoredPoint | None  # None: the stored peak stands (an event opened by an earlier run)
    peak_score: float
    ended_at: datetime | None = None
    new: bool = False
    changed: bool = False


def _events(
    cur: Cursor, detector: Detector, settings: Mapping[str, Any], works: Sequence[_SeriesWork], now: datetime
) -> tuple[int, int]:
    """Open, update and close the series' anomaly events from their scored points; anomaly.detected per opened
    event in the outbox. Returns (opened, closed)."""
    from observai import outbox

    scored = [w for w in works if (w.scored or w.provisional) and w.row is not None]
    if not scored:
        return 0, 0
    cur.execute(
        "select id, series_id, started_at, peak_score from public.anomaly_events"
        " where detector_id = %s and status = 'open' and series_id = any(%s)",
        (detector.id, [w.row["id"] for w in scored]),  # type: ignore[index]
    )
    open_by_series = {
        r["series_id"]: _Event(r["id"], r["series_id"], {}, r["started_at"], None, float(r["peak_score"]))
        for r in cur.fetchall()
    }
    trigger_window = max(1, int(settings.get("trigger_window") or 3))
    touched: list[_Event] = []
    for w in scored:
        sid = w.row["id"]  # type: ignore[index]
        event = open_by_series.get(sid)
        # (epoch, outside) of the points before and including this run's: where an opening anomaly started.
        points = [*w.scored, *w.provisional]
        first = _epoch(points[0].time)
        stored = (w.row.get("state") or {}) if w.row else {}
        # A step scored again (settled after a provisional score, or late data) never opens an event again at or
        # before the end of the series' last closed one.
        ended = int(stored.get("ended") or -(2**62))
        old_tail = stored.get("tail") or []
        history: list[tuple[int, bool]] = [(int(e[0]), bool(e[2])) for e in old_tail if int(e[0]) < first]
        offset = len(history)
        history.extend((_epoch(p.time), _outside(p)) for p in points)
        for j, p in enumerate(points):
            if event is None or event.ended_at is not None:
                if not p.is_anomaly or _epoch(p.time) <= ended:
                    continue
                k = offset + j
                window = history[max(0, k - trigger_window + 1) : k + 1]
                start_epoch = next((t for t, out in window if out), _epoch(p.time))
                peak = max(
                    (q for q in points[: j + 1] if _epoch(q.time) >= start_epoch), key=lambda q: q.score, default=p
                )
                event = _Event(uuid4(), sid, w.labels, _at(start_epoch), peak, peak.score, new=True)
                touched.append(event)
            elif p.is_anomaly:
                if p.time >= event.started_at and p.score > event.peak_score:
                    event.peak, event.peak_score, event.changed = p, p.score, True
                    if event not in touched:
                        touched.append(event)
            elif p.time > event.started_at:
                event.ended_at, event.changed = p.time, True
                ended = _epoch(p.time)
                if w.state is not None:
                    w.state["ended"] = ended
                if event not in touched:
                    touched.append(event)
    opened = [e for e in touched if e.new]
    # Closed events first (a series closes one and opens the next in one run: one open event per series).
    updates = [e for e in touched if not e.new]
    closed_new = [e for e in opened if e.ended_at is not None]
    if updates:
        cur.execute(
            "update public.anomaly_events e set status = case when v.ended_at is null then 'open' else 'closed' end,"
            " ended_at = v.ended_at, peak_score = coalesce(v.peak_score, e.peak_score),"
            " peak_at = coalesce(v.peak_at, e.peak_at),"
            " expected_at_peak = case when v.peak_at is null then e.expected_at_peak else v.expected end,"
            " actual_at_peak = coalesce(v.actual, e.actual_at_peak), direction = coalesce(v.direction, e.direction),"
            " updated_at = now()"
            " from unnest(%s::uuid[], %s::timestamptz[], %s::float8[], %s::timestamptz[], %s::float8[],"
            " %s::float8[], %s::text[]) v(id, ended_at, peak_score, peak_at, expected, actual, direction)"
            " where e.id = v.id",
            (
                [e.id for e in updates],
                [e.ended_at for e in updates],
                [e.peak.score if e.peak else None for e in updates],
                [e.peak.time if e.peak else None for e in updates],
                [e.peak.expected if e.peak else None for e in updates],
                [e.peak.value if e.peak else None for e in updates],
                [_direction(e.peak) if e.peak else None for e in updates],
            ),
        )
    # Insert in order per series: an event opened and closed within this run before the one still open.
    for e in sorted(opened, key=lambda e: e.ended_at is None):
        assert e.peak is not None
        cur.execute(
            "insert into public.anomaly_events (id, org_id, project_id, detector_id, series_id, status, started_at,"
            " ended_at, peak_score, peak_at, expected_at_peak, actual_at_peak, direction, algorithm, labels)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                e.id, detector.org_id, detector.project_id, detector.id, e.series_id,
                "closed" if e.ended_at is not None else "open", e.started_at, e.ended_at,
                min(1.0, max(0.0, e.peak.score)), e.peak.time, e.peak.expected, e.peak.value, _direction(e.peak),
                e.peak.algorithm, Jsonb(e.labels),
            ),
        )  # fmt: skip
    if opened:
        outbox.emit_many(
            cur,
            [
                outbox.OutboxEvent(
                    org_id=detector.org_id,
                    project_id=detector.project_id,
                    type="anomaly.detected",
                    data=outbox.fit("anomaly.detected", detected_data(detector, e, now), now),
                    at=now,
                )
                for e in opened
            ],
        )
    closed = sum(1 for e in updates if e.ended_at is not None) + len(closed_new)
    return len(opened), closed


def detected_data(detector: Detector, event: _Event, now: datetime) -> dict[str, Any]:
    """The ``anomaly.detected`` data (observai.webhooks.events.AnomalyDetectedData) of an opened event."""
    peak = event.peak
    assert peak is not None
    expected = peak.expected if peak.expected is not None else peak.value
    return {
        "anomaly_id": str(event.id),
        "project_id": str(detector.project_id),
        "detector_id": str(detector.id),
        "detector_name": detector.name,
        "signal": "metrics",
        "series": str(detector.query.get("name", "")),
        "labels": {k: "" if v is None else str(v) for k, v in event.labels.items()},
        "window_start": event.started_at.isoformat(),
        "window_end": (peak.time + timedelta(seconds=detector.interval_s)).isoformat(),
        "observed": peak.value,
        "expected": expected,
        "lower": peak.lower,
        "upper": peak.upper,
        "score": min(1.0, max(0.0, peak.score)),
        "direction": _direction(peak),
        "severity": "critical" if peak.score >= 0.95 else "warning",
        "algorithm": peak.algorithm,
        "detected_at": now.isoformat(),
    }


def process(
    detector: Detector,
    now: datetime,
    report: RunReport,
    out_of_budget: Callable[[], bool] | None = None,
    writer: _Writer | None = None,
) -> bool:
    """Score one claimed detector's new steps (and its open steps, provisionally). Its series in one fenced
    transaction; or, over SHARD_SERIES series, a shard of them per transaction (a paged cycle over the same steps,
    resumable at ``page_next``: a run out of budget hands the detector back mid-cycle). Returns whether it is still
    behind (more steps, or shards, to go). With a ``writer``, each shard's write goes to its thread (a second
    connection) while this one prepares the next shard or detector; without, the write is done here."""
    settings = detector_settings(detector.settings)
    read_from, _new_from, to, behind = read_window(detector, now)
    if detector.page_shards is None:
        from observai.metrics.query import MAX_SERIES as ENGINE_MAX_SERIES

        matched = matched_series(detector)
        shards = 1 if matched <= ENGINE_MAX_SERIES else math.ceil(matched / SHARD_SERIES)
        first = 0
    else:
        matched, shards, first = -1, detector.page_shards, detector.page_next or 0
    opened_to = open_end(detector, now, to)
    for index in range(first, shards):
        if index > first and out_of_budget is not None and out_of_budget():
            if writer is not None:
                writer.wait()
            report.released += _release([detector])
            return True
        works = _prepare_shard(detector, settings, now, report, (index, shards), read_from, to, opened_to)
        write = _ShardWrite(detector, settings, now, report, (index, shards), works, to, matched)
        if writer is None:
            if not write():
                return False
        else:
            writer.submit(detector, write)
        matched = -1
    return behind


def _prepare_shard(
    detector: Detector,
    settings: Mapping[str, Any],
    now: datetime,
    report: RunReport,
    shard: tuple[int, int],
    read_from: datetime,
    to: datetime,
    opened_to: datetime,
) -> list[_SeriesWork]:
    """One shard's read and scoring: its points, its series' stored states (and bases when needed), scored. Reads
    only: a state read here is written only if the detector's fence holds at write time (its lease, cursor,
    generation and shard: nothing else writes its series meanwhile)."""
    started = time.perf_counter()
    read = read_points(detector, read_from, opened_to, now, shard) if read_from < opened_to else []
    report.read_s += time.perf_counter() - started
    closing = _epoch(to)
    works: dict[str, _SeriesWork] = {}
    for labels, points in read:
        key = series_key(labels)
        work = _SeriesWork(key, labels, [(t, v) for t, v in points if t < closing])
        work.open = [(t, v) for t, v in points if t >= closing]
        works[key] = work
    if not works:
        return []
    with transaction() as cur:
        _load_series(cur, detector, works)
        for w in works.values():
            plan_series(w)
        _load_bases(cur, [w for w in works.values() if w.needs_base])
    scoring = time.perf_counter()
    for w in works.values():
        score_series(settings, w)
    report.score_s += time.perf_counter() - scoring
    return list(works.values())


@dataclass
class _ShardWrite:
    """One shard's fenced write (the detector's cursor moves with the last shard). Called: False when fenced."""

    detector: Detector
    settings: Mapping[str, Any]
    now: datetime
    report: RunReport
    shard: tuple[int, int]
    works: list[_SeriesWork]
    to: datetime
    matched: int  # the series counted when the pass started (its first shard), else -1

    def __call__(self) -> bool:
        detector, report, now, listed = self.detector, self.report, self.now, self.works
        index, shards = self.shard
        started = time.perf_counter()
        with transaction() as cur:
            if not _fence(cur, detector, index):
                report.fenced += 1
                return False
            _insert_series(cur, detector, listed)
            report.points += _write_points(cur, detector, listed)
            report.provisional += sum(len(w.provisional) for w in listed)
            opened, closed = _events(cur, detector, self.settings, listed, now)
            _write_series(cur, listed)
            report.events_opened += opened
            report.events_closed += closed
            report.series += sum(1 for w in listed if w.result is not None or w.provisional)
            report.rescored_series += sum(1 for w in listed if w.rescored)
            report.shards += 1
            counted = {"matched": self.matched if self.matched >= 0 else None}
            if index + 1 >= shards:
                cur.execute(
                    "update public.anomaly_detectors set processed_until = %(to)s, last_run_at = %(now)s,"
                    " claimed_until = null, last_error = null, page_shards = null, page_next = null,"
                    " page_to = null, series_matched = coalesce(%(matched)s, series_matched) where id = %(id)s",
                    {"to": max(self.to, detector.processed_until or self.to), "now": now, "id": detector.id, **counted},
                )
            else:
                cur.execute(
                    "update public.anomaly_detectors set page_shards = %(shards)s, page_next = %(next)s,"
                    " page_to = %(to)s, series_matched = coalesce(%(matched)s, series_matched) where id = %(id)s",
                    {"shards": shards, "next": index + 1, "to": self.to, "id": detector.id, **counted},
                )
        if index + 1 >= shards:
            report.detectors += 1
        report.write_s += time.perf_counter() - started
        return True


class _Writer:
    """The writes of a run on a second connection, in a thread of their own, one at a time in order, while the
    main thread reads and scores the next shard or detector (the scoring is Python, the write mostly the
    database's time: they overlap). ``submit`` waits for the write before (at most one in flight); ``wait`` for the
    last. A write that fails records its detector's error (as when scoring fails); a detector fenced or failed
    writes nothing more in this run; a lost database ends the run."""

    def __init__(self, report: RunReport, now: datetime) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from observai.db.connection import own_connection

        self._report, self._now = report, now
        self._own = own_connection()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anomaly-writes", initializer=self._enter)
        self._pending: tuple[Detector, Any] | None = None
        self.stopped: set[UUID] = set()  # detectors fenced or failed: nothing more written for them
        self.scheduled = 0  # series submitted (the run's series budget counts them before they are written)

    def _enter(self) -> None:
        self._own.__enter__()  # in the writer thread: its transactions on its own connection

    def submit(self, detector: Detector, write: _ShardWrite) -> None:
        self.wait()
        if detector.id in self.stopped:
            return
        self.scheduled += sum(1 for w in write.works if w.result is not None or w.provisional)
        self._pending = (detector, self._pool.submit(write))

    def wait(self) -> None:
        if self._pending is None:
            return
        detector, future = self._pending
        self._pending = None
        try:
            if not future.result():
                self.stopped.add(detector.id)
        except Exception as exc:
            from observai.db.breaker import is_connection_failure

            if is_connection_failure(exc):
                raise
            self.stopped.add(detector.id)
            self._report.errors += 1
            _record_error(detector, exc, self._now)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.submit(self._own.__exit__, None, None, None).result()
            self._pool.shutdown(wait=True)


def _record_error(detector: Detector, exc: BaseException, now: datetime) -> None:
    """The detector's error (shown by the API), its run time (it goes to the back of the queue), its lease ended;
    its cursor stays, so fixing the cause resumes where it stopped."""
    # Too many series: the paged cycle (if any) starts again, counting them, at the next run.
    restart = isinstance(exc, TooManySeries) or getattr(exc, "code", None) == "too_many_series"
    with transaction() as cur:
        cur.execute(
            "update public.anomaly_detectors set last_error = %s, last_run_at = %s, claimed_until = null,"
            " page_shards = case when %s then null else page_shards end,"
            " page_next = case when %s then null else page_next end,"
            " page_to = case when %s then null else page_to end"
            " where id = %s and claimed_until = %s",
            (error_text(exc), now, restart, restart, restart, detector.id, detector.lease),
        )


def _correlate(project_ids: Sequence[UUID], now: datetime) -> None:
    """Group each touched project's anomalies (the API helper's ``correlation.correlate``, when present)."""
    try:
        from observai.anomalies.correlation import correlate  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return
    from observai.db.breaker import is_connection_failure
    from observai.observability import logger

    for project_id in project_ids:
        try:
            with transaction() as cur:
                correlate(cur, project_id, now)
        except Exception as exc:
            if is_connection_failure(exc):
                raise
            # The events are stored: their grouping is retried at the project's next run.
            logger.exception("anomaly correlation failed", extra={"project_id": str(project_id)})


def run(
    now: datetime | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    budget_s: float = DEFAULT_BUDGET_S,
    series_budget: int = DEFAULT_SERIES_BUDGET,
    per_project: int = PER_PROJECT,
    project_ids: Sequence[UUID] | None = None,
    overlap: bool = False,
) -> RunReport:
    """One bounded detect-anomalies run at ``now`` (injected by tests; default the clock), then a bounded sweep of
    expired and dropped scored points (observai.anomalies.sweep; of ``project_ids`` only when given). ``overlap``:
    the writes on a second connection while the next shard is scored (``_Writer``). Off by default: measured on the
    development machine (Postgres on the same two cores) it gained nothing (docs/anomalies-job.md, "Performance");
    it is there to measure against a database on its own machine, where a write is mostly waiting."""
    from observai.db.breaker import is_connection_failure

    clock = time.perf_counter()
    now = now or datetime.now(UTC)
    report = RunReport()

    with transaction() as cur:
        detectors = claim(cur, now=now, limit=limit, per_project=per_project, project_ids=project_ids)
    writer = _Writer(report, now) if overlap and detectors else None

    def out_of_budget() -> bool:
        scored = max(report.series, writer.scheduled if writer is not None else 0)
        return time.perf_counter() - clock > budget_s or scored >= series_budget

    touched: list[UUID] = []
    try:
        for i, detector in enumerate(detectors):
            if out_of_budget():
                report.released += _release(detectors[i:])
                report.more_due = True
                break
            try:
                if process(detector, now, report, out_of_budget, writer):
                    report.more_due = True
            except Exception as exc:
                if is_connection_failure(exc):
                    raise  # the database is gone: the leases expire, the next run resumes
                if writer is not None:
                    writer.wait()  # its write before (this detector's earlier shard, or another's) first
                    writer.stopped.add(detector.id)
                report.errors += 1
                _record_error(detector, exc, now)
                continue
            if detector.project_id not in touched:
                touched.append(detector.project_id)
    finally:
        if writer is not None:
            writer.close()
    if len(detectors) >= limit:
        report.more_due = True
    _correlate(touched, now)
    from observai.anomalies.sweep import sweep

    swept = sweep(now, project_ids=project_ids, max_seconds=max(0.0, budget_s - (time.perf_counter() - clock)))
    report.pruned += swept.deleted
    report.seconds = time.perf_counter() - clock
    return report
