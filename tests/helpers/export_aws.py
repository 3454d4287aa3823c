"""The exports' AWS side under moto: the export queue + dead-letter queue + bucket, and the worker run on it."""

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
from tests.helpers.moto_queue import QueueAndBucket, queue_and_bucket

BUCKET = "observai-test-exports"


@dataclass
class ExportAws(QueueAndBucket):
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
        return self.keys("exports/")


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
    with queue_and_bucket(monkeypatch, BUCKET) as aws:
        monkeypatch.setenv("EXPORT_QUEUE_URL", aws.queue_url)
        monkeypatch.setenv("EXPORT_BUCKET", aws.bucket)
        yield ExportAws(**vars(aws))
