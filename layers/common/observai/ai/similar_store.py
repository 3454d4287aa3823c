"""Data access of similar incidents: what an incident's embedding is made of, the embeddings themselves
(``public.incident_embeddings``, pgvector), and the nearest-neighbour queries.

pgvector lives in schema ``extensions``: types and operators are qualified (``extensions.vector(768)``,
``OPERATOR(extensions.<=>)``). The embedding column is untyped; each HNSW index (cosine) is partial on one
dimension (``where dimensions = 768``) over ``embedding::extensions.vector(768)``, so a query names the
dimension as a literal in its SQL text (a validated integer, never user text) and filters on it: that is what
lets the planner prove the partial index applies and read the neighbours in distance order from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from observai.db.connection import Cursor

MAX_ALERT_ROWS = 100
MAX_ERROR_LINES = 2_000  # error lines read in the incident's window to find its most frequent messages
ERRORS_BUDGET_MS = 1_500
MAX_EXACT_CANDIDATES = 50_000  # the exact fallback scans at most this many of the organization's embeddings
EF_SEARCH = 200  # HNSW candidate list (pgvector's default 40): rows of other orgs are filtered after the index
# Up to this many embeddings, an organization's nearest incidents are computed exactly over its own rows (a few ms,
# and the HNSW index would mostly yield other organizations' rows); past it, through the HNSW index.
EXACT_UP_TO = 2_000

_INCIDENT_COLUMNS = (
    "id, org_id, project_id, number, title, status, severity, service, triggered_at, resolved_at, resolution_note,"
    " updated_at"
)


def incident(cur: Cursor, incident_id: UUID, project_id: UUID | None = None) -> dict[str, Any] | None:
    """The incident (of ``project_id`` when given: a tenant's read goes through its project)."""
    cur.execute(
        f"select {_INCIDENT_COLUMNS} from public.incidents"
        " where id = %(id)s and (%(project)s::uuid is null or project_id = %(project)s)",
        {"id": incident_id, "project": project_id},
    )
    row = cur.fetchone()
    return dict(row) if row else None


def latest_summary(cur: Cursor, incident_id: UUID) -> dict[str, Any] | None:
    """The answer of the incident's latest whole, validated summary (status ok), if any."""
    cur.execute(
        "select answer from public.incident_summaries where incident_id = %s and status = 'ok'"
        " order by created_at desc limit 1",
        (incident_id,),
    )
    row = cur.fetchone()
    return row["answer"] if row else None


def summary_pending(cur: Cursor, incident_id: UUID, since: datetime) -> bool:
    """Whether the incident has a summary task enqueued since ``since`` (not done nor dropped yet)."""
    cur.execute(
        "select 1 from public.ai_tasks where incident_id = %s and kind = 'summary' and created_at >= %s",
        (incident_id, since),
    )
    return cur.fetchone() is not None


def alert_rules_and_services(cur: Cursor, incident_id: UUID) -> list[dict[str, Any]]:
    """(rule_name, service) of the incident's alerts, first fired first (bounded)."""
    cur.execute(
        "select coalesce(r.name, ia.labels ->> 'alertname') as rule_name,"
        " coalesce(ia.labels ->> 'service', ia.labels ->> 'service.name') as service"
        " from public.incident_alerts ia left join public.alert_rules r on r.id = ia.rule_id"
        " where ia.incident_id = %s order by ia.first_fired_at, ia.instance_id limit %s",
        (incident_id, MAX_ALERT_ROWS),
    )
    return [dict(row) for row in cur.fetchall()]


def top_error_messages(
    cur: Cursor,
    project_id: UUID,
    services: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    top: int,
    width: int,
    budget_ms: int = ERRORS_BUDGET_MS,
) -> list[dict[str, Any]]:
    """The most frequent messages (bodies cut to ``width``, numbers as N: ids and durations vary between lines of
    one error) among the first error and fatal lines of the services (all the project's when none) in [start, end).
    At most MAX_ERROR_LINES lines are read, through (project_id, time) or (project_id, service, time), within
    ``budget_ms``: a window of many lines and few errors gives no messages rather than a slow task."""
    cur.execute("select current_setting('statement_timeout') as t")
    row = cur.fetchone()
    previous = str(row["t"]) if row else "0"
    cur.execute("savepoint observai_top_errors")
    try:
        cur.execute("select set_config('statement_timeout', %s, true)", (str(budget_ms),))
        cur.execute(
            "select regexp_replace(left(body, %(width)s), '[0-9]+', 'N', 'g') as message, count(*) as n from ("
            "  select body from public.logs"
            "  where project_id = %(project)s and time >= %(start)s and time < %(end)s and severity_number >= 17"
            "    and (cardinality(%(services)s::text[]) = 0 or service = any(%(services)s::text[]))"
            "  order by time limit %(lines)s"
            ") s group by 1 order by n desc, message limit %(top)s",
            {
                "project": project_id,
                "start": start,
                "end": end,
                "services": list(services),
                "lines": MAX_ERROR_LINES,
                "top": top,
                "width": width,
            },
        )
        found = [dict(r) for r in cur.fetchall()]
    except psycopg.errors.QueryCanceled:
        cur.execute("rollback to savepoint observai_top_errors")  # also undoes the timeout set above
        return []
    cur.execute("release savepoint observai_top_errors")
    cur.execute("select set_config('statement_timeout', %s, true)", (previous,))
    return found


def embedding_state(cur: Cursor, incident_id: UUID) -> dict[str, Any] | None:
    """model, dimensions and source_digest of the incident's stored embedding."""
    cur.execute(
        "select model, dimensions, source_digest from public.incident_embeddings where incident_id = %s",
        (incident_id,),
    )
    row = cur.fetchone()
    return dict(row) if row else None


def vector_text(vector: Sequence[float]) -> str:
    """pgvector's text form, ``[0.1,0.2,...]``; every value finite (checked by the caller)."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def valid_vector(vector: Sequence[Any], dimensions: int) -> bool:
    return (
        len(vector) == dimensions
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in vector)
        and any(x != 0 for x in vector)  # the cosine distance of a zero vector is undefined
    )


def upsert_embedding(
    cur: Cursor,
    *,
    incident: dict[str, Any],
    model: str,
    vector: Sequence[float],
    digest: str,
    now: datetime,
) -> None:
    cur.execute(
        "insert into public.incident_embeddings (incident_id, org_id, project_id, model, dimensions, embedding,"
        " source_digest, created_at, updated_at)"
        " values (%(id)s, %(org)s, %(project)s, %(model)s, %(dims)s, %(vector)s::extensions.vector, %(digest)s,"
        "  %(now)s, %(now)s)"
        " on conflict (incident_id) do update set model = excluded.model, dimensions = excluded.dimensions,"
        "  embedding = excluded.embedding, source_digest = excluded.source_digest, updated_at = excluded.updated_at",
        {
            "id": incident["id"],
            "org": incident["org_id"],
            "project": incident["project_id"],
            "model": model[:200],
            "dims": len(vector),
            "vector": vector_text(vector),
            "digest": digest,
            "now": now,
        },
    )


def any_other(cur: Cursor, *, org_id: UUID, incident_id: UUID, model: str, dimensions: int) -> bool:
    """Whether the organization has an embedding to compare with besides the incident's own (else: nothing to
    find, and no reason to embed the incident now)."""
    cur.execute(
        "select 1 from public.incident_embeddings where org_id = %s and incident_id <> %s and model = %s"
        " and dimensions = %s limit 1",
        (org_id, incident_id, model, dimensions),
    )
    return cur.fetchone() is not None


def stored_vector(cur: Cursor, incident_id: UUID, *, model: str, dimensions: int) -> str | None:
    """The incident's embedding (pgvector text) when it was made by ``model`` at ``dimensions``."""
    cur.execute(
        "select embedding::text as v from public.incident_embeddings"
        " where incident_id = %s and model = %s and dimensions = %s",
        (incident_id, model, dimensions),
    )
    row = cur.fetchone()
    return row["v"] if row else None


