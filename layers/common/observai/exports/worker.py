"""The export worker: SQS records naming an export → its rows streamed to S3 as one gzip NDJSON file.

Each record is processed on its own (Powertools' BatchProcessor; failures are reported in
``batchItemFailures``). One export, one attempt:

1. claim it in one UPDATE: queued (or running under an expired claim) → running, ``attempts + 1``, a lease of
   LEASE_S (the function's timeout and a minute: past it, the previous claimer is surely dead). A message
   for an export that is finished, gone, or claimed by a live worker does nothing and succeeds, so a
   redelivered or duplicated message never exports twice;
2. check the bucket (missing or forbidden: failed at once, before reading a row);
3. stream the rows through a server-side cursor (chunks of 5,000, one snapshot, read under RLS as the
   project) into a gzip file spooled to /tmp past 16 MB; more than EXPORT_MAX_ROWS rows fails the export;
4. upload it (multipart in 8 MB parts past 8 MB) to ``exports/{org}/{project}/{export}.ndjson.gz``;
5. record succeeded (row count, bytes, key, expiry) if this attempt still holds the claim.

Failures: a reason retrying cannot fix (bucket, query, too many rows) fails the export at once. Anything
else (database or S3 unavailable) puts it back to queued and re-sends its message with a growing delay,
until the MAX_ATTEMPTS-th attempt, which fails it with the last reason. A worker killed mid-way (timeout)
leaves a claim that expires; SQS redelivers the message after its visibility timeout and the next attempt
starts over (the object is simply overwritten; an abandoned multipart upload is aborted by the bucket's
lifecycle rule).
"""

from __future__ import annotations

import gzip
import json
import tempfile
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from observai.config import Settings, get_settings
from observai.db.connection import transaction
from observai.errors import InvalidInput
from observai.exports import storage, store
from observai.logs.query_language import compile_log_query
from observai.observability import logger

MAX_ATTEMPTS = 3  # below the queue's maxReceiveCount (5), so the worker records the failure before the DLQ
LEASE_S = 960  # ExportWorkerFunction's Timeout (900 s) + 60 s
RETRY_BASE_DELAY_S = 30
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024  # the gzip file stays in memory up to this, then goes to /tmp

Outcome = Literal["succeeded", "failed", "released", "finished", "busy", "gone"]


class ExportFailed(Exception):
    """A reason retrying cannot fix: the export is failed with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PoisonedRecord(ValueError):
    """A message that names no export (fails; after maxReceiveCount it goes to the DLQ)."""


@dataclass(frozen=True, slots=True)
class Written:
    row_count: int
    size: int
    key: str


def parse_message(body: str) -> UUID:
    try:
        message = json.loads(body)
        if not isinstance(message, dict) or message.get("v") != storage.MESSAGE_VERSION:
            raise ValueError("not an export message")
        return UUID(str(message["export_id"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise PoisonedRecord(f"not an export message: {exc}") from exc


def retry_delay_s(attempt: int) -> int:
    return int(min(900, RETRY_BASE_DELAY_S * 2 ** max(0, attempt - 1)))


def _lines_query(row: dict[str, Any], settings: Settings) -> tuple[Any, dict[str, Any]]:
    params: dict[str, Any] = {
        "x_project": row["project_id"],
        "x_from": row["from_time"],
        "x_to": row["to_time"],
        "x_limit": settings.export_max_rows + 1,  # one more than allowed tells "too many"
    }
    if row["signal"] == "logs":
        try:
            log_filter = compile_log_query(row["query"])
        except InvalidInput as exc:
            raise ExportFailed(f"the query is invalid: {exc.message}") from exc
        return store.log_lines_sql(log_filter), {**params, **log_filter.params}
    filters = dict(row["filters"] or {})
    params.update({f"x_{name}": value for name, value in filters.items() if name in ("service", "name", "status")})
    return store.span_lines_sql(filters), params


def write_export(row: dict[str, Any], settings: Settings) -> Written:
    """Stream the export's rows into a gzip NDJSON file and upload it; ExportFailed for permanent problems."""
    bucket = settings.export_bucket
    if not bucket:
        raise ExportFailed("EXPORT_BUCKET is not set")
    try:
        storage.check_bucket(bucket, settings)
    except storage.BucketUnusable as exc:
        raise ExportFailed(str(exc)) from exc
    query, params = _lines_query(row, settings)
    key = storage.object_key(row["org_id"], row["project_id"], row["id"])
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spooled:
        # mtime=0: the same rows give the same bytes (a retried export is byte-identical). closing(): an
        # exception here ends the read transaction at once, before anything else uses the connection.
        with (
            gzip.GzipFile(fileobj=spooled, mode="wb", compresslevel=6, mtime=0) as out,
            closing(store.stream_lines(row["project_id"], query, params)) as chunks,
        ):
            for lines in chunks:
                count += len(lines)
                if count > settings.export_max_rows:
                    raise ExportFailed(
                        f"more than {settings.export_max_rows} rows match: narrow the time range or the query"
                    )
                out.write(("\n".join(lines) + "\n").encode())
        size = spooled.tell()
        spooled.seek(0)
        storage.upload(spooled, bucket, key, filename=f"{row['id']}.ndjson.gz", settings=settings)
    return Written(count, size, key)


