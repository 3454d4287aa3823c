"""The metric catalogue of a project, custom metric definitions, series and their cardinality.

Reads run as the caller (RLS on); definitions are written by the service after the permission check
(members and up), with their audit row in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from observai import audit
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction, transaction
from observai.errors import InvalidInput, NotFound
from observai.metrics.filters import filter_sql, match_filters
from observai.metrics.query_models import (
    MAX_NAME_LENGTH,
    AttributeCardinality,
    Cardinality,
    MetricDefinition,
    MetricDefinitionDeleted,
    MetricDefinitionPatch,
    MetricInfo,
    SeriesInfo,
)
from observai.pagination import decode_cursor, page
from observai.tenancy.access import authorize_project, authorize_telemetry

CARDINALITY_SCAN_MAX = 100_000  # series examined per cardinality request
DEFAULT_TOP_KEYS = 20
MAX_TOP_KEYS = 100
_DEFINITION_COLUMNS = "name, type, unit, description, created_by::text as created_by, created_at, updated_at"


class NameCursor(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    after: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class SeriesCursor(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    after: int = Field(ge=0, lt=2**63)


def _check_name(name: str) -> None:
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidInput(f"Metric names are 1 to {MAX_NAME_LENGTH} characters", details={"loc": ["path", "name"]})


# --- catalogue -------------------------------------------------------------------------------------------------


def list_metrics(
    principal: Principal, project_id: UUID, cursor: str | None, limit: int
) -> tuple[list[MetricInfo], str | None]:
    """Every metric name seen by ingestion or defined by people, by name; the definition's fields win."""
    after = decode_cursor(cursor, NameCursor)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        cur.execute(
            "with names as (select u.name from ("
            " (select distinct m.name from public.metric_series m where m.project_id = %(project)s"
            "  and m.name > %(after)s order by m.name limit %(limit)s)"
            " union"
            " (select d.name from public.metric_definitions d where d.project_id = %(project)s"
            "  and d.name > %(after)s order by d.name limit %(limit)s)"
            ") u order by u.name limit %(limit)s)"
            " select n.name, d.name is not null as defined, coalesce(d.type, s.type) as type,"
            " coalesce(d.unit, s.unit) as unit, coalesce(d.description, s.description) as description,"
            " coalesce(s.series_count, 0) as series_count, s.last_seen_at"
            " from names n"
            " left join public.metric_definitions d on d.project_id = %(project)s and d.name = n.name"
            " left join lateral (select count(*) as series_count, max(m.type) as type, max(m.unit) as unit,"
            "  max(m.description) as description, max(m.last_seen_at) as last_seen_at"
            "  from public.metric_series m where m.project_id = %(project)s and m.name = n.name) s on true"
            " order by n.name",
            {"project": project_id, "after": after.after if after else "", "limit": limit + 1},
        )
        rows = cur.fetchall()
    rows, next_cursor = page(rows, limit, lambda row: NameCursor(after=row["name"]))
    return [MetricInfo(**row) for row in rows], next_cursor


# --- definitions -----------------------------------------------------------------------------------------------


def patch_definition(
    principal: Principal, project_id: UUID, name: str, body: MetricDefinitionPatch
) -> MetricDefinition:
    """Create the definition, or update the fields the body carries (null clears one)."""
    _check_name(name)
    fields = body.model_dump(exclude_unset=True)
    with transaction() as cur:
        project, _ = authorize_project(cur, principal, project_id, Action.TELEMETRY_WRITE)
        cur.execute(
            "insert into public.metric_definitions as d (org_id, project_id, name, type, unit, description, created_by)"
            " values (%(org)s, %(project)s, %(name)s, %(type)s, %(unit)s, %(description)s, %(by)s)"
            " on conflict (project_id, name) do update set"
            " type = case when %(set_type)s then excluded.type else d.type end,"
            " unit = case when %(set_unit)s then excluded.unit else d.unit end,"
            " description = case when %(set_description)s then excluded.description else d.description end"
            f" returning {_DEFINITION_COLUMNS}, (xmax = 0) as created",
            {
                "org": project["org_id"],
                "project": project_id,
                "name": name,
                "type": fields.get("type"),
                "unit": fields.get("unit"),
                "description": fields.get("description"),
                "by": principal.user_id,
                "set_type": "type" in fields,
                "set_unit": "unit" in fields,
                "set_description": "description" in fields,
            },
        )
        row = cur.fetchone()
        assert row is not None
        created = row.pop("created")
        audit.record(
            cur,
            principal,
            "metric_definition.create" if created else "metric_definition.update",
            org_id=project["org_id"],
            target_type="metric_definition",
            target_id=name,
            details={"project_id": str(project_id), "fields": sorted(fields)},
        )
    return MetricDefinition(**row)


