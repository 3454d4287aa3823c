"""The spool (SQS inline, S3 for large batches, through moto) and its drain into the real Postgres."""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from observai.db.breaker import BreakerState, database_breaker
from observai.errors import Unavailable
from observai.telemetry.codec import batch_to_obj
from observai.telemetry.model import Batch, LogRecord, MetricPoint, MetricType, Span, Temporality
from observai.telemetry.spool import SPOOL_RETRY_AFTER_S, SpooledBatch, spool_batch

from tests.helpers.spool_aws import SpoolAws, invoke_drain, spool_aws

pytestmark = pytest.mark.integration


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[SpoolAws]:
    with spool_aws(monkeypatch) as env:
        yield env


@pytest.fixture
def workspace(database_url: str) -> tuple[UUID, UUID]:
    from observai.tenancy.bootstrap import create_demo_workspace

    demo = create_demo_workspace(f"Spool {uuid.uuid4().hex[:6]}", f"spool-{uuid.uuid4().hex[:10]}@example.test")
    return demo.org_id, demo.project_id


def _now_ns() -> int:
    return time.time_ns() - 60 * 10**9


def make_batch(tag: str, *, logs: int = 3, spans: int = 2, metrics: int = 2, body_size: int = 10) -> Batch:
    t = _now_ns()
    return Batch(
        logs=[
            LogRecord(
                t + i, f"{tag} log {i} " + "x" * body_size, severity_number=9, service="svc", event_id=f"{tag}-l{i}"
            )
            for i in range(logs)
        ],
        spans=[
            Span(
                uuid.uuid4().hex, uuid.uuid4().hex[:16], f"{tag} span {i}", t + i, t + i + 1000, event_id=f"{tag}-s{i}"
            )
            for i in range(spans)
        ],
        metrics=[
            MetricPoint(
                f"{tag}.requests",
                MetricType.SUM,
                t + i,
                {"i": i},
                value=float(i),
                monotonic=True,
                temporality=Temporality.CUMULATIVE,
            )
            for i in range(metrics)
        ],
    )


def spooled(workspace: tuple[UUID, UUID], batch: Batch, key: str | None = None) -> SpooledBatch:
    org_id, project_id = workspace
    return SpooledBatch(
        org_id=org_id,
        project_id=project_id,
        key_id=None,
        idempotency_key=key or f"spool:{uuid.uuid4()}",
        request_hash=uuid.uuid4().hex,
        response={"accepted": batch.accepted, "rejected": 0, "status": "spooled"},
        body_bytes=1234,
        batch=batch,
    )


def counts(db: Any, project_id: UUID, tag: str) -> dict[str, int]:
    logs = db.execute(
        "select count(*) as n, count(distinct event_id) as d from public.logs"
        " where project_id = %s and event_id like %s",
        (project_id, f"{tag}-%"),
    ).fetchone()
    spans = db.execute(
        "select count(*) as n from public.spans where project_id = %s and name like %s", (project_id, f"{tag} span %")
    ).fetchone()
    points = db.execute(
        "select count(*) as n from public.metric_points p join public.metric_series s"
        " on s.project_id = p.project_id and s.series_id = p.series_id where p.project_id = %s and s.name = %s",
        (project_id, f"{tag}.requests"),
    ).fetchone()
    assert logs["n"] == logs["d"], "a log was written twice"
    return {"logs": logs["n"], "spans": spans["n"], "metrics": points["n"]}


# --- spooling ----------------------------------------------------------------------------------------------


def test_a_small_batch_goes_inline_in_the_message(aws: SpoolAws, workspace: tuple[UUID, UUID]) -> None:
    item = spooled(workspace, make_batch("inline"))
    message_id = spool_batch(item)
    (message,) = aws.receive()
    assert message["MessageId"] == message_id
    body = json.loads(message["Body"])
    assert "s3" not in body
    assert body["org_id"] == str(workspace[0]) and body["idempotency_key"] == item.idempotency_key
    assert body["batch"] == batch_to_obj(item.batch)
    assert SpooledBatch.from_obj(body) == item
    assert aws.spool_objects() == []


def test_a_large_batch_goes_to_s3_with_a_pointer(
    aws: SpoolAws, workspace: tuple[UUID, UUID], captured_logs: Any
) -> None:
    item = spooled(workspace, make_batch("large", logs=60, body_size=5000))
    spool_batch(item)
    (message,) = aws.receive()
    assert len(message["Body"]) < 1000
    pointer = json.loads(message["Body"])
    assert pointer["s3"]["bucket"] == aws.bucket
    key = pointer["s3"]["key"]
    assert key.startswith(time.strftime("spool/%Y/%m/", time.gmtime())) and key.endswith(".json.gz")
    assert aws.spool_objects() == [key]
    obj = aws.s3.get_object(Bucket=aws.bucket, Key=key)
    envelope = json.loads(gzip.decompress(obj["Body"].read()))
    assert len(json.dumps(envelope)) > 200_000
    assert SpooledBatch.from_obj(envelope) == item
    # The log line names the object (an S3 key is no credential: not redacted)
    (logged,) = [json.loads(line) for line in captured_logs.getvalue().splitlines() if "batch spooled to S3" in line]
    assert logged["s3_key"] == key


