"""Log search, the severity histogram and a line's context, read as the caller (RLS on).

Search is newest first with keyset pagination on (time, id), and its cost is bounded whatever the query:

* Every search first reads a window of the newest lines (below), where common values fill the page.
* Queries with free text (a top-level word, phrase or OR of them) then ask ``private.log_search_candidates``
  for the newest (time, id) of lines matching the text: it reads the GIN ``search`` index, which Row Level
  Security would otherwise forbid (see migrations/0012_logs_search.sql). The candidates' rows are then read
  under RLS and the whole condition applied. The batch grows (page size, then ×4) while other conditions
  reject candidates.
* Other queries go on reading windows of the newest lines (5 000 rows, then sized to the time left) through
  the (project_id, time) or (project_id, service, time) index, testing the condition on each: a common value
  fills the page from the first window; ``service:``, ``trace_id:`` and ``span_id:`` equalities narrow the
  index scan itself.
* Rounds stop when the page is full, the range is exhausted, or the time budget (setting
  ``log_search_budget_ms``, 75 ms) has passed: then the page may
  hold fewer than ``limit`` lines and its ``next_cursor`` continues where the scan stopped. A rare value in a
  long range is searched over several pages instead of one slow request.
"""

from __future__ import annotations

import math
import time as clock
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from observai.auth.principal import Principal
from observai.config import get_settings
from observai.db.connection import Cursor, tenant_transaction
from observai.errors import InvalidInput, NotFound, Unprocessable
from observai.logs.models import HistogramBucket, LevelCounts, LogContext, LogHistogram, LogItem
from observai.logs.query_language import (
    LEVELS,
    And,
    FieldTerm,
    Node,
    Or,
    Text,
    compile_node,
    parse,
)
from observai.logs.volume_histogram import VOLUME_HISTOGRAM_SQL, volume_filter
from observai.pagination import decode_cursor, encode_cursor
from observai.tenancy.access import authorize_telemetry

DEFAULT_RANGE = timedelta(hours=1)
MAX_RANGE = timedelta(days=31)
FIRST_WINDOW = 5_000
MIN_WINDOW = 1_000
MAX_WINDOW = 80_000
MAX_CANDIDATES = 10_000  # per round (the database function caps it too)
DEFAULT_CONTEXT = 20
MAX_CONTEXT = 100
CONTEXT_SPAN = timedelta(days=1)  # context lines are looked for this far before and after
DEFAULT_BUCKETS = 60
MAX_BUCKETS = 500
BUCKET_WIDTHS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_COLUMNS = (
    "id, time, observed_time, severity_number, severity_text, service, body, attributes, resource, trace_id, span_id"
)
_INDEXED_FIELDS = ("service", "trace_id", "span_id")  # btree-indexed text equality (leakproof: usable under RLS)