def delete_definition(principal: Principal, project_id: UUID, name: str) -> MetricDefinitionDeleted:
    _check_name(name)
    with transaction() as cur:
        project, _ = authorize_project(cur, principal, project_id, Action.TELEMETRY_WRITE)
        cur.execute(
            "delete from public.metric_definitions where project_id = %s and name = %s returning name",
            (project_id, name),
        )
        if cur.fetchone() is None:
            raise NotFound("No definition for this metric", details={"name": name})
        audit.record(
            cur,
            principal,
            "metric_definition.delete",
            org_id=project["org_id"],
            target_type="metric_definition",
            target_id=name,
            details={"project_id": str(project_id)},
        )
    return MetricDefinitionDeleted(name=name)


# --- series and cardinality ------------------------------------------------------------------------------------


def list_series(
    principal: Principal,
    project_id: UUID,
    name: str,
    query_params: Mapping[str, str] | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[SeriesInfo], str | None]:
    """The metric's series with their attributes, filtered by ``match[attr]=value`` (equality), by series id."""
    _check_name(name)
    after = decode_cursor(cursor, SeriesCursor)
    params: dict[str, Any] = {
        "project": project_id,
        "name": name,
        "after": after.after if after else -1,
        "limit": limit + 1,
    }
    where = filter_sql(match_filters(query_params), params)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        cur.execute(
            "select s.series_id, s.attributes, s.type, s.unit, s.monotonic, s.temporality, s.created_at,"
            " s.last_seen_at from public.metric_series s"
            f" where s.project_id = %(project)s and s.name = %(name)s and s.series_id > %(after)s{where}"
            " order by s.series_id limit %(limit)s",
            params,
        )
        rows = cur.fetchall()
    rows, next_cursor = page(rows, limit, lambda row: SeriesCursor(after=row["series_id"]))
    return [SeriesInfo(**{**row, "series_id": str(row["series_id"])}) for row in rows], next_cursor


def cardinality(
    principal: Principal, project_id: UUID, name: str, query_params: Mapping[str, str] | None, top: int
) -> Cardinality:
    """Distinct values per attribute key over the metric's series (at most CARDINALITY_SCAN_MAX examined)."""
    _check_name(name)
    params: dict[str, Any] = {"project": project_id, "name": name, "scan": CARDINALITY_SCAN_MAX, "top": top}
    where = filter_sql(match_filters(query_params), params)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id)
        cur.execute(
            "with s as materialized (select s.attributes from public.metric_series s"
            f" where s.project_id = %(project)s and s.name = %(name)s{where} limit %(scan)s)"
            " select (select count(*) from s) as series_count, e.key, count(distinct e.value) as distinct_values,"
            " count(*) as series"
            " from s cross join lateral jsonb_each(s.attributes) e"
            " group by e.key order by distinct_values desc, e.key limit %(top)s",
            params,
        )
        rows = cur.fetchall()
        if rows:
            total = int(rows[0]["series_count"])
        else:
            cur.execute(
                "select count(*) as n from (select 1 from public.metric_series s"
                f" where s.project_id = %(project)s and s.name = %(name)s{where} limit %(scan)s) x",
                params,
            )
            found = cur.fetchone()
            total = int(found["n"]) if found else 0
    return Cardinality(
        name=name,
        series_count=total,
        sampled=total >= CARDINALITY_SCAN_MAX,
        attributes=[
            AttributeCardinality(key=r["key"], distinct_values=r["distinct_values"], series=r["series"]) for r in rows
        ],
    )
