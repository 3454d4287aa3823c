"""The exports' AWS side under moto: the export queue + dead-letter queue + bucket, and the worker run on it."""

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

BUCKET = "observai-test-exports"


@dataclass
class ExportAws:
    sqs: Any
    s3: Any
    queue_url: str
    dlq_url: str
    bucket: str

    def receive(self, *, visibility_timeout_s: int = 30) -> list[dict[str, Any]]:
        """The messages visible now (kept invisible for ``visibility_timeout_s``)."""
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=visibility_timeout_s,
                AttributeNames=["All"],
            ).get("Messages")
            if not got:
                return out
            out.extend(got)

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return sqs_event(messages, source_arn=queue_arn(self.queue_url))

    def messages_waiting(self) -> int:
        """Messages in the queue: visible, in flight or delayed."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attrs.values())

    def drain(self) -> DrainReport:
        """What the event source mapping does: receive, invoke the worker (one record a batch), delete successes."""
        return drain_queue(self.sqs, self.queue_url, invoke_worker, wait_time_s=0)

    def objects(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="exports/")
        return sorted(o["Key"] for o in listed.get("Contents") or [])


def invoke_worker(event: dict[str, Any]) -> dict[str, Any]:
    module = load_function("export_worker")
    return module.lambda_handler(
        event, LambdaContext("observai-test-export-worker", memory_limit_in_mb=1024, timeout_s=900)
    )


def message_for(export_id: str) -> dict[str, Any]:
    """An SQS message as ReceiveMessage returns it, naming ``export_id`` (a redelivery, or a duplicate)."""
    body = json.dumps({"v": 1, "export_id": export_id})
    return {"MessageId": f"local-{export_id}", "ReceiptHandle": "local", "Body": body}


@contextmanager
def export_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[ExportAws]:
    """moto's SQS and S3 with the exports' resources; EXPORT_QUEUE_URL and EXPORT_BUCKET pointed at them."""
    from observai import aws_clients

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws_clients.reset_clients()
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        dlq_url = sqs.create_queue(QueueName="observai-test-exports-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(
            QueueName="observai-test-exports",
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
        s3.create_bucket(Bucket=BUCKET)
        monkeypatch.setenv("EXPORT_QUEUE_URL", queue_url)
        monkeypatch.setenv("EXPORT_BUCKET", BUCKET)
        try:
            yield ExportAws(sqs=sqs, s3=s3, queue_url=queue_url, dlq_url=dlq_url, bucket=BUCKET)
        finally:
            aws_clients.reset_clients()
