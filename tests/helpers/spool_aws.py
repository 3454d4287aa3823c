"""The ingest spool's AWS side under moto: queue + dead-letter queue + bucket, and draining it in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from observai_local.lambda_context import LambdaContext
from observai_local.sqs import DrainReport, drain_queue

from tests.helpers.inprocess import load_function
from tests.helpers.moto_queue import QueueAndBucket, queue_and_bucket, queue_and_bucket_on_server


@dataclass
class SpoolAws(QueueAndBucket):
    def bodies(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in messages]

    def spool_objects(self) -> list[str]:
        return self.keys("spool/")

    def attribute(self, name: str, queue_url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=queue_url or self.queue_url, AttributeNames=[name])
        return int(attrs["Attributes"][name])

    def drain(self, **kwargs: Any) -> DrainReport:
        """What the event source mapping does: receive, invoke the drain function, delete the successes."""
        return drain_queue(self.sqs, self.queue_url, invoke_drain, wait_time_s=0, **kwargs)


def invoke_drain(event: dict[str, Any]) -> dict[str, Any]:
    module = load_function("ingest_drain")
    return module.lambda_handler(
        event, LambdaContext("observai-test-ingest-drain", memory_limit_in_mb=1024, timeout_s=60)
    )


@contextmanager
def spool_aws(
    monkeypatch: pytest.MonkeyPatch, *, visibility_timeout_s: int = 30, server: bool = False
) -> Iterator[SpoolAws]:
    """moto's SQS and S3 with the spool's resources; SPOOL_QUEUE_URL and SPOOL_BUCKET pointed at them. With
    ``server``, moto runs as a local server reached through AWS_ENDPOINT_URL_SQS and S3_ENDPOINT_URL."""
    from observai.db.breaker import database_breaker

    resources = queue_and_bucket_on_server if server else queue_and_bucket
    with resources(monkeypatch, "observai-test-ingest-spool", visibility_timeout_s=visibility_timeout_s) as aws:
        database_breaker.reset()
        monkeypatch.setenv("SPOOL_QUEUE_URL", aws.queue_url)
        monkeypatch.setenv("SPOOL_BUCKET", aws.bucket)
        try:
            yield SpoolAws(**vars(aws))
        finally:
            database_breaker.reset()