class LogCursor(BaseModel):
    """The next page starts strictly before (ts, id); ``start`` keeps a default range fixed across pages."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    ts: AwareDatetime
    id: int = Field(ge=0, lt=2**63)
    start: AwareDatetime


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def resolve_range(
    from_: datetime | None, to: datetime | None, now: datetime, default: timedelta = DEFAULT_RANGE
) -> TimeRange:
    """[from, to): ``to`` defaults to now, ``from`` to ``to`` - 1 h; times without an offset are UTC."""
    end = _utc(to) if to is not None else now
    start = _utc(from_) if from_ is not None else end - default
    if start >= end:
        raise InvalidInput(
            "from must be before to",
            code="invalid_range",
            details={"loc": ["query", "from"], "from": start.isoformat(), "to": end.isoformat()},
        )
    if end - start > MAX_RANGE:
        raise InvalidInput(
            f"The range is at most {MAX_RANGE.days} days",
            code="range_too_long",
            details={"loc": ["query", "from"], "max_days": MAX_RANGE.days},
        )
    return TimeRange(start, end)


# --- planning from the syntax tree -------------------------------------------------------------------------------


def _conjuncts(node: Node | None) -> tuple[Node, ...]:
    if node is None:
        return ()
    return node.children if isinstance(node, And) else (node,)


def _tsquery(node: Node, params: dict[str, Any]) -> sql.Composable | None:
    """The tsquery expression equivalent to a text-only subtree (words, phrases, AND, OR); None otherwise."""
    if isinstance(node, Text) or (isinstance(node, FieldTerm) and node.field == "body" and node.value):
        name = f"lqt{len(params)}"
        if isinstance(node, Text) and node.prefix:
            params[name] = node.value.lower() + ":*"  # letters, digits, underscores only (checked when parsed)
            return sql.SQL("to_tsquery('simple', {})").format(sql.Placeholder(name))
        params[name] = node.value
        return sql.SQL("phraseto_tsquery('simple', {})").format(sql.Placeholder(name))
    if isinstance(node, And | Or):
        parts = [_tsquery(child, params) for child in node.children]
        if any(part is None for part in parts):
            return None
        joiner = sql.SQL(" && ") if isinstance(node, And) else sql.SQL(" || ")
        return sql.SQL("({})").format(joiner.join(part for part in parts if part is not None))
    return None


def text_index_query(node: Node | None) -> tuple[sql.Composable | None, dict[str, Any]]:
    """A tsquery every match satisfies (the top-level text conditions AND-ed), to read the GIN index with."""
    params: dict[str, Any] = {}
    parts = [part for part in (_tsquery(c, params) for c in _conjuncts(node)) if part is not None]
    if not parts:
        return None, {}
    return sql.SQL(" && ").join(parts), params


def index_conditions(node: Node | None) -> tuple[sql.Composable, dict[str, Any]]:
    """``and l.service = …`` for top-level equalities on btree-indexed columns: they narrow the index scan."""
    params: dict[str, Any] = {}
    parts: list[sql.Composable] = []
    for child in _conjuncts(node):
        if (
            isinstance(child, FieldTerm)
            and child.field in _INDEXED_FIELDS
            and child.op == ":"
            and child.value is not None
            and not child.prefix
        ):
            name = f"lqi{len(params)}"
            params[name] = child.value.lower() if child.field != "service" else child.value
            parts.append(sql.SQL(" and l.{} = {}").format(sql.Identifier(child.field), sql.Placeholder(name)))
    return sql.Composed(parts), params


# --- search ------------------------------------------------------------------------------------------------------

_WINDOW_SQL = """
select {columns}, ({where}) as hit, (w.rn = %(window)s) as edge from (
    select l.*, row_number() over (order by l.time desc, l.id desc) as rn
    from public.logs l
    where l.project_id = %(project)s{index} and l.time >= %(start)s and l.time < %(end)s
      and l.time <= %(pos_ts)s and (l.time, l.id) < (%(pos_ts)s, %(pos_id)s)
    order by l.time desc, l.id desc
    limit %(window)s
) w
where ({where}) or w.rn = %(window)s
order by w.time desc, w.id desc
limit %(want)s
"""

_CANDIDATES_SQL = """
with c as materialized (
    select m.log_time, m.log_id
    from private.log_search_candidates(%(project)s, {tsquery}, %(start)s, %(pos_ts)s, %(pos_id)s, %(cap)s) m
)
select s.n as candidates, e.log_time as oldest_time, e.log_id as oldest_id, r.*
from (select count(*) as n from c) s
left join lateral (select c.log_time, c.log_id from c order by c.log_time, c.log_id limit 1) e on true
left join lateral (
    select {columns} from c join public.logs on project_id = %(project)s and time = c.log_time and id = c.log_id
    where time >= %(start)s and time < %(end)s and ({where})
    order by time desc, id desc
    limit %(want)s
) r on true
order by r.time desc, r.id desc
"""


@dataclass
class _Scan:
    """Where a search stands: rows found so far, and the position (exclusive) below which it goes on."""

    rows: list[dict[str, Any]]
    pos_ts: datetime
    pos_id: int
    exhausted: bool = False


def _window_rounds(
    cur: Cursor,
    node: Node | None,
    where: sql.Composable,
    params: dict[str, Any],
    scan: _Scan,
    want: int,
    deadline: float,
    max_rounds: int = 1_000,
) -> None:
    index_sql, index_params = index_conditions(node)
    statement = sql.SQL(_WINDOW_SQL).format(columns=sql.SQL(_COLUMNS), where=where, index=index_sql)
    window = FIRST_WINDOW
    for _ in range(max_rounds):
        started = clock.monotonic()
        cur.execute(
            statement,
            {**params, **index_params, "window": window, "want": want - len(scan.rows) + 1,
             "pos_ts": scan.pos_ts, "pos_id": scan.pos_id},
        )  # fmt: skip
        found = cur.fetchall()
        scan.rows.extend(row for row in found if row["hit"])
        edge = next((row for row in found if row["edge"]), None)
        if len(scan.rows) >= want:
            return
        if edge is None:  # the window reached the start of the range
            scan.exhausted = True
            return
        scan.pos_ts, scan.pos_id = edge["time"], edge["id"]
        finished = clock.monotonic()
        if finished >= deadline:
            return
        # The next window: as many rows as the last round's pace fits in the time left (doubling at most).
        per_row = max(finished - started, 1e-6) / window
        window = int(min(window * 2, MAX_WINDOW, max(MIN_WINDOW, (deadline - finished) / per_row)))


def _candidate_rounds(
    cur: Cursor,
    tsquery: sql.Composable,
    where: sql.Composable,
    params: dict[str, Any],
    scan: _Scan,
    want: int,
    deadline: float,
    text_only: bool,
) -> None:
    statement = sql.SQL(_CANDIDATES_SQL).format(columns=sql.SQL(_COLUMNS), where=where, tsquery=tsquery)
    # Text alone: the candidates are the results. With other conditions: a bigger batch, growing.
    cap = want if text_only else max(want, 200)
    while True:
        cur.execute(
            statement,
            {**params, "cap": cap, "want": want - len(scan.rows), "pos_ts": scan.pos_ts, "pos_id": scan.pos_id},
        )
        found = cur.fetchall()
        scan.rows.extend(row for row in found if row["id"] is not None)
        head = found[0]
        if len(scan.rows) >= want:
            return
        if head["candidates"] < cap:
            scan.exhausted = True
            return
        scan.pos_ts, scan.pos_id = head["oldest_time"], head["oldest_id"]
        if clock.monotonic() >= deadline:
            return
        cap = min(cap * 4, MAX_CANDIDATES)


def search_logs(
    principal: Principal,
    project_id: UUID,
    q: str | None,
    from_: datetime | None,
    to: datetime | None,
    cursor: str | None,
    limit: int,
    *,
    now: datetime | None = None,
) -> tuple[list[LogItem], str | None]:
    """A page of the project's log lines matching ``q`` in [from, to), newest first, and the next cursor."""
    started = clock.monotonic()
    node = parse(q or "")
    log_filter = compile_node(node)
    after = decode_cursor(cursor, LogCursor)
    window = resolve_range(from_ if from_ is not None or after is None else after.start, to, now or datetime.now(UTC))
    want = limit + 1
    scan = _Scan([], after.ts, after.id) if after else _Scan([], window.end, 0)
    params: dict[str, Any] = {**log_filter.params, "project": project_id, "start": window.start, "end": window.end}
    tsquery, tsquery_params = text_index_query(node)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        deadline = started + get_settings().log_search_budget_ms / 1000
        # One window of the newest lines first: common words fill the page there, cheaper than the index.
        _window_rounds(cur, node, log_filter.where, params, scan, want, deadline, 1 if tsquery is not None else 1_000)
        if tsquery is not None and len(scan.rows) < want and not scan.exhausted:
            text_only = all(_tsquery(c, {}) is not None for c in _conjuncts(node))
            _candidate_rounds(
                cur, tsquery, log_filter.where, {**params, **tsquery_params}, scan, want, deadline, text_only
            )
    rows = scan.rows[:want]
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor: str | None = encode_cursor(LogCursor(ts=last["time"], id=last["id"], start=window.start))
    elif scan.exhausted:
        next_cursor = None
    else:  # stopped early (time budget): continue below the last position examined
        next_cursor = encode_cursor(LogCursor(ts=scan.pos_ts, id=scan.pos_id, start=window.start))
    return [LogItem.from_row(row) for row in rows], next_cursor


