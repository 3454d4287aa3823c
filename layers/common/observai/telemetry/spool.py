"""The spool: validated batches parked in SQS (large ones in S3) while the database cannot take them.

A spooled message body is compact ASCII JSON, either the whole envelope inline::

    {"v": 1, "org_id": ..., "project_id": ..., "key_id": ..., "idempotency_key": ..., "request_hash": ...,
     "response": {...}, "body_bytes": ..., "spooled_at": "...Z", "batch": {<observai.telemetry.codec>}}

or, when that is over SPOOL_INLINE_MAX_BYTES (200 KB; SQS takes 256 KiB at most), a pointer to the same
envelope gzip-compressed in S3 (``spool/YYYY/MM/DD/<uuid>.json.gz`` in SPOOL_BUCKET)::

    {"v": 1, "s3": {"bucket": ..., "key": ...}, "org_id": ..., "project_id": ..., "idempotency_key": ...}

Either may carry ``"requeues": n`` when the drain put it back because the database was still down.
The drain (observai.telemetry.drain) writes each through the same idempotent store_batch.

The S3 client is the exports' one (observai.aws_clients.s3_client): S3_ENDPOINT_URL points both at an S3-compatible
store. boto3 is imported, and its clients created, on first use only (cold start), with short timeouts:
an ingest request that cannot spool fails fast with Unavailable (503 Retry-After) rather than hanging.
"""

from __future__ import annotations

import gzip
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from observai.aws_clients import Timeouts, aws_client, s3_client
from observai.config import get_settings
from observai.errors import Unavailable
from observai.observability import logger
from observai.telemetry.codec import batch_from_obj, batch_to_obj, dumps
from observai.telemetry.model import Batch

VERSION = 1
SPOOL_UNAVAILABLE_MESSAGE = "ingestion is temporarily unavailable; retry"
SPOOL_RETRY_AFTER_S = 30

# On the request path: fail fast, so the client still gets its answer in time.
_TIMEOUTS = Timeouts(connect_s=2, read_s=2, max_attempts=2)


@dataclass(slots=True)
class SpooledBatch:
    org_id: UUID
    project_id: UUID
    key_id: UUID | None
    idempotency_key: str
    request_hash: str
    response: dict[str, Any]
    body_bytes: int
    batch: Batch
    spooled_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_obj(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "org_id": str(self.org_id),
            "project_id": str(self.project_id),
            "key_id": None if self.key_id is None else str(self.key_id),
            "idempotency_key": self.idempotency_key,
            "request_hash": self.request_hash,
            "response": self.response,
            "body_bytes": self.body_bytes,
            "spooled_at": self.spooled_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "batch": batch_to_obj(self.batch),
        }

    @classmethod
    def from_obj(cls, obj: Any) -> SpooledBatch:
        """ValueError when ``obj`` is not a spooled batch envelope."""
        if not isinstance(obj, dict) or obj.get("v") != VERSION:
            raise ValueError("not a spooled batch (version)")
        try:
            key_id = obj.get("key_id")
            response = obj["response"]
            if not isinstance(response, dict) or not isinstance(obj["idempotency_key"], str):
                raise ValueError("response must be an object and idempotency_key a string")
            return cls(
                org_id=UUID(obj["org_id"]),
                project_id=UUID(obj["project_id"]),
                key_id=None if key_id is None else UUID(key_id),
                idempotency_key=obj["idempotency_key"],
                request_hash=str(obj["request_hash"]),
                response=response,
                body_bytes=int(obj["body_bytes"]),
                batch=batch_from_obj(obj["batch"]),
                spooled_at=datetime.fromisoformat(obj["spooled_at"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a spooled batch: {exc!r}") from exc


def spool_key(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"spool/{now:%Y/%m/%d}/{uuid.uuid4()}.json.gz"


def send_body(body: str, *, delay_s: int = 0) -> str:
    """SendMessage of one body to the spool queue; the message id. Errors propagate (boto3's)."""
    settings = get_settings()
    if not settings.spool_queue_url:
        raise RuntimeError("SPOOL_QUEUE_URL is not set")
    params: dict[str, Any] = {"QueueUrl": settings.spool_queue_url, "MessageBody": body}
    if delay_s > 0:
        params["DelaySeconds"] = min(900, int(delay_s))
    response = aws_client("sqs", _TIMEOUTS).send_message(**params)
    return str(response["MessageId"])


def spool_batch(item: SpooledBatch) -> str:
    """Park ``item`` in the spool; return the SQS message id. Unavailable (503, retry in 30 s) on any failure."""
    settings = get_settings()
    context = {"org_id": str(item.org_id), "project_id": str(item.project_id), "events": item.batch.accepted}
    try:
        if not settings.spool_queue_url:
            raise RuntimeError("SPOOL_QUEUE_URL is not set")
        payload = dumps(item.to_obj())
        if len(payload) <= settings.spool_inline_max_bytes:
            message_id = send_body(payload.decode("ascii"))
            logger.info("batch spooled", extra={**context, "bytes": len(payload), "message_id": message_id})
            return message_id
        if not settings.spool_bucket:
            raise RuntimeError(f"SPOOL_BUCKET is not set and the batch ({len(payload)} bytes) is too large for SQS")
        key = spool_key()
        compressed = gzip.compress(payload, compresslevel=6)
        s3_client(_TIMEOUTS).put_object(
            Bucket=settings.spool_bucket,
            Key=key,
            Body=compressed,
            ContentType="application/json",
            ContentEncoding="gzip",
        )
        pointer = {
            "v": VERSION,
            "s3": {"bucket": settings.spool_bucket, "key": key},
            "org_id": str(item.org_id),
            "project_id": str(item.project_id),
            "idempotency_key": item.idempotency_key,
        }
        try:
            message_id = send_body(json.dumps(pointer, separators=(",", ":")))
        except Exception:
            _delete_quietly(settings.spool_bucket, key)
            raise
        logger.info(
            "batch spooled to S3",
            extra={
                **context,
                "bytes": len(payload),
                "s3_bytes": len(compressed),
                "s3_key": key,
                "message_id": message_id,
            },
        )
        return message_id
    except Exception as exc:
        logger.error("spooling failed", extra={**context, "error": f"{exc.__class__.__name__}: {exc}"})
        raise Unavailable(SPOOL_UNAVAILABLE_MESSAGE, retry_after_s=SPOOL_RETRY_AFTER_S) from exc


class EnvelopeMissing(LookupError):
    """The S3 object of a pointer message is not there (the drain deletes it once the batch is done with)."""


def load_s3(bucket: str, key: str) -> bytes:
    """The envelope bytes of an S3-spooled batch (gunzipped). EnvelopeMissing when the object is gone."""
    from botocore.exceptions import ClientError

    try:
        response = s3_client(_TIMEOUTS).get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            raise EnvelopeMissing(f"s3://{bucket}/{key} does not exist") from exc
        raise
    data = response["Body"].read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def delete_s3(bucket: str, key: str) -> None:
    s3_client(_TIMEOUTS).delete_object(Bucket=bucket, Key=key)


def _delete_quietly(bucket: str, key: str) -> None:
    try:
        delete_s3(bucket, key)
    except Exception as exc:  # the bucket's lifecycle rule removes it after 14 days anyway
        logger.warning("spool object not deleted", extra={"s3_key": key, "error": exc.__class__.__name__})
