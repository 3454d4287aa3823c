"""An SQS queue with its dead-letter queue and an S3 bucket under moto: what the spool and the exports both run on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from observai_local.sqs import queue_arn, sqs_event

REGION = "us-east-1"


@dataclass
class QueueAndBucket:
    sqs: Any
    s3: Any
    queue_url: str
    dlq_url: str
    bucket: str

    def receive(self, *, max_messages: int | None = None, visibility_timeout_s: int = 30) -> list[dict[str, Any]]:
        """The messages visible now, up to ``max_messages`` (kept invisible for ``visibility_timeout_s``)."""
        out: list[dict[str, Any]] = []
        while max_messages is None or len(out) < max_messages:
            wanted = 10 if max_messages is None else min(10, max_messages - len(out))
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=wanted,
                VisibilityTimeout=visibility_timeout_s,
                AttributeNames=["All"],
            ).get("Messages")
            if not got:
                break
            out.extend(got)
        return out

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The SQS event a Lambda event source mapping would deliver for ``messages``."""
        return sqs_event(messages, source_arn=queue_arn(self.queue_url))

    def keys(self, prefix: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents") or [])


@contextmanager
def queue_and_bucket(
    monkeypatch: pytest.MonkeyPatch, name: str, *, visibility_timeout_s: int = 30
) -> Iterator[QueueAndBucket]:
    """moto's SQS and S3: queue ``name`` redriving to ``name``-dlq after 5 receives, and bucket ``name``; the
    shared boto3 clients (observai.aws_clients) are reset on the way in and out."""
    from observai import aws_clients

    _fake_credentials(monkeypatch)
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    with mock_aws():
        aws_clients.reset_clients()
        sqs = boto3.client("sqs", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        try:
            yield create_queue_and_bucket(sqs, s3, name, visibility_timeout_s=visibility_timeout_s)
        finally:
            aws_clients.reset_clients()


@contextmanager
def queue_and_bucket_on_server(
    monkeypatch: pytest.MonkeyPatch, name: str, *, visibility_timeout_s: int = 30
) -> Iterator[QueueAndBucket]:
    """As ``queue_and_bucket``, on moto's server (a free localhost port) as a local SQS and S3 are run: reached only
    through AWS_ENDPOINT_URL_SQS and S3_ENDPOINT_URL, which point at it; AWS's own endpoints are never asked."""
    from moto.server import ThreadedMotoServer
    from observai import aws_clients

    _fake_credentials(monkeypatch)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    aws_clients.reset_clients()
    try:
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
        yield create_queue_and_bucket(sqs, s3, name, visibility_timeout_s=visibility_timeout_s)
    finally:
        aws_clients.reset_clients()
        server.stop()


def create_queue_and_bucket(sqs: Any, s3: Any, name: str, *, visibility_timeout_s: int) -> QueueAndBucket:
    """Queue ``name`` redriving to ``name``-dlq after 5 receives (as template.yaml's queues), and bucket ``name``."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_s),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    s3.create_bucket(Bucket=name)
    return QueueAndBucket(sqs=sqs, s3=s3, queue_url=queue_url, dlq_url=dlq_url, bucket=name)


def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
