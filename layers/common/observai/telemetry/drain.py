"""The spool drain: SQS records of spooled batches → the same idempotent store_batch as the ingest path.

Each record is processed on its own (Powertools' BatchProcessor): the ones that fail are reported in
``batchItemFailures`` and redelivered by SQS after the visibility timeout, the others deleted. Since
store_batch is idempotent (the spooled batch always carries an Idempotency-Key), a redelivered record
never writes twice.

Outcomes per record:

- stored (or replayed: written already) → success; an S3-spooled envelope is then deleted.
- its project (or organization) was deleted meanwhile → dropped: logged, nothing written, reported as
  done (the S3 envelope deleted), never retried. A project deleted between the check and the write is
  caught by the next delivery (the write fails once its organization is gone) or, when only the project
  went, by the purge of deleted projects (observai.retention.purge), which waits out such late writes.
- the database is unavailable, or this container's breaker is open → the message is put back on the
  queue with a growing delay (30 s doubling up to 15 min, ``"requeues"`` counted in the body) and the
  original succeeds. An outage therefore never pushes good batches into the dead-letter queue, however
  long it lasts (up to MAX_REQUEUES: about three days); if the put-back fails, the record fails and
  SQS redelivers it.
- anything else (undecodable body, a missing S3 object, a constraint the batch breaks) → the record
  fails; SQS retries it and, after the queue's maxReceiveCount (5), moves it to the dead-letter queue.
  It never blocks the records beside it.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from observai.db.breaker import database_breaker
from observai.errors import Unavailable
from observai.observability import logger
from observai.retention.purge import project_exists
from observai.telemetry import spool
from observai.telemetry.spool import SpooledBatch

REQUEUE_BASE_DELAY_S = 30
REQUEUE_MAX_DELAY_S = 900  # SQS's maximum DelaySeconds
MAX_REQUEUES = 300  # ~3 days at the maximum delay; then the record fails and, in time, reaches the DLQ


class PoisonedRecord(ValueError):
    """A record that can never be stored as it is (fails, and after maxReceiveCount goes to the DLQ)."""


def requeue_delay_s(requeues: int) -> int:
    return int(min(REQUEUE_MAX_DELAY_S, REQUEUE_BASE_DELAY_S * 2 ** min(requeues, 10)))


def parse_message(body: str) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PoisonedRecord(f"message body is not JSON: {exc}") from exc
    if not isinstance(message, dict) or message.get("v") != spool.VERSION:
        raise PoisonedRecord("message body is not a spooled batch")
    return message


def load_envelope(message: dict[str, Any]) -> SpooledBatch:
    """The spooled batch of a message: inline, or fetched from S3 for a pointer."""
    pointer = message.get("s3")
    if pointer is not None:
        if not isinstance(pointer, dict) or not pointer.get("bucket") or not pointer.get("key"):
            raise PoisonedRecord("malformed S3 pointer")
        data = spool.load_s3(str(pointer["bucket"]), str(pointer["key"]))
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoisonedRecord(f"S3 object is not JSON: {exc}") from exc
    else:
        obj = message
    try:
        return SpooledBatch.from_obj(obj)
    except ValueError as exc:
        raise PoisonedRecord(str(exc)) from exc


def _requeue(message: dict[str, Any], record: SQSRecord, reason: str) -> None:
    requeues = int(message.get("requeues") or 0)
    if requeues >= MAX_REQUEUES:
        raise Unavailable(f"database still unavailable after {requeues} requeues; leaving the record to SQS")
    delay = requeue_delay_s(requeues)
    spool.send_body(json.dumps({**message, "requeues": requeues + 1}, separators=(",", ":")), delay_s=delay)
    logger.warning(
        "spooled batch requeued",
        extra={"message_id": record.message_id, "reason": reason, "requeues": requeues + 1, "delay_s": delay},
    )


def _delete_envelope(message: dict[str, Any]) -> None:
    """The S3 object of a pointer message, once its batch is done with."""
    pointer = message.get("s3")
    if pointer:
        spool._delete_quietly(pointer["bucket"], pointer["key"])


def process_record(record: SQSRecord) -> None:
    """Store one spooled batch; raise to report the record as failed."""
    from observai.telemetry.writer import store_batch

    context: dict[str, Any] = {
        "message_id": record.message_id,
        "receive_count": record.attributes.approximate_receive_count,
    }
    try:
        message = parse_message(record.body)
        if not database_breaker.allow():
            _requeue(message, record, "circuit breaker open")
            return
        item = load_envelope(message)
    except PoisonedRecord as exc:
        logger.error("spooled record cannot be decoded", extra={**context, "error": str(exc)})
        raise
    context.update(org_id=str(item.org_id), project_id=str(item.project_id), events=item.batch.accepted)
    try:
        if not project_exists(item.org_id, item.project_id):
            database_breaker.record_success()
            _delete_envelope(message)
            logger.warning("spooled batch dropped: its project was deleted", extra=context)
            return
        result = store_batch(
            item.org_id,
            item.project_id,
            item.batch,
            idempotency_key=item.idempotency_key,
            request_hash=item.request_hash,
            response=item.response,
            body_bytes=item.body_bytes,
        )
    except Unavailable as exc:
        database_breaker.record_failure(exc)
        _requeue(message, record, exc.message)
        return
    except Exception as exc:
        logger.exception("spooled batch failed", extra={**context, "error": exc.__class__.__name__})
        raise
    database_breaker.record_success()
    _delete_envelope(message)
    logger.info("spooled batch stored", extra={**context, "replayed": result.replayed})


def drain(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """The SQS event's partial batch response: ``{"batchItemFailures": [{"itemIdentifier": ...}, ...]}``."""
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event,
        record_handler=process_record,
        processor=processor,
        context=context,
    )
    failures = response.get("batchItemFailures") or []
    logger.info("spool drained", extra={"records": len(event.get("Records") or []), "failed": len(failures)})
    return dict(response)