# --- histogram ---------------------------------------------------------------------------------------------------


def bucket_width(span: timedelta, buckets: int) -> int:
    """The smallest round width (1 s … 1 day, then whole days) giving at most ``buckets`` buckets."""
    wanted = max(1, math.ceil(span.total_seconds() / buckets))
    for width in BUCKET_WIDTHS_S:
        if width >= wanted:
            return width
    return math.ceil(wanted / 86400) * 86400


_TEXT_HISTOGRAM_SQL = """
select t.bucket, t.level, sum(t.n)::bigint as n
from private.log_text_histogram(%(project)s, {tsquery}, %(start)s, %(end)s, %(width)s) t
where ({where})
group by 1, 2
"""


# A free-text histogram counts its lines through the full-text index, then reads each matching line for its time,
# service and level: one heap page a line. Past SAMPLE_ABOVE matching lines (the planner's estimate), that is most of
# the table's pages (5 M lines, 24 h, "timeout" in 4 %: 200,000 lines on 165,000 pages, 0.9 to 2 s): such a query
# is counted on an even sample instead, a fraction of each bucket's time in SAMPLE_SLICES slices, read through the
# (project_id, time) index, and scaled up; the answer says so (exact: false, sample_fraction). The fraction is
# MAX_SAMPLE_FRACTION, or less over a range of more than SAMPLE_LINES / MAX_SAMPLE_FRACTION lines: about
# SAMPLE_LINES lines are read whatever the range.
SAMPLE_ABOVE = 20_000
MAX_SAMPLE_FRACTION = 1 / 16
SAMPLE_LINES = 200_000
SAMPLE_SLICES = 4  # per bucket