# The HNSW index gives the nearest embeddings of the dimension in distance order; the organization, the model and
# "not itself" are filters on what it yields (pgvector 0.6 has no iterative scan: ef_search bounds how many it
# yields, hence the exact fallback below when a page comes back short). Resolved incidents only.
_NEAREST_SQL = """
select i.id as incident_id, i.project_id, i.number, i.title, i.resolved_at, i.resolution_note, n.distance
from (
    select e.incident_id,
           e.embedding::extensions.vector({dims}) OPERATOR(extensions.<=>) %(q)s::extensions.vector({dims}) as distance
    from public.incident_embeddings e
    where e.dimensions = {dims} and e.org_id = %(org)s and e.model = %(model)s and e.incident_id <> %(self)s
    order by distance
    limit %(want)s
) n
join public.incidents i on i.id = n.incident_id and i.status = 'resolved'
order by n.distance, i.id
limit %(limit)s
"""

# Exact: the organization's embeddings of the dimension (org_id index), every distance computed (bounded).
_EXACT_SQL = """
with c as materialized (
    select e.incident_id, e.embedding
    from public.incident_embeddings e
    where e.org_id = %(org)s and e.dimensions = {dims} and e.model = %(model)s and e.incident_id <> %(self)s
    limit %(cap)s
)
select i.id as incident_id, i.project_id, i.number, i.title, i.resolved_at, i.resolution_note,
       c.embedding::extensions.vector({dims}) OPERATOR(extensions.<=>) %(q)s::extensions.vector({dims}) as distance
from c join public.incidents i on i.id = c.incident_id and i.status = 'resolved'
order by distance, i.id
limit %(limit)s
"""


def nearest_sql(dimensions: int, *, exact: bool = False) -> sql.Composed:
    return sql.SQL(_EXACT_SQL if exact else _NEAREST_SQL).format(dims=sql.Literal(int(dimensions)))


def nearest(
    cur: Cursor,
    *,
    org_id: UUID,
    incident_id: UUID,
    query_vector: str,
    dimensions: int,
    model: str,
    limit: int,
    exact_up_to: int = EXACT_UP_TO,
) -> list[dict[str, Any]]:
    """The nearest resolved incidents of the organization (not ``incident_id``), nearest first, with ``distance``
    (cosine, 0..2). An organization with more than ``exact_up_to`` embeddings: through the HNSW index, and exactly when
    the index's candidates held fewer than ``limit`` of its incidents (other organizations' rows are filtered out
    after the index); a smaller one: exactly over its own embeddings (org_id index)."""
    params = {
        "q": query_vector,
        "org": org_id,
        "model": model,
        "self": incident_id,
        "limit": limit,
        "want": limit * 4,
        "cap": MAX_EXACT_CANDIDATES,
    }
    cur.execute(
        "select count(*) as n from (select 1 from public.incident_embeddings"
        " where org_id = %(org)s and dimensions = %(dims)s limit %(over)s) s",
        {"org": org_id, "dims": dimensions, "over": exact_up_to + 1},
    )
    row = cur.fetchone()
    if row is not None and row["n"] > exact_up_to:
        cur.execute("select set_config('hnsw.ef_search', %s, true)", (str(EF_SEARCH),))
        cur.execute(nearest_sql(dimensions), params)
        rows = [dict(row) for row in cur.fetchall()]
        if len(rows) >= limit:
            return rows
    cur.execute(nearest_sql(dimensions, exact=True), params)
    return [dict(row) for row in cur.fetchall()]