def _not_claimed(export_id: UUID) -> Outcome:
    """Why the claim found nothing to do, failing an export that ran out of attempts."""
    with transaction() as cur:
        current = store.get_state(cur, export_id)
        if current is None:
            return "gone"
        if current["status"] in ("succeeded", "failed"):
            return "finished"
        if current["attempts"] >= MAX_ATTEMPTS and current["claimable"]:
            last = current["error"] or "the worker stopped before finishing (timed out or crashed)"
            store.set_failed(cur, export_id, f"gave up after {current['attempts']} attempts; last: {last}")
            return "failed"
    return "busy"


def run_export(export_id: UUID) -> Outcome:
    """One attempt at the export (see the module docstring); raises only when its message should come back."""
    settings = get_settings()
    with transaction() as cur:
        row = store.claim(cur, export_id, lease_s=LEASE_S, max_attempts=MAX_ATTEMPTS)
    if row is None:
        return _not_claimed(export_id)
    attempt = int(row["attempts"])
    context = {"export_id": str(export_id), "project_id": str(row["project_id"]), "attempt": attempt}
    logger.info("export started", extra={**context, "signal": row["signal"]})
    try:
        written = write_export(row, settings)
    except ExportFailed as exc:
        with transaction() as cur:
            store.set_failed(cur, export_id, exc.reason, attempt=attempt)
        logger.warning("export failed", extra={**context, "reason": exc.reason})
        return "failed"
    except Exception as exc:
        reason = f"{exc.__class__.__name__}: {exc}"[:500]
        logger.exception("export attempt failed", extra={**context, "reason": reason})
        with transaction() as cur:
            if attempt >= MAX_ATTEMPTS:
                store.set_failed(cur, export_id, f"gave up after {attempt} attempts; last: {reason}", attempt=attempt)
                return "failed"
            store.release(cur, export_id, attempt, reason)
        storage.enqueue(export_id, settings, delay_s=retry_delay_s(attempt))
        return "released"
    with transaction() as cur:
        recorded = store.set_succeeded(
            cur,
            export_id,
            attempt,
            row_count=written.row_count,
            size=written.size,
            key=written.key,
            keep_days=settings.export_keep_days,
        )
    if not recorded:  # a later attempt took over (this one outlived its lease): its outcome stands
        logger.warning("export finished after losing its claim", extra=context)
        return "busy"
    logger.info("export succeeded", extra={**context, "rows": written.row_count, "bytes": written.size})
    return "succeeded"


def process_record(record: SQSRecord) -> None:
    try:
        export_id = parse_message(record.body)
    except PoisonedRecord as exc:
        logger.error("export message cannot be decoded", extra={"message_id": record.message_id, "error": str(exc)})
        raise
    outcome = run_export(export_id)
    logger.info("export message done", extra={"message_id": record.message_id, "outcome": outcome})


def handle(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """The SQS event's partial batch response: ``{"batchItemFailures": [{"itemIdentifier": ...}, ...]}``."""
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=process_record, processor=processor, context=context
    )
    return dict(response)
