"""The ingest spool's AWS side under moto: queue + dead-letter queue + bucket, and draining it in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from observai_local.lambda_context import LambdaContext
from observai_local.sqs import DrainReport, drain_queue, queue_arn, sqs_event

from tests.helpers.inprocess import load_function


@dataclass
class SpoolAws:
    sqs: Any
    s3: Any
    queue_url: str
    dlq_url: str
    bucket: str

    def receive(self, *, max_messages: int = 10, visibility_timeout_s: int = 30) -> list[dict[str, Any]]:
        """Up to ``max_messages`` messages now visible (kept invisible for ``visibility_timeout_s``)."""
        out: list[dict[str, Any]] = []
        while len(out) < max_messages:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(out)),
                VisibilityTimeout=visibility_timeout_s,
                AttributeNames=["All"],
            ).get("Messages")
            if not got:
                break
            out.extend(got)
        return out

    def bodies(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in messages]

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return sqs_event(messages, source_arn=queue_arn(self.queue_url))

    def spool_objects(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="spool/")
        return [o["Key"] for o in listed.get("Contents") or []]

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
def spool_aws(monkeypatch: pytest.MonkeyPatch, *, visibility_timeout_s: int = 30) -> Iterator[SpoolAws]:
    """moto's SQS and S3 with the spool's resources; SPOOL_QUEUE_URL and SPOOL_BUCKET pointed at them."""
    from observai import aws_clients
    from observai.db.breaker import database_breaker

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        aws_clients.reset_clients()
        database_breaker.reset()
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        dlq_url = sqs.create_queue(QueueName="observai-test-ingest-spool-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName="observai-test-ingest-spool",
            Attributes={
                "VisibilityTimeout": str(visibility_timeout_s),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
        bucket = "observai-test-ingest-spool"
        s3.create_bucket(Bucket=bucket)
        monkeypatch.setenv("SPOOL_QUEUE_URL", queue_url)
        monkeypatch.setenv("SPOOL_BUCKET", bucket)
        try:
            yield SpoolAws(sqs=sqs, s3=s3, queue_url=queue_url, dlq_url=dlq_url, bucket=bucket)
        finally:
            aws_clients.reset_clients()
            database_breaker.reset()