_ESTIMATE_SQL = """
explain (format json) select 1 from public.logs
where project_id = %(project)s and time >= %(start)s and time < %(end)s and ({where})
"""

_SAMPLED_HISTOGRAM_SQL = """
select s.bucket, c.level, sum(c.n)::bigint as n
from unnest(%(slice_buckets)s::timestamptz[], %(slice_starts)s::timestamptz[], %(slice_ends)s::timestamptz[])
     as s(bucket, lo, hi)
cross join lateral (
    select least((severity_number + 3) / 4, 6) as level, count(*) as n
    from public.logs
    where project_id = %(project)s and time >= s.lo and time < s.hi and ({where})
      and time >= %(start)s and time < %(end)s  -- the range again: its partitions only, pruned when planned
    group by 1
) c
group by 1, 2
"""


def _estimated_lines(cur: Cursor, where: sql.Composable, params: dict[str, Any]) -> float:
    """The planner's estimate of the lines of the range satisfying ``where`` (the tsvector's statistics for words)."""
    cur.execute(sql.SQL(_ESTIMATE_SQL).format(where=where), params)
    row = cur.fetchone()
    assert row is not None
    plan = next(iter(row.values()))
    return float(plan[0]["Plan"]["Plan Rows"])


def _matches(tsquery: sql.Composable) -> sql.Composable:
    """The lines the full-text index gives for ``tsquery``: what the exact count reads, whatever else the query
    asks (its service and level terms are applied to the index's answer)."""
    return sql.SQL("search @@ ({})").format(tsquery)


def sample_fraction(lines_in_range: float) -> float:
    """The share of each bucket's time a sampled histogram reads: about SAMPLE_LINES lines, at most 1/16."""
    return min(MAX_SAMPLE_FRACTION, SAMPLE_LINES / max(lines_in_range, 1.0))


@dataclass(frozen=True, slots=True)
class _Sample:
    buckets: list[datetime]
    starts: list[datetime]
    ends: list[datetime]
    scale: dict[datetime, float]  # per bucket: its time in the range / its sampled time
    fraction: float


def sample_slices(first: datetime, width: int, window: TimeRange, fraction: float = MAX_SAMPLE_FRACTION) -> _Sample:
    """SAMPLE_SLICES evenly spaced slices of each bucket, ``fraction`` of its time, clipped to the range."""
    buckets, starts, ends, scale = [], [], [], {}
    step = timedelta(seconds=width / SAMPLE_SLICES)
    length = step * fraction
    bucket = first
    while bucket < window.end:
        covered = min(bucket + timedelta(seconds=width), window.end) - max(bucket, window.start)
        sampled = timedelta(0)
        for i in range(SAMPLE_SLICES):
            lo = bucket + i * step + (step - length) / 2
            lo, hi = max(lo, window.start), min(lo + length, window.end)
            if lo < hi:
                buckets.append(bucket)
                starts.append(lo)
                ends.append(hi)
                sampled += hi - lo
        if sampled:
            scale[bucket] = covered / sampled
        bucket += timedelta(seconds=width)
    return _Sample(buckets, starts, ends, scale, fraction)


