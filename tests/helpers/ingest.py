"""Ingest test helpers: a project with an API key of given scopes, native event builders, OTLP requests,
and queries counting and reading the telemetry rows of one project."""

from __future__ import annotations

import base64
import gzip as gzip_module
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

if TYPE_CHECKING:
    from observai.telemetry.model import MetricPoint

from tests.helpers.inprocess import Result, invoke

TABLES = ("metric_series", "metric_points", "logs", "spans")
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class IngestProject:
    org_id: UUID
    project_id: UUID
    key_id: UUID
    key: str  # the plaintext API key

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_project(scopes: tuple[str, ...] = ("ingest",), *, label: str = "Ingest") -> IngestProject:
    """A fresh organization (free plan) with one project and an API key with ``scopes``, in one transaction."""
    from observai.db.connection import transaction
    from observai.tenancy.api_keys import insert_key
    from observai.tenancy.orgs import insert_org_with_unique_slug
    from observai.tenancy.projects import insert_project_with_unique_slug

    tag = uuid.uuid4().hex[:8]
    with transaction() as cur:
        org = insert_org_with_unique_slug(cur, f"{label} org {tag}", None)
        project = insert_project_with_unique_slug(cur, org["id"], f"{label} project {tag}", None)
        key = insert_key(
            cur,
            org_id=org["id"],
            project_id=project["id"],
            name=f"{label} key",
            scopes=list(scopes),
            expires_at=None,
            created_by=None,
        )
    return IngestProject(org_id=org["id"], project_id=project["id"], key_id=key.id, key=key.key)


def add_key(project: IngestProject, scopes: tuple[str, ...]) -> IngestProject:
    """Another key for the same project, with other scopes."""
    from observai.db.connection import transaction
    from observai.tenancy.api_keys import insert_key

    with transaction() as cur:
        key = insert_key(
            cur,
            org_id=project.org_id,
            project_id=project.project_id,
            name="second key",
            scopes=list(scopes),
            expires_at=None,
            created_by=None,
        )
    return IngestProject(org_id=project.org_id, project_id=project.project_id, key_id=key.id, key=key.key)


# --- native events --------------------------------------------------------------------------------


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ago(seconds: float = 60.0) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def metric(name: str, value: float | None = 1.0, *, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "metric", "name": name, "time": iso(at or ago())}
    if value is not None:
        event["value"] = value
    event.update(fields)
    return event


def log(body: Any = "hello", *, at: datetime | None = None, **fields: Any) -> dict[str, Any]:
    return {"type": "log", "time": iso(at or ago()), "body": body, **fields}


def span(
    name: str = "GET /",
    *,
    trace_id: str | None = None,
    span_id: str | None = None,
    start: datetime | None = None,
    duration_ms: float | None = 12.5,
    **fields: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "span",
        "trace_id": trace_id or uuid.uuid4().hex,
        "span_id": span_id or uuid.uuid4().hex[:16],
        "name": name,
        "start_time": iso(start or ago()),
    }
    if duration_ms is not None:
        event["duration_ms"] = duration_ms
    event.update(fields)
    return event


# --- requests -------------------------------------------------------------------------------------


def post_native(
    headers: dict[str, str],
    events: Any = None,
    *,
    raw: str | bytes | None = None,
    gzip: bool = False,
    idempotency_key: str | None = None,
    content_type: str = JSON,
) -> Result:
    """POST /v1/ingest in-process: ``events`` as JSON (or ``raw`` as given), gzip-compressed if asked."""
    hdrs = dict(headers)
    hdrs["content-type"] = content_type
    if idempotency_key is not None:
        hdrs["idempotency-key"] = idempotency_key
    body: str | bytes = raw if raw is not None else json.dumps(events)
    if gzip:
        body = gzip_module.compress(body.encode() if isinstance(body, str) else body)
        hdrs["content-encoding"] = "gzip"
    return invoke("ingest", "POST", "/v1/ingest", headers=hdrs, body=body)


def post_otlp(
    path: str, headers: dict[str, str], body: bytes, *, content_type: str = PROTOBUF, gzip: bool = False
) -> Result:
    """POST /v1/traces, /v1/metrics or /v1/logs in-process, as an OTLP/HTTP exporter would."""
    hdrs = {**headers, "content-type": content_type}
    if gzip:
        body = gzip_module.compress(body)
        hdrs["content-encoding"] = "gzip"
    return invoke("ingest", "POST", path, headers=hdrs, body=body)


def response_bytes(result: Result) -> bytes:
    """The response body as bytes (API Gateway carries binary bodies base64-encoded)."""
    if result.raw.get("isBase64Encoded"):
        return base64.b64decode(result.text)
    return result.text.encode()


# --- rows -----------------------------------------------------------------------------------------


def _connect(database_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row)


def counts(database_url: str, project_id: UUID) -> dict[str, int]:
    """Rows per telemetry table for one project."""
    with _connect(database_url) as conn:
        return {
            table: conn.execute(
                f"select count(*) as n from public.{table} where project_id = %s", (project_id,)
            ).fetchone()["n"]  # type: ignore[index]
            for table in TABLES
        }


def rows(database_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with _connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()


def logs_of(database_url: str, project_id: UUID) -> list[dict[str, Any]]:
    return rows(database_url, "select * from public.logs where project_id = %s order by time, id", (project_id,))


def spans_of(database_url: str, project_id: UUID) -> list[dict[str, Any]]:
    return rows(
        database_url,
        "select * from public.spans where project_id = %s order by start_time, trace_id, span_id",
        (project_id,),
    )


def points_of(database_url: str, project_id: UUID) -> list[dict[str, Any]]:
    """Metric points joined with their series (name, type, attributes, monotonic, temporality)."""
    return rows(
        database_url,
        "select p.*, s.name, s.type, s.unit, s.description, s.attributes, s.monotonic, s.temporality"
        " from public.metric_points p join public.metric_series s"
        " on s.project_id = p.project_id and s.series_id = p.series_id"
        " where p.project_id = %s order by s.name, p.time, p.series_id",
        (project_id,),
    )


def org_ids_in(database_url: str, project_id: UUID) -> set[UUID]:
    """Every org_id carried by the project's telemetry rows."""
    found: set[UUID] = set()
    for table in TABLES:
        for row in rows(
            database_url, f"select distinct org_id from public.{table} where project_id = %s", (project_id,)
        ):
            found.add(row["org_id"])
    return found


def store_points(project: IngestProject, points: list[MetricPoint]) -> None:
    """Store metric points for the project through the real writer (no HTTP)."""
    from observai.telemetry.model import Batch
    from observai.telemetry.writer import store_batch

    store_batch(
        project.org_id,
        project.project_id,
        Batch(metrics=points),
        idempotency_key=None,
        request_hash="test",
        response={},
        body_bytes=0,
    )
