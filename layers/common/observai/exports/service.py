"""Exports over the API: start one (checked, limited, queued), read one (with its download link), list them.

Who may do what:

* start an export: a person with the member role or above (it runs work on the project's behalf and
  copies its data out), or an API key bound to the project with the ``read`` scope (a program that ships
  the project's data to a warehouse every night);
* read and list exports: anyone who may read the project's telemetry (viewer and up, or a ``read`` key),
  since an export holds nothing they could not read through the API.

Another organization's project, and another project's key, get 404: existence is not revealed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from observai import audit
from observai.auth.permissions import Action
from observai.auth.principal import Principal
from observai.config import get_settings
from observai.db.connection import tenant_transaction, transaction
from observai.errors import NotFound, RateLimited, Unavailable
from observai.exports import storage, store
from observai.exports.models import ExportInfo, ExportRequest, SpanFilters
from observai.logs.query_language import compile_log_query
from observai.observability import logger
from observai.pagination import TimeCursor, decode_cursor, page, time_cursor_params, time_position
from observai.tenancy.access import authorize_telemetry

# A claim expired this long ago with no redelivery taking it over: the worker's last attempt died.
LOST_AFTER = timedelta(hours=2)
# Queued this long and never claimed: the message is gone (or in the dead-letter queue).
NEVER_STARTED_AFTER = timedelta(days=1)
RETRY_WHEN_BUSY_S = 60


def to_info(row: dict[str, Any], download_url: str | None = None, url_expires_at: datetime | None = None) -> ExportInfo:
    return ExportInfo(
        id=row["id"],
        project_id=row["project_id"],
        signal=row["signal"],
        from_=row["from_time"],
        to=row["to_time"],
        query=row["query"],
        filters=SpanFilters.model_validate(row["filters"] or {}),
        status=row["status"],
        row_count=row["row_count"],
        bytes=row["bytes"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        expires_at=row["expires_at"],
        download_url=download_url,
        download_url_expires_at=url_expires_at,
    )


def create_export(principal: Principal, project_id: UUID, body: ExportRequest) -> ExportInfo:
    """Record the export (queued) and put its id on the export queue; the worker does the rest."""
    settings = get_settings()
    if body.signal == "logs":
        compile_log_query(body.query)  # a syntax error is a 400 now, not a failed export later
    filters = body.span_filters().model_dump(exclude_none=True) if body.signal == "spans" else {}
    with transaction() as cur:
        org_id = authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_WRITE)
        if not settings.export_queue_url or not settings.export_bucket:
            raise Unavailable("Exports are not configured here (EXPORT_QUEUE_URL, EXPORT_BUCKET)", retry_after_s=3600)
        store.lock_project(cur, project_id)
        store.fail_abandoned(
            cur,
            project_id,
            lost_after_s=int(LOST_AFTER.total_seconds()),
            never_started_after_s=int(NEVER_STARTED_AFTER.total_seconds()),
        )
        running = store.count_unfinished(cur, project_id)
        if running >= settings.export_max_concurrent:
            raise RateLimited(
                f"This project has {running} exports queued or running (at most {settings.export_max_concurrent});"
                " start another when one finishes",
                retry_after_s=RETRY_WHEN_BUSY_S,
                details={"unfinished": running, "limit": settings.export_max_concurrent},
            )
        row = store.insert(
            cur,
            org_id=org_id,
            project_id=project_id,
            signal=body.signal,
            from_time=body.from_,
            to_time=body.to,
            query=body.query.strip(),
            filters=filters,
            created_by=principal.user_id if principal.kind == "user" else None,
            created_by_key_id=principal.key_id if principal.kind == "api_key" else None,
        )
        audit.record(
            cur,
            principal,
            "export.create",
            org_id=org_id,
            target_type="export",
            target_id=row["id"],
            details={
                "project_id": str(project_id),
                "signal": body.signal,
                "from": body.from_.isoformat(),
                "to": body.to.isoformat(),
            },
        )
    # After the commit, so the worker always finds the row its message names.
    try:
        storage.enqueue(row["id"], settings)
    except Exception as exc:
        reason = f"could not be queued ({exc.__class__.__name__}); start it again"
        logger.error("export not queued", extra={"export_id": str(row["id"]), "error": str(exc)})
        with transaction() as cur:
            store.set_failed(cur, row["id"], reason)
        raise Unavailable("The export could not be queued; retry", retry_after_s=30) from exc
    logger.info("export queued", extra={"export_id": str(row["id"]), "project_id": str(project_id)})
    return to_info(row)


def get_export(principal: Principal, project_id: UUID, export_id: UUID) -> ExportInfo:
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        row = store.get(cur, project_id, export_id)
    if row is None:
        raise NotFound("Export not found", details={"export_id": str(export_id)})
    return with_download_url(row)


def with_download_url(row: dict[str, Any], now: datetime | None = None) -> ExportInfo:
    """The export, with a pre-signed GET URL while its file exists (never past the file's expiry)."""
    now = now or datetime.now(UTC)
    settings = get_settings()
    expires_at = row["expires_at"]
    if row["status"] != "succeeded" or not settings.export_bucket or (expires_at is not None and expires_at <= now):
        return to_info(row)
    ttl = settings.export_url_ttl_s
    if expires_at is not None:
        ttl = min(ttl, int((expires_at - now).total_seconds()))
    url = storage.presigned_get(settings.export_bucket, row["s3_key"], ttl, settings)
    return to_info(row, url, now + timedelta(seconds=ttl))


def list_exports(
    principal: Principal, project_id: UUID, cursor: str | None, limit: int
) -> tuple[list[ExportInfo], str | None]:
    """The project's exports, newest first (no download links here: GET one export for its link)."""
    after = decode_cursor(cursor, TimeCursor)
    position = time_cursor_params(after)
    with tenant_transaction(principal.rls_claims()) as cur:
        authorize_telemetry(cur, principal, project_id, Action.TELEMETRY_READ)
        rows = store.list_page(cur, project_id, position["after_ts"], position["after_id"], limit + 1)
    rows, next_cursor = page(rows, limit, time_position())
    return [to_info(row) for row in rows], next_cursor