def _text_terms(node: Node | None) -> list[Node]:
    if isinstance(node, Text) or (isinstance(node, FieldTerm) and node.field == "body" and node.value):
        return [node]
    if isinstance(node, And | Or):
        return [term for child in node.children for term in _text_terms(child)]
    return []


def _all_words_searchable(cur: Cursor, node: Node | None) -> bool:
    """Whether every text term of the query gives a non-empty tsquery. One that gives none (``_``: no token)
    matches no line as a condition, but vanishes from an AND/OR of tsqueries: such rare queries are counted
    line by line, so the full-text count always equals the condition's."""
    params: dict[str, Any] = {}
    parts = [_tsquery(term, params) for term in _text_terms(node)]
    checks = sql.SQL(" and ").join(sql.SQL("numnode({}) > 0").format(p) for p in parts if p is not None)
    cur.execute(sql.SQL("select {} as ok").format(checks), params)
    row = cur.fetchone()
    return bool(row and row["ok"])


def _floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def _ceil_minute(value: datetime) -> datetime:
    floor = _floor_minute(value)
    return floor if floor == value else floor + timedelta(minutes=1)


def histogram(
    principal: Principal,
    project_id: UUID,
    q: str | None,
    from_: datetime | None,
    to: datetime | None,
    buckets: int,
    *,
    now: datetime | None = None,
) -> LogHistogram:
    """Counts per severity level over time buckets (aligned to the width from the epoch), for the same query.

    Exact, but for a free-text query matching very many lines (``SAMPLE_ABOVE``): then an estimate, which the
    answer says (``exact``: false). From the pre-aggregated volume (observai.logs.volume) when the query only names
    services and whole levels and buckets are whole minutes: the whole minutes of the range from there, its partial
    first and last minutes from the lines. Free text (AND-ed with service and level terms only) through the full-text
    index (``private.log_text_histogram``, migration 0014). Otherwise by counting the matching lines. Counts
    take at most ``log_histogram_budget_ms``: past it, a 422 ``histogram_range_too_broad`` asks for a narrower
    range (never a 503).
    """
    node = parse(q or "")
    log_filter = compile_node(node)
    window = resolve_range(from_, to, now or datetime.now(UTC))
    width = bucket_width(window.end - window.start, buckets)
    first = EPOCH + timedelta(seconds=(window.start - EPOCH).total_seconds() // width * width)
    params: dict[str, Any] = {
        **log_filter.params,
        "width": timedelta(seconds=width),
        "origin": EPOCH,
        "project": project_id,
        "start": window.start,
        "end": window.end,
    }
    from_volume = volume_filter(node) if width % 60 == 0 else None
    whole_start, whole_end = _ceil_minute(window.start), _floor_minute(window.end)
    tsquery, tsquery_params = text_index_query(node)
    # Free text AND-ed with service and level terms only: counted through the full-text index.
    rest = [c for c in _conjuncts(node) if _tsquery(c, {}) is None]
    text_rest = volume_filter(And(tuple(rest)) if len(rest) > 1 else (rest[0] if rest else None))
    row_scan = sql.SQL(
        "select date_bin(%(width)s, time, %(origin)s) as bucket, least((severity_number + 3) / 4, 6) as level,"
        " count(*) as n from public.logs"
        " where project_id = %(project)s and time >= %(start)s and time < %(end)s and ({where})"
        " group by 1, 2"
    ).format(where=log_filter.where)
    statement, by_text_index, sample = row_scan, False, None
    if from_volume is not None and whole_start < whole_end:
        volume_where, volume_params = from_volume
        statement = sql.SQL(VOLUME_HISTOGRAM_SQL).format(volume_where=volume_where, where=log_filter.where)
        params.update(volume_params, vstart=whole_start, vend=whole_end)
    elif tsquery is not None and text_rest is not None:
        rest_where, rest_params = text_rest
        statement = sql.SQL(_TEXT_HISTOGRAM_SQL).format(tsquery=tsquery, where=rest_where)
        params.update(tsquery_params, **rest_params)
        by_text_index = True
    settings = get_settings()
    budget_ms = min(settings.log_histogram_budget_ms, settings.db_statement_timeout_ms)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        if by_text_index and not _all_words_searchable(cur, node):
            statement = row_scan
        elif by_text_index and tsquery is not None and _estimated_lines(cur, _matches(tsquery), params) > SAMPLE_ABOVE:
            fraction = sample_fraction(_estimated_lines(cur, sql.SQL("true"), params))
            sample = sample_slices(first, width, window, fraction)
            statement = sql.SQL(_SAMPLED_HISTOGRAM_SQL).format(where=log_filter.where)
            params.update(slice_buckets=sample.buckets, slice_starts=sample.starts, slice_ends=sample.ends)
        # Whichever timeout cancels the count, the caller gets the 422 below, never a 503.
        cur.execute("select set_config('statement_timeout', %s, true)", (str(budget_ms),))
        try:
            cur.execute(statement, params)
        except psycopg.errors.QueryCanceled as exc:
            raise Unprocessable(
                "Counting the lines matching this query over this range takes too long:"
                " narrow the time range, or filter by service: and severity: only (those histograms are precomputed)",
                code="histogram_range_too_broad",
                details={
                    "loc": ["query", "from"],
                    "budget_ms": budget_ms,
                    "from": window.start.isoformat(),
                    "to": window.end.isoformat(),
                },
            ) from exc
        found = cur.fetchall()
    slots = math.ceil((window.end - first).total_seconds() / width)
    counts: list[dict[str, int]] = [dict.fromkeys(LEVELS, 0) for _ in range(slots)]
    totals = dict.fromkeys(LEVELS, 0)
    for row in found:
        slot = int((row["bucket"] - first).total_seconds() // width)
        level = LEVELS[max(0, int(row["level"]))]
        n = row["n"] if sample is None else round(row["n"] * sample.scale[row["bucket"]])
        counts[slot][level] += n
        totals[level] += n
    return LogHistogram(
        start=first,
        end=window.end,
        bucket_seconds=width,
        total=sum(totals.values()),
        counts=LevelCounts(**totals),
        buckets=[
            HistogramBucket(start=first + timedelta(seconds=i * width), total=sum(c.values()), counts=LevelCounts(**c))
            for i, c in enumerate(counts)
        ],
        exact=sample is None,
        sample_fraction=None if sample is None else sample.fraction,
    )


# --- context -----------------------------------------------------------------------------------------------------


def context(principal: Principal, project_id: UUID, log_id: int, before: int, after: int) -> LogContext:
    """The line, and up to ``before``/``after`` lines of the same service around it (by time, id; within a day)."""
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        # The BRIN index on id narrows this to a few pages per partition.
        cur.execute(
            f"select {_COLUMNS} from public.logs where project_id = %s and id = %s limit 1", (project_id, log_id)
        )
        anchor = cur.fetchone()
        if anchor is None:
            raise NotFound("Log line not found", details={"log_id": str(log_id)})
        # Equality or IS NULL, never IS NOT DISTINCT FROM: both use the (project_id, service, time) index.
        same_service = "service is null" if anchor["service"] is None else "service = %(service)s"
        params = {
            "project": project_id,
            "service": anchor["service"],
            "ts": anchor["time"],
            "id": anchor["id"],
            "low": anchor["time"] - CONTEXT_SPAN,
            "high": anchor["time"] + CONTEXT_SPAN,
            "before": before,
            "after": after,
        }
        cur.execute(
            f"select {_COLUMNS} from public.logs where project_id = %(project)s and {same_service}"
            " and time >= %(low)s and time <= %(ts)s and (time, id) < (%(ts)s, %(id)s)"
            " order by time desc, id desc limit %(before)s",
            params,
        )
        earlier = cur.fetchall()
        cur.execute(
            f"select {_COLUMNS} from public.logs where project_id = %(project)s and {same_service}"
            " and time >= %(ts)s and time <= %(high)s and (time, id) > (%(ts)s, %(id)s)"
            " order by time, id limit %(after)s",
            params,
        )
        later = cur.fetchall()
    return LogContext(
        log=LogItem.from_row(anchor),
        before=[LogItem.from_row(row) for row in reversed(earlier)],
        after=[LogItem.from_row(row) for row in later],
    )