def test_spooling_fails_with_unavailable_when_sqs_fails(
    aws: SpoolAws, workspace: tuple[UUID, UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOOL_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue")
    with pytest.raises(Unavailable) as caught:
        spool_batch(spooled(workspace, make_batch("bad-url")))
    assert caught.value.retry_after_s == SPOOL_RETRY_AFTER_S
    assert caught.value.message == "ingestion is temporarily unavailable; retry"

    # A large batch whose pointer cannot be sent: its S3 object is removed again.
    with pytest.raises(Unavailable):
        spool_batch(spooled(workspace, make_batch("bad-url-large", logs=60, body_size=5000)))
    assert aws.spool_objects() == []

    monkeypatch.delenv("SPOOL_QUEUE_URL")
    with pytest.raises(Unavailable):
        spool_batch(spooled(workspace, make_batch("unset")))


def test_spooling_a_large_batch_without_a_bucket_fails(
    aws: SpoolAws, workspace: tuple[UUID, UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPOOL_BUCKET")
    with pytest.raises(Unavailable):
        spool_batch(spooled(workspace, make_batch("nobucket", logs=60, body_size=5000)))
    assert aws.receive() == []


def test_the_spool_uses_the_s3_store_named_by_s3_endpoint_url_as_exports_do(
    monkeypatch: pytest.MonkeyPatch, workspace: tuple[UUID, UUID], db: Any
) -> None:
    from observai.exports import storage

    # Given a local SQS and S3 (moto's server), named only by AWS_ENDPOINT_URL_SQS and S3_ENDPOINT_URL
    with spool_aws(monkeypatch, server=True) as aws:
        _, project_id = workspace
        # When a batch too large for SQS is spooled, then drained
        spool_batch(spooled(workspace, make_batch("endpoint", logs=60, body_size=5000)))
        (key,) = aws.spool_objects()
        (message,) = aws.receive()
        assert json.loads(message["Body"])["s3"] == {"bucket": aws.bucket, "key": key}
        assert invoke_drain(aws.event([message])) == {"batchItemFailures": []}

        # Then its envelope went to that store (not AWS's S3), was read back from it and deleted there
        assert counts(db, project_id, "endpoint") == {"logs": 60, "spans": 2, "metrics": 2}
        assert aws.spool_objects() == []
        # And the exports' client is the same one setting's
        assert storage.s3().meta.endpoint_url == os.environ["S3_ENDPOINT_URL"]


# --- draining ----------------------------------------------------------------------------------------------


def test_drain_writes_every_batch_exactly_once_even_when_redelivered(
    aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any
) -> None:
    _, project_id = workspace
    spool_batch(spooled(workspace, make_batch("drain-a")))
    spool_batch(spooled(workspace, make_batch("drain-b", logs=60, body_size=5000)))  # via S3
    messages = aws.receive()
    assert len(messages) == 2
    event = aws.event(messages)

    assert invoke_drain(event) == {"batchItemFailures": []}
    assert counts(db, project_id, "drain-a") == {"logs": 3, "spans": 2, "metrics": 2}
    assert counts(db, project_id, "drain-b") == {"logs": 60, "spans": 2, "metrics": 2}
    assert aws.spool_objects() == []  # the S3 envelope is deleted once stored

    # Redelivery of the inline one (SQS at-least-once): nothing written twice.
    inline = [m for m in messages if "s3" not in json.loads(m["Body"])]
    assert invoke_drain(aws.event(inline)) == {"batchItemFailures": []}
    assert counts(db, project_id, "drain-a") == {"logs": 3, "spans": 2, "metrics": 2}


def test_a_redelivered_message_whose_batch_is_stored_is_done_whatever_its_kind(
    aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any, captured_logs: Any
) -> None:
    # Given an inline and an S3-pointer batch, drained once (stored, the S3 envelope deleted), but whose messages
    # stay in the queue (the drain's answer, or the delete, was lost)
    _, project_id = workspace
    spool_batch(spooled(workspace, make_batch("again-inline")))
    spool_batch(spooled(workspace, make_batch("again-s3", logs=60, body_size=5000)))
    first = aws.receive(max_messages=2, visibility_timeout_s=0)
    assert len(first) == 2
    assert invoke_drain(aws.event(first)) == {"batchItemFailures": []}
    assert aws.spool_objects() == []

    # When SQS delivers both again, as often as its receive limit allows
    for receive in range(2, 6):
        again = aws.receive(max_messages=2, visibility_timeout_s=0)
        assert sorted(m["MessageId"] for m in again) == sorted(m["MessageId"] for m in first)
        assert {m["Attributes"]["ApproximateReceiveCount"] for m in again} == {str(receive)}
        logged_before = len(captured_logs.getvalue())
        response = invoke_drain(aws.event(again))

        # Then each is done (nothing fails, so nothing heads for the dead-letter queue), with one info line each
        assert response == {"batchItemFailures": []}
        lines = [json.loads(line) for line in captured_logs.getvalue()[logged_before:].splitlines()]
        settled = [line for line in lines if line["message"] == "spooled batch already stored"]
        assert sorted(line["kind"] for line in settled) == ["inline", "s3"]
        assert {line["level"] for line in settled} == {"INFO"}
        assert not [line for line in lines if line["level"] in ("WARNING", "ERROR")]

    # And nothing was written twice; deleted as the event source mapping does after a success, the queue and its
    # dead-letter queue are empty
    assert counts(db, project_id, "again-inline") == {"logs": 3, "spans": 2, "metrics": 2}
    assert counts(db, project_id, "again-s3") == {"logs": 60, "spans": 2, "metrics": 2}
    for m in again:
        aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=m["ReceiptHandle"])
    assert aws.receive() == []
    assert aws.attribute("ApproximateNumberOfMessages", aws.dlq_url) == 0


def test_a_pointer_whose_object_is_gone_and_batch_never_stored_fails_as_lost(
    aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any, captured_logs: Any
) -> None:
    # Given an S3-pointer batch whose envelope disappeared before any drain stored it
    _, project_id = workspace
    spool_batch(spooled(workspace, make_batch("lost", logs=60, body_size=5000)))
    (key,) = aws.spool_objects()
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)

    # When the drain gets its message
    (message,) = aws.receive()
    response = invoke_drain(aws.event([message]))

    # Then it fails (SQS retries it, then the dead-letter queue holds it), with one error line that says why
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    errors = [json.loads(line) for line in captured_logs.getvalue().splitlines() if '"level":"ERROR"' in line]
    assert [e["message"] for e in errors] == ["spooled batch lost: its S3 object is missing and it was never stored"]
    assert errors[0]["project_id"] == str(project_id)
    assert counts(db, project_id, "lost")["logs"] == 0


def test_a_poisoned_record_fails_alone(aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any) -> None:
    _, project_id = workspace
    spool_batch(spooled(workspace, make_batch("good-1")))
    spool_batch(spooled(workspace, make_batch("good-2")))
    messages = aws.receive()
    bad_envelope = spooled(workspace, make_batch("poison")).to_obj()
    bad_envelope["batch"]["logs"][0]["nope"] = 1
    poisoned = [
        {"MessageId": "poison-not-json", "ReceiptHandle": "r1", "Body": "{not json"},
        {"MessageId": "poison-envelope", "ReceiptHandle": "r2", "Body": json.dumps(bad_envelope)},
        {
            "MessageId": "poison-s3-missing",
            "ReceiptHandle": "r3",
            "Body": json.dumps({"v": 1, "s3": {"bucket": aws.bucket, "key": "spool/2026/01/01/gone.json.gz"}}),
        },
    ]
    event = aws.event([poisoned[0], messages[0], poisoned[1], messages[1], poisoned[2]])
    response = invoke_drain(event)
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {m["MessageId"] for m in poisoned}
    assert counts(db, project_id, "good-1")["logs"] == 3
    assert counts(db, project_id, "good-2")["logs"] == 3
    assert counts(db, project_id, "poison")["logs"] == 0


def test_drain_while_the_database_is_down_requeues_instead_of_failing(
    aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from observai.db import close_connection

    _, project_id = workspace
    for i in range(3):
        spool_batch(spooled(workspace, make_batch(f"down-{i}")))
    messages = aws.receive()
    assert len(messages) == 3

    close_connection()
    monkeypatch.setenv("DATABASE_URL", "postgresql://observai@127.0.0.1:1/none")  # refused at once
    try:
        response = invoke_drain(aws.event(messages))
        assert response == {"batchItemFailures": []}  # the originals are deleted: copies were put back
        assert database_breaker.state is BreakerState.OPEN  # one connection failure, the rest skipped
    finally:
        close_connection()
        monkeypatch.setenv("DATABASE_URL", database_url)
    assert aws.attribute("ApproximateNumberOfMessagesDelayed") == 3
    for m in messages:  # as the event source mapping would
        aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=m["ReceiptHandle"])

    # The delayed copies carry the requeue count and come back later; drain them once the database is back.
    database_breaker.reset()
    aws.sqs.set_queue_attributes(QueueUrl=aws.queue_url, Attributes={"DelaySeconds": "0"})
    copies = _receive_delayed(aws, 3)
    assert sorted(b["requeues"] for b in aws.bodies(copies)) == [1, 1, 1]
    assert invoke_drain(aws.event(copies)) == {"batchItemFailures": []}
    for i in range(3):
        assert counts(db, project_id, f"down-{i}") == {"logs": 3, "spans": 2, "metrics": 2}


def _receive_delayed(aws: SpoolAws, n: int) -> list[dict[str, Any]]:
    """moto honours DelaySeconds: wait the first requeue delay (30 s) out, with a cheap poll."""
    from unittest import mock

    from moto.sqs import models

    # Make delayed messages visible now instead of sleeping 30 s.
    with mock.patch.object(models.Message, "delayed", new_callable=mock.PropertyMock, return_value=False):
        return aws.receive(max_messages=n)


def test_local_drain_loop_deletes_successes_and_keeps_failures(
    aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any
) -> None:
    _, project_id = workspace
    for i in range(12):
        spool_batch(spooled(workspace, make_batch(f"loop-{i}", logs=1, spans=0, metrics=0)))
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="garbage")
    report = aws.drain(visibility_timeout_s=60)
    assert report.received == 13 and report.deleted == 12 and report.failed == 1
    assert sum(counts(db, project_id, f"loop-{i}")["logs"] for i in range(12)) == 12
    assert aws.attribute("ApproximateNumberOfMessagesNotVisible") == 1  # the garbage, retried later by SQS


def test_drain_drops_the_batches_of_a_deleted_project(
    aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any, captured_logs: Any
) -> None:
    # Given batches spooled for a project, one inline and one through S3, and one of another project
    _, project_id = workspace
    other = (workspace[0], db.execute(
        "insert into public.projects (org_id, name, slug) values (%s, 'Other', %s) returning id",
        (workspace[0], f"other-{uuid.uuid4().hex[:8]}"),
    ).fetchone()["id"])  # fmt: skip
    spool_batch(spooled(workspace, make_batch("deleted-a")))
    spool_batch(spooled(workspace, make_batch("deleted-b", logs=60, body_size=5000)))
    spool_batch(spooled(other, make_batch("kept")))
    messages = aws.receive()
    assert len(messages) == 3 and len(aws.spool_objects()) == 1

    # When the project is deleted before the drain gets to them
    db.execute("delete from public.projects where id = %s", (project_id,))
    response = invoke_drain(aws.event(messages))

    # Then its batches are done with (not failed, so never retried), nothing is written for it, its S3 envelope
    # is deleted, and each drop is logged; the other project's batch is stored
    assert response == {"batchItemFailures": []}
    assert counts(db, project_id, "deleted-a") == {"logs": 0, "spans": 0, "metrics": 0}
    assert counts(db, project_id, "deleted-b") == {"logs": 0, "spans": 0, "metrics": 0}
    assert db.execute(
        "select count(*) as n from public.ingest_idempotency where project_id = %s", (project_id,)
    ).fetchone()["n"] == 0  # fmt: skip
    assert aws.spool_objects() == []
    dropped = [json.loads(line) for line in captured_logs.getvalue().splitlines() if "spooled batch dropped" in line]
    assert sorted(d["project_id"] for d in dropped) == [str(project_id)] * 2
    assert counts(db, other[1], "kept") == {"logs": 3, "spans": 2, "metrics": 2}

    # And delivered again (its S3 envelope gone by now), each is still done with
    assert invoke_drain(aws.event(messages)) == {"batchItemFailures": []}
    assert counts(db, project_id, "deleted-b") == {"logs": 0, "spans": 0, "metrics": 0}


def test_drain_drops_the_batches_of_a_deleted_organization(
    aws: SpoolAws, workspace: tuple[UUID, UUID], db: Any
) -> None:
    # Given a batch spooled for a project whose organization is then deleted
    org_id, project_id = workspace
    spool_batch(spooled(workspace, make_batch("org-gone")))
    messages = aws.receive()
    db.execute("delete from public.organizations where id = %s", (org_id,))

    # When the drain gets to it, twice (a redelivery)
    # Then it is done with each time, and nothing is written
    assert invoke_drain(aws.event(messages)) == {"batchItemFailures": []}
    assert invoke_drain(aws.event(messages)) == {"batchItemFailures": []}
    assert counts(db, project_id, "org-gone") == {"logs": 0, "spans": 0, "metrics": 0}
