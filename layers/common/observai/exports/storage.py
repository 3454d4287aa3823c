"""The AWS side of exports: the queue (SQS) and the bucket (S3, or any S3-compatible store).

boto3 is imported, and its clients created, on first use only: the API function needs it to enqueue and
to pre-sign, the worker to upload; neither pays for it at cold start. S3_ENDPOINT_URL points the S3 client
at another store (MinIO, Supabase Storage's ``https://<project>.supabase.co/storage/v1/s3``), addressed
path-style as those expect; credentials and region come from the usual AWS variables.
"""

from __future__ import annotations

import json
from typing import IO, Any
from uuid import UUID

from observai.aws_clients import Timeouts, aws_client, s3_client
from observai.config import Settings, get_settings

MESSAGE_VERSION = 1
CONTENT_TYPE = "application/gzip"
PART_SIZE = 8 * 1024 * 1024  # multipart parts (S3's minimum is 5 MiB)

# Uploads of large files: patient reads, a few retries.
_TIMEOUTS = Timeouts(connect_s=5, read_s=60, max_attempts=3)


class BucketUnusable(RuntimeError):
    """The export bucket is missing or refuses us: retrying will not help."""


def s3(settings: Settings | None = None) -> Any:
    return s3_client(_TIMEOUTS, settings)


def object_key(org_id: UUID, project_id: UUID, export_id: UUID) -> str:
    return f"exports/{org_id}/{project_id}/{export_id}.ndjson.gz"


def message_body(export_id: UUID) -> str:
    return json.dumps({"v": MESSAGE_VERSION, "export_id": str(export_id)}, separators=(",", ":"))


def enqueue(export_id: UUID, settings: Settings | None = None, *, delay_s: int = 0) -> str:
    """SendMessage of the export's id to the export queue; the message id. Errors propagate (boto3's)."""
    settings = settings or get_settings()
    if not settings.export_queue_url:
        raise RuntimeError("EXPORT_QUEUE_URL is not set")
    params: dict[str, Any] = {"QueueUrl": settings.export_queue_url, "MessageBody": message_body(export_id)}
    if delay_s > 0:
        params["DelaySeconds"] = min(900, int(delay_s))  # SQS's maximum
    response = aws_client("sqs", _TIMEOUTS).send_message(**params)
    return str(response["MessageId"])


def check_bucket(bucket: str, settings: Settings | None = None) -> None:
    """BucketUnusable when the bucket does not exist or we may not use it (before reading any row)."""
    from botocore.exceptions import ClientError

    try:
        s3(settings).head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket", "NotFound") or status == 404:
            raise BucketUnusable(f"the export bucket {bucket!r} does not exist") from exc
        if code in ("403", "AccessDenied", "Forbidden") or status == 403:
            raise BucketUnusable(f"access to the export bucket {bucket!r} is denied") from exc
        raise


def upload(fileobj: IO[bytes], bucket: str, key: str, *, filename: str, settings: Settings | None = None) -> None:
    """Upload a (rewound) file; multipart in PART_SIZE parts once it is larger than one part."""
    from boto3.s3.transfer import TransferConfig

    s3(settings).upload_fileobj(
        fileobj,
        bucket,
        key,
        ExtraArgs={"ContentType": CONTENT_TYPE, "ContentDisposition": f'attachment; filename="{filename}"'},
        Config=TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4),
    )


def presigned_get(bucket: str, key: str, expires_in_s: int, settings: Settings | None = None) -> str:
    return str(
        s3(settings).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=max(1, int(expires_in_s))
        )
    )
