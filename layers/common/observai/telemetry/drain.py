"""The spool drain: SQS records of spooled batches → the same idempotent store_batch as the ingest path.

Each record is processed on its own (Powertools' BatchProcessor): the ones that fail are reported in
``batchItemFailures`` and redelivered by SQS after the visibility timeout, the others deleted. Since
store_batch is idempotent (the spooled batch always carries an Idempotency-Key), a redelivered record
never writes twice.

Outcomes per record:

- stored → success; an S3-spooled envelope is then deleted.
- stored already (SQS delivers at least once: the drain's answer or the delete was lost) → success, one info
  line "spooled batch already stored", whatever its kind: an inline batch is replayed by its Idempotency-Key; an
  S3 pointer whose envelope was deleted after the first delivery is looked up by the key its pointer carries
  (kept 24 hours, far beyond a redelivery), and fails as lost only if that key was never stored.
- its project (or organization) was deleted meanwhile → dropped: logged, nothing written, reported as
  done (the S3 envelope deleted), never retried. A project deleted between the check and the write is
  caught by the next delivery (the write fails once its organization is gone) or, when only the project
  went, by the purge of deleted projects (observai.retention.purge), which waits out such late writes.
- the database is unavailable, or this container's breaker is open → the message is put back on the
  queue with a growing delay (30 s doubling up to 15 min, ``"requeues"`` counted in the body) and the
  original succeeds. An outage therefore never pushes good batches into the dead-letter queue, however
  long it lasts (up to MAX_REQUEUES: about three days); if the put-back fails, the record fails and
  SQS redelivers it.
- anything else (undecodable body, an S3 object missing for a batch never stored, a constraint the batch breaks,
  S3 unreachable) → logged, and the record fails; SQS retries it and, after the queue's maxReceiveCount (5),
  moves it to the dead-letter queue. It never blocks the records beside it.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

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


def _requeue(message: dict[str, Any], message_id: str, reason: str) -> None:
    requeues = int(message.get("requeues") or 0)
    if requeues >= MAX_REQUEUES:
        raise Unavailable(f"database still unavailable after {requeues} requeues; leaving the record to SQS")
    delay = requeue_delay_s(requeues)
    spool.send_body(json.dumps({**message, "requeues": requeues + 1}, separators=(",", ":")), delay_s=delay)
    logger.warning(
        "spooled batch requeued",
        extra={"message_id": message_id, "reason": reason, "requeues": requeues + 1, "delay_s": delay},
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
    item: SpooledBatch | None = None
    try:
        message = parse_message(record.body)
        if not database_breaker.allow():
            _requeue(message, record.message_id, "circuit breaker open")
            return
        item = load_envelope(message)
    except PoisonedRecord as exc:
        logger.error("spooled record cannot be decoded", extra={**context, "error": str(exc)})
        raise
    except spool.EnvelopeMissing:
        pass  # a redelivery of a batch done with already, or a lost one: settled below, against the database
    except Exception as exc:
        logger.warning("spooled batch not read", extra={**context, "error": f"{exc.__class__.__name__}: {exc}"})
        raise
    if item is None:
        _settle_missing_envelope(message, context)
        return
    context.update(org_id=str(item.org_id), project_id=str(item.project_id), events=item.batch.accepted)
    try:
        if not project_exists(item.org_id, item.project_id):
            database_breaker.record_success()
            _delete_envelope(message)
            logger.warning(
                "spooled batch dropped: its project no longer exists (deleted, or never existed)", extra=context
            )
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
        _requeue(message, record.message_id, exc.message)
        return
    except Exception as exc:
        logger.exception("spooled batch failed", extra={**context, "error": exc.__class__.__name__})
        raise
    database_breaker.record_success()
    _delete_envelope(message)
    if result.replayed:  # SQS delivers at least once
        kind = "s3" if "s3" in message else "inline"
        logger.info("spooled batch already stored", extra={**context, "kind": kind})
    else:
        logger.info("spooled batch stored", extra=context)


def _settle_missing_envelope(message: dict[str, Any], context: dict[str, Any]) -> None:
    """A pointer message whose S3 object is gone: the drain deletes it once the batch is stored (or dropped), so
    this is a redelivery (SQS delivers at least once), done with, unless the database says it was never stored."""
    from observai.telemetry.writer import batch_stored

    try:
        org_id, project_id = UUID(str(message["org_id"])), UUID(str(message["project_id"]))
        key = message["idempotency_key"]
        if not isinstance(key, str):
            raise TypeError("idempotency_key must be a string")
    except (KeyError, TypeError, ValueError) as exc:
        error = f"its S3 object is missing and the pointer does not name its batch ({exc!r})"
        logger.error("spooled record cannot be decoded", extra={**context, "error": error})
        raise PoisonedRecord(error) from exc
    context.update(org_id=str(org_id), project_id=str(project_id), kind="s3")
    try:
        stored = batch_stored(project_id, key)
        gone = not stored and not project_exists(org_id, project_id)
    except Unavailable as exc:
        database_breaker.record_failure(exc)
        _requeue(message, context["message_id"], exc.message)
        return
    database_breaker.record_success()
    if stored:
        logger.info("spooled batch already stored", extra=context)
    elif gone:
        logger.info("spooled batch already dropped: its project no longer exists", extra=context)
    else:
        logger.error("spooled batch lost: its S3 object is missing and it was never stored", extra=context)
        raise PoisonedRecord("S3 object missing; the batch was never stored")


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
