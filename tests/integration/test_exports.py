"""Exports end to end, in-process: telemetry ingested through the ingest function → POST an export → the worker
run on the queued message (moto SQS + S3) → GET → the file downloaded through its pre-signed URL → gunzipped
NDJSON compared with the rows. Filters, empty exports, redelivery, failures, limits, bad input, and tenant
isolation on every route."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
import requests
from observai.exports import worker

from tests.helpers.export_aws import ExportAws, export_aws, invoke_worker, message_for
from tests.helpers.ingest import (
    IngestProject,
    add_key,
    iso,
    log,
    logs_of,
    make_project,
    post_native,
    rows,
    span,
    spans_of,
)
from tests.helpers.inprocess import Result, invoke
from tests.helpers.users import User, add_membership, make_user
from tests.helpers.webhook_schemas import published_errors

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(hours=2)  # the logs and spans: one a minute from here
END = BASE + timedelta(minutes=30)


@dataclass
class Tenant:
    project: IngestProject  # its key can ingest
    reader: IngestProject  # a read key of the same project
    owner: User
    member: User
    viewer: User

    @property
    def path(self) -> str:
        return f"/v1/projects/{self.project.project_id}/exports"


def _rfc3339(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expected_log(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "project_id": str(row["project_id"]),
        "time": _rfc3339(row["time"]),
        "observed_time": _rfc3339(row["observed_time"]),
        "severity_number": row["severity_number"],
        "severity_text": row["severity_text"],
        "service": row["service"],
        "body": row["body"],
        "trace_id": row["trace_id"],
        "span_id": row["span_id"],
        "flags": row["flags"],
        "event_name": row["event_name"],
        "attributes": row["attributes"],
        "resource": row["resource"],
        "scope": row["scope"],
    }


def expected_span(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "project_id": str(row["project_id"]),
        "trace_id": row["trace_id"],
        "span_id": row["span_id"],
        "parent_span_id": row["parent_span_id"],
        "name": row["name"],
        "kind": row["kind"],
        "service": row["service"],
        "start_time": _rfc3339(row["start_time"]),
        "end_time": _rfc3339(row["end_time"]),
        "duration_ns": row["duration_ns"],
        "status_code": row["status_code"],
        "status_message": row["status_message"],
        "trace_state": row["trace_state"],
        "flags": row["flags"],
        "attributes": row["attributes"],
        "resource": row["resource"],
        "scope": row["scope"],
        "events": row["events"],
        "links": row["links"],
    }


def _telemetry() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for minute in range(30):
        at = BASE + timedelta(minutes=minute, seconds=7)
        failed = minute % 3 == 0
        events.append(
            log(
                f"checkout failed for order {minute}" if failed else f"request served {minute}",
                at=at,
                severity="error" if failed else "info",
                service="shop" if minute % 2 else "api",
                attributes={"http.status_code": 500 if failed else 200, "user": {"id": minute}},
                resource={"host.name": "web-1"},
                trace_id=uuid.uuid4().hex,
            )
        )
        events.append(
            span(
                f"GET /orders/{minute % 4}",
                start=at,
                duration_ms=3.25 * (minute + 1),
                service="api" if minute % 2 else "web",
                status="error" if failed else "ok",
                kind="server",
                attributes={"http.route": "/orders/{id}", "n": minute},
            )
        )
    # Outside [BASE, END): never exported.
    events.append(log("checkout failed long before", at=BASE - timedelta(minutes=5)))
    events.append(log("checkout failed right at the end", at=END))
    events.append(span("GET /late", start=END + timedelta(seconds=1)))
    return events


@pytest.fixture(scope="module")
def tenant(database_url: str) -> Tenant:
    project = make_project(scopes=("ingest",), label="Exports")
    response = post_native(project.headers, _telemetry())
    assert response.status == 202, response.text
    assert response.data["accepted"] == 63 and response.data["status"] == "stored"
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        users = {}
        for role in ("owner", "member", "viewer"):
            users[role] = make_user(db)
            add_membership(db, project.org_id, users[role].id, role)
    return Tenant(project, add_key(project, ("read",)), users["owner"], users["member"], users["viewer"])


@pytest.fixture(scope="module")
def stranger(database_url: str) -> tuple[User, IngestProject]:
    """Another organization: its owner and its project's read key."""
    other = make_project(scopes=("read", "ingest"), label="Stranger")
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
        owner = make_user(db)
        add_membership(db, other.org_id, owner.id, "owner")
    return owner, other


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[ExportAws]:
    monkeypatch.setenv("EXPORT_MAX_CONCURRENT", "100")  # the limit has a test of its own
    with export_aws(monkeypatch) as env:
        yield env


def post(headers: dict[str, str], path: str, body: Any) -> Result:
    return invoke("exports", "POST", path, headers=headers, json_body=body)


def get(headers: dict[str, str], path: str, query: str = "") -> Result:
    return invoke("exports", "GET", path, headers=headers, query=query)


def logs_body(**fields: Any) -> dict[str, Any]:
    return {"signal": "logs", "from": iso(BASE), "to": iso(END), **fields}


def start(tenant: Tenant, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = post(headers or tenant.member.headers, tenant.path, body)
    assert response.status == 202, response.text
    return dict(response.data)


def finished(aws: ExportAws, tenant: Tenant, export_id: str) -> dict[str, Any]:
    """Run the worker over the queue (as the event source mapping would), then GET the export."""
    report = aws.drain()
    assert report.failed == 0, report
    response = get(tenant.member.headers, f"{tenant.path}/{export_id}")
    assert response.status == 200, response.text
    return dict(response.data)


def download(export: dict[str, Any]) -> list[dict[str, Any]]:
    """The file through its pre-signed URL (moto answers the HTTP GET), gunzipped, one JSON object a line."""
    response = requests.get(export["download_url"], timeout=10)
    assert response.status_code == 200
    assert len(response.content) == export["bytes"]
    text = gzip.decompress(response.content).decode()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def logs_in_range(database_url: str, project_id: UUID) -> list[dict[str, Any]]:
    return [r for r in logs_of(database_url, project_id) if BASE <= r["time"] < END]


# --- round trips ---------------------------------------------------------------------------------------------


def test_a_logs_export_round_trip(aws: ExportAws, tenant: Tenant, database_url: str) -> None:
    # Given 30 logs in [BASE, END) and two just outside, ingested through the ingest function
    # When a member starts an export of that range
    created = start(tenant, logs_body())
    assert created["status"] == "queued" and created["download_url"] is None
    assert datetime.fromisoformat(created["from"]) == BASE and datetime.fromisoformat(created["to"]) == END
    assert aws.messages_waiting() == 1

    # And the worker runs on the queued message
    export = finished(aws, tenant, created["id"])

    # Then it succeeded, with every row of the range in the file, oldest first, as the rows are stored
    assert export["status"] == "succeeded", export
    wanted = [expected_log(r) for r in logs_in_range(database_url, tenant.project.project_id)]
    assert len(wanted) == 30
    assert export["row_count"] == 30
    lines = download(export)
    assert lines == wanted
    assert lines[0]["attributes"] == {"http.status_code": 500, "user": {"id": 0}}  # JSON objects, typed values
    assert lines[0]["time"].endswith("Z") and "T" in lines[0]["time"]

    # And the object is where the design says, as gzip, and the message is gone from the queue
    key = f"exports/{tenant.project.org_id}/{tenant.project.project_id}/{export['id']}.ndjson.gz"
    assert key in aws.objects()
    head = aws.s3.head_object(Bucket=aws.bucket, Key=key)
    assert head["ContentType"] == "application/gzip"
    assert head["ContentLength"] == export["bytes"]
    assert aws.messages_waiting() == 0
    assert export["started_at"] and export["finished_at"] and export["expires_at"]
    assert export["download_url_expires_at"]

    # And the start is in the organization's audit trail, by the member who asked
    (audit,) = rows(
        database_url,
        "select actor_type, actor_id, org_id, details from public.audit_log where action = 'export.create'"
        " and target_id = %s",
        (export["id"],),
    )
    assert audit["actor_type"] == "user" and audit["actor_id"] == str(tenant.member.id)
    assert audit["org_id"] == tenant.project.org_id and audit["details"]["signal"] == "logs"

    # And its completion left through the outbox for the webhooks, as the published schema says
    (event,) = rows(
        database_url,
        "select type, payload from public.outbox_events where payload -> 'data' ->> 'export_id' = %s",
        (export["id"],),
    )
    assert event["type"] == "export.completed" and published_errors(event["payload"]) == []
    data = event["payload"]["data"]
    assert (data["status"], data["row_count"], data["bytes"]) == ("succeeded", 30, export["bytes"])


def test_a_spans_export_with_filters_by_a_read_key(aws: ExportAws, tenant: Tenant, database_url: str) -> None:
    # Given spans of two services, some failed; When a read key exports the api service's failed spans
    body = {"signal": "spans", "from": iso(BASE), "to": iso(END), "service": "api", "status": "error"}
    created = start(tenant, body, tenant.reader.headers)
    assert created["filters"] == {"service": "api", "name": None, "status": "error"}
    export = finished(aws, tenant, created["id"])

    # Then the file holds exactly those spans, as stored
    assert export["status"] == "succeeded", export
    wanted = [
        expected_span(r)
        for r in spans_of(database_url, tenant.project.project_id)
        if BASE <= r["start_time"] < END and r["service"] == "api" and r["status_code"] == "error"
    ]
    assert len(wanted) == 5  # odd minutes divisible by 3: 3, 9, 15, 21, 27
    assert download(export) == wanted
    assert export["row_count"] == 5


def test_a_query_filters_the_logs(aws: ExportAws, tenant: Tenant, database_url: str) -> None:
    # Given logs whose bodies say "checkout failed" every third minute
    # When exporting with the free word "checkout"
    export = finished(aws, tenant, start(tenant, logs_body(query="checkout"))["id"])

    # Then only those lines, and none from outside the range (two more say "checkout")
    lines = download(export)
    assert [line["body"] for line in lines] == [f"checkout failed for order {m}" for m in range(0, 30, 3)]
    assert export["row_count"] == 10 and export["query"] == "checkout"


def test_an_empty_export_succeeds_with_an_empty_file(aws: ExportAws, tenant: Tenant) -> None:
    # Given a range without telemetry (and a word no line has)
    empty_range = logs_body(**{"from": iso(BASE - timedelta(days=3)), "to": iso(BASE - timedelta(days=2))})
    by_range = finished(aws, tenant, start(tenant, empty_range)["id"])
    by_word = finished(aws, tenant, start(tenant, logs_body(query="zebra"))["id"])

    # Then both succeed with no rows, and a valid gzip file of nothing
    for export in (by_range, by_word):
        assert export["status"] == "succeeded" and export["row_count"] == 0
        assert download(export) == []


# --- the worker: redelivery, claims, failures ----------------------------------------------------------------


def _state(db: psycopg.Connection[Any], export_id: str) -> dict[str, Any]:
    row = db.execute(
        "select status, attempts, row_count, error, finished_at, lease_until from public.exports where id = %s",
        (export_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


def test_a_redelivered_message_does_nothing_once_the_export_is_finished(
    aws: ExportAws, tenant: Tenant, db: psycopg.Connection[Any]
) -> None:
    # Given an export the worker finished
    export = finished(aws, tenant, start(tenant, logs_body(query="served"))["id"])
    before = _state(db, export["id"])
    key = f"exports/{tenant.project.org_id}/{tenant.project.project_id}/{export['id']}.ndjson.gz"
    modified = aws.s3.head_object(Bucket=aws.bucket, Key=key)["LastModified"]

    # When SQS delivers its message again (at-least-once), twice in one batch
    response = invoke_worker(aws.event([message_for(export["id"]), message_for(export["id"])]))

    # Then both records succeed and nothing changes: no second attempt, no second upload
    assert response == {"batchItemFailures": []}
    assert _state(db, export["id"]) == before and before["attempts"] == 1
    assert aws.s3.head_object(Bucket=aws.bucket, Key=key)["LastModified"] == modified


def test_a_live_claim_is_left_alone_and_an_expired_one_is_taken_over(
    aws: ExportAws, tenant: Tenant, db: psycopg.Connection[Any]
) -> None:
    # Given an export a worker claimed (running, lease in the future), its message consumed
    created = start(tenant, logs_body())
    aws.receive()
    db.execute(
        "update public.exports set status = 'running', attempts = 1, lease_until = now() + interval '10 minutes'"
        " where id = %s",
        (created["id"],),
    )

    # When a duplicate message arrives: nothing happens (the live worker owns it)
    assert invoke_worker(aws.event([message_for(created["id"])])) == {"batchItemFailures": []}
    assert _state(db, created["id"])["status"] == "running"
    assert _state(db, created["id"])["attempts"] == 1

    # When the claim has expired (that worker died) and the message comes back: the export is restarted
    db.execute("update public.exports set lease_until = now() - interval '1 second' where id = %s", (created["id"],))
    assert invoke_worker(aws.event([message_for(created["id"])])) == {"batchItemFailures": []}
    state = _state(db, created["id"])
    assert state["status"] == "succeeded" and state["attempts"] == 2 and state["row_count"] == 30


def test_a_missing_bucket_fails_the_export_with_a_reason_not_a_retry_loop(
    aws: ExportAws, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]
) -> None:
    # Given an export queued while the bucket exists
    created = start(tenant, logs_body())

    # When the worker runs and the bucket is gone
    monkeypatch.setenv("EXPORT_BUCKET", "observai-test-no-such-bucket")
    report = aws.drain()

    # Then the record succeeds (it is not retried), the export failed, saying why, on its first attempt
    assert report.failed == 0 and report.deleted == 1
    state = _state(db, created["id"])
    assert state["status"] == "failed" and state["attempts"] == 1
    assert "observai-test-no-such-bucket" in state["error"] and "does not exist" in state["error"]
    assert aws.messages_waiting() == 0
    response = get(tenant.member.headers, f"{tenant.path}/{created['id']}")
    assert response.data["status"] == "failed" and response.data["download_url"] is None
    assert response.data["error"] == state["error"]
    # And the failure left through the outbox too (export.completed, status failed, with the reason)
    (event,) = db.execute(
        "select payload from public.outbox_events where payload -> 'data' ->> 'export_id' = %s", (created["id"],)
    ).fetchall()
    assert event["payload"]["data"]["status"] == "failed" and event["payload"]["data"]["error"] == state["error"]
    assert published_errors(event["payload"]) == []


def test_an_unreachable_store_is_retried_then_given_up(
    aws: ExportAws, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]
) -> None:
    # Given an S3 endpoint nobody listens on (a real, closed localhost port)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    created = start(tenant, logs_body())
    (original,) = aws.receive()
    aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=original["ReceiptHandle"])
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")

    # When the worker tries: each failure puts the export back to queued and re-sends its message, delayed
    for attempt in (1, 2):
        assert worker.run_export(UUID(created["id"])) == "released"
        state = _state(db, created["id"])
        assert state["status"] == "queued" and state["attempts"] == attempt
        assert state["error"].startswith(f"attempt {attempt} failed: EndpointConnectionError")
        assert aws.messages_waiting() == attempt  # its message re-sent, delayed (not visible yet)
        assert aws.receive() == []

    # Then the third attempt gives up: failed, with the last reason
    assert worker.run_export(UUID(created["id"])) == "failed"
    state = _state(db, created["id"])
    assert state["status"] == "failed" and state["attempts"] == worker.MAX_ATTEMPTS
    assert state["error"].startswith("gave up after 3 attempts; last: EndpointConnectionError")
    # And the delayed messages, when they come, do nothing
    assert worker.run_export(UUID(created["id"])) == "finished"


def test_too_many_rows_fail_the_export(
    aws: ExportAws, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]
) -> None:
    monkeypatch.setenv("EXPORT_MAX_ROWS", "29")
    export = finished(aws, tenant, start(tenant, logs_body())["id"])
    assert export["status"] == "failed"
    assert export["error"] == "more than 29 rows match: narrow the time range or the query"
    assert f"{export['id']}.ndjson.gz" not in " ".join(aws.objects())

    monkeypatch.setenv("EXPORT_MAX_ROWS", "30")  # exactly the limit is fine
    assert finished(aws, tenant, start(tenant, logs_body())["id"])["row_count"] == 30


def test_a_message_naming_no_export_fails_alone(aws: ExportAws, tenant: Tenant) -> None:
    created = start(tenant, logs_body(query="served"))
    (good,) = aws.receive()
    bad = {"MessageId": "poison", "ReceiptHandle": "r", "Body": "{not json"}
    gone = message_for(str(uuid.uuid4()))  # a deleted export: nothing to do
    response = invoke_worker(aws.event([good, bad, gone]))
    assert response == {"batchItemFailures": [{"itemIdentifier": "poison"}]}
    assert get(tenant.member.headers, f"{tenant.path}/{created['id']}").data["status"] == "succeeded"


def test_an_export_that_cannot_be_queued_is_failed_and_answered_503(
    aws: ExportAws, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]
) -> None:
    monkeypatch.setenv("EXPORT_QUEUE_URL", aws.queue_url + "-missing")
    response = post(tenant.member.headers, tenant.path, logs_body())
    assert response.status == 503 and response.error["code"] == "unavailable"
    assert response.header("Retry-After") == "30"
    row = db.execute(
        "select status, error from public.exports where project_id = %s order by created_at desc limit 1",
        (tenant.project.project_id,),
    ).fetchone()
    assert row is not None and row["status"] == "failed" and row["error"].startswith("could not be queued")


def test_exports_not_configured_answer_503(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPORT_QUEUE_URL", raising=False)
    monkeypatch.delenv("EXPORT_BUCKET", raising=False)
    response = post(tenant.member.headers, tenant.path, logs_body())
    assert response.status == 503
    assert "not configured" in response.error["message"]


# --- limits and links ----------------------------------------------------------------------------------------


def test_a_project_runs_a_few_exports_at_a_time(
    aws: ExportAws, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection[Any]
) -> None:
    # Given a project allowed 2 unfinished exports
    monkeypatch.setenv("EXPORT_MAX_CONCURRENT", "2")
    project = make_project(scopes=("read",), label="Limits")
    path = f"/v1/projects/{project.project_id}/exports"
    for _ in range(2):
        assert post(project.headers, path, logs_body()).status == 202

    # When a third is asked for: 429 with Retry-After, nothing recorded
    refused = post(project.headers, path, logs_body())
    assert refused.status == 429 and refused.error["code"] == "rate_limited"
    assert refused.header("Retry-After") == "60"
    assert refused.error["details"] == {"unfinished": 2, "limit": 2}
    assert len(get(project.headers, path).data) == 2

    # Then once they finish, another can start
    assert aws.drain().deleted == 2
    assert post(project.headers, path, logs_body()).status == 202

    # And an export whose worker died long ago stops counting (failed, with the reason)
    db.execute(
        "update public.exports set status = 'running', attempts = 1, lease_until = now() - interval '3 hours'"
        " where project_id = %s and status = 'queued'",
        (project.project_id,),
    )
    assert [post(project.headers, path, logs_body()).status for _ in range(3)] == [202, 202, 429]
    lost = db.execute(
        "select error from public.exports where project_id = %s and attempts = 1 and status = 'failed'",
        (project.project_id,),
    ).fetchall()
    assert [r["error"] for r in lost] == [
        "the export worker stopped before finishing (timed out or crashed); start a new export"
    ]


def test_no_download_link_before_success_or_after_expiry(
    aws: ExportAws, tenant: Tenant, db: psycopg.Connection[Any]
) -> None:
    created = start(tenant, logs_body(query="served"))
    queued = get(tenant.viewer.headers, f"{tenant.path}/{created['id']}").data
    assert queued["status"] == "queued" and queued["download_url"] is None

    export = finished(aws, tenant, created["id"])
    assert export["download_url"]
    db.execute("update public.exports set expires_at = now() - interval '1 second' where id = %s", (created["id"],))
    expired = get(tenant.viewer.headers, f"{tenant.path}/{created['id']}").data
    assert expired["status"] == "succeeded" and expired["download_url"] is None


def test_the_list_is_newest_first_with_a_cursor(aws: ExportAws, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_project(scopes=("read",), label="List")
    path = f"/v1/projects/{project.project_id}/exports"
    ids = [post(project.headers, path, logs_body()).data["id"] for _ in range(3)]

    first = get(project.headers, path, "limit=2")
    assert first.status == 200 and [e["id"] for e in first.data] == ids[::-1][:2]
    assert all(e["download_url"] is None for e in first.data)
    cursor = first.json()["meta"]["next_cursor"]
    second = get(project.headers, path, f"limit=2&cursor={cursor}")
    assert [e["id"] for e in second.data] == ids[:1] and second.json()["meta"]["next_cursor"] is None

    bad = get(project.headers, path, "cursor=not-a-cursor")
    assert bad.status == 400 and bad.error["code"] == "invalid_input"


# --- who may do what -------------------------------------------------------------------------------------------


def test_roles_and_scopes(aws: ExportAws, tenant: Tenant) -> None:
    # Owners and members start exports; viewers read them but may not start one
    assert post(tenant.owner.headers, tenant.path, logs_body()).status == 202
    created = start(tenant, logs_body())
    refused = post(tenant.viewer.headers, tenant.path, logs_body())
    assert refused.status == 403 and refused.error["code"] == "forbidden"
    assert get(tenant.viewer.headers, f"{tenant.path}/{created['id']}").status == 200
    assert get(tenant.viewer.headers, tenant.path).status == 200

    # A key without the read scope (ingest only) may do nothing here
    for response in (
        post(tenant.project.headers, tenant.path, logs_body()),
        get(tenant.project.headers, tenant.path),
        get(tenant.project.headers, f"{tenant.path}/{created['id']}"),
    ):
        assert response.status == 403 and response.error["code"] == "scope_missing"

    # No credentials: 401
    assert post({}, tenant.path, logs_body()).status == 401
    assert get({}, tenant.path).status == 401


def test_tenant_isolation_on_every_route(
    aws: ExportAws, tenant: Tenant, stranger: tuple[User, IngestProject], database_url: str
) -> None:
    # Given an export of the tenant's project, and a stranger (another org's owner, and its project's read key)
    export = finished(aws, tenant, start(tenant, logs_body())["id"])
    owner, other = stranger
    own_path = f"/v1/projects/{other.project_id}/exports"

    # When the stranger reaches for the tenant's project: 404 everywhere, nothing created
    for headers in (owner.headers, other.headers):
        for response in (
            post(headers, tenant.path, logs_body()),
            get(headers, tenant.path),
            get(headers, f"{tenant.path}/{export['id']}"),
        ):
            assert response.status == 404, response.text
            assert response.error["code"] == "not_found"
            assert export["id"] not in response.text

        # Nor through their own project's path: the export id belongs to another project
        response = get(headers, f"{own_path}/{export['id']}")
        assert response.status == 404 and response.error["code"] == "not_found"
        listed = get(headers, own_path)
        assert listed.status == 200 and export["id"] not in listed.text
    assert get(tenant.member.headers, tenant.path).status == 200

    # And RLS hides the row from the stranger even with a query that forgets the project
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        for claims in (
            {"sub": str(owner.id), "role": "authenticated"},
            {"role": "authenticated", "api_key": {"project_id": str(other.project_id)}},
        ):
            with conn.transaction():
                conn.execute("select set_config('role', 'authenticated', true)")
                conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
                seen = conn.execute("select id from public.exports where id = %s", (export["id"],)).fetchall()
                assert seen == []
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("update public.exports set status = 'failed' where id = %s", (export["id"],))


# --- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"signal": "metrics", "from": iso(BASE), "to": iso(END)}, 422, "validation_error"),
        ({"signal": "logs", "from": iso(END), "to": iso(BASE)}, 422, "validation_error"),
        ({"signal": "logs", "from": iso(BASE), "to": iso(BASE)}, 422, "validation_error"),
        ({"signal": "logs", "from": iso(BASE - timedelta(days=32)), "to": iso(BASE)}, 422, "validation_error"),
        ({"signal": "logs", "from": "2026-11-22T10:00:00", "to": iso(END)}, 422, "validation_error"),  # no offset
        ({"signal": "logs", "from": "yesterday", "to": iso(END)}, 422, "validation_error"),
        ({"signal": "logs", "to": iso(END)}, 422, "validation_error"),
        ({"signal": "spans", "from": iso(BASE), "to": iso(END), "query": "boom"}, 422, "validation_error"),
        ({"signal": "logs", "from": iso(BASE), "to": iso(END), "service": "api"}, 422, "validation_error"),
        ({"signal": "spans", "from": iso(BASE), "to": iso(END), "status": "broken"}, 422, "validation_error"),
        ({"signal": "logs", "from": iso(BASE), "to": iso(END), "query": "x" * 2001}, 422, "validation_error"),
        ({"signal": "logs", "from": iso(BASE), "to": iso(END), "format": "csv"}, 422, "validation_error"),
        ({"signal": "logs", "from": iso(BASE), "to": iso(END), "query": '"unterminated'}, 400, "query_syntax_error"),
    ],
)
def test_bad_input_is_a_4xx_and_records_nothing(
    aws: ExportAws, tenant: Tenant, db: psycopg.Connection[Any], body: dict[str, Any], status: int, code: str
) -> None:
    before = db.execute(
        "select count(*) as n from public.exports where project_id = %s", (tenant.project.project_id,)
    ).fetchone()
    response = post(tenant.member.headers, tenant.path, body)
    assert response.status == status, response.text
    assert response.error["code"] == code
    after = db.execute(
        "select count(*) as n from public.exports where project_id = %s", (tenant.project.project_id,)
    ).fetchone()
    assert after == before
    assert aws.messages_waiting() == 0


def test_malformed_requests(aws: ExportAws, tenant: Tenant) -> None:
    raw = invoke(
        "exports", "POST", tenant.path, headers={**tenant.member.headers, "content-type": "application/json"}, body="{"
    )
    assert raw.status == 400 and raw.error["code"] == "malformed_json"
    assert get(tenant.member.headers, f"{tenant.path}/not-a-uuid").status == 422
    assert get(tenant.member.headers, "/v1/projects/not-a-uuid/exports").status == 422
    missing = get(tenant.member.headers, f"{tenant.path}/{uuid.uuid4()}")
    assert missing.status == 404 and missing.error["code"] == "not_found"
    assert get(tenant.member.headers, tenant.path, "limit=0").status == 422


def test_a_large_export_streams_in_chunks_and_uploads_in_parts(aws: ExportAws, db: psycopg.Connection[Any]) -> None:
    # Given 150,000 logs of barely compressible bodies (arranged directly: the export, not ingestion, is tested)
    project = make_project(scopes=("read",), label="Large")
    db.execute(
        "insert into public.logs (org_id, project_id, time, severity_number, body, attributes)"
        " select %s, %s, %s::timestamptz + g * interval '1 millisecond', 9,"
        "  md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) || md5((g * 31)::text), jsonb_build_object('n', g)"
        " from generate_series(1, 150000) g",
        (project.org_id, project.project_id, BASE),
    )
    path = f"/v1/projects/{project.project_id}/exports"

    # When it is exported
    created = post(project.headers, path, logs_body()).data
    assert aws.drain().failed == 0
    export = get(project.headers, f"{path}/{created['id']}").data

    # Then every row is there once, in order, across 30 cursor chunks, and the file went up in parts
    assert export["status"] == "succeeded", export
    assert export["row_count"] == 150_000
    assert export["bytes"] > 8 * 1024 * 1024  # over one part
    lines = download(export)
    assert [line["attributes"]["n"] for line in lines] == list(range(1, 150_001))
    key = f"exports/{project.org_id}/{project.project_id}/{created['id']}.ndjson.gz"
    etag = aws.s3.head_object(Bucket=aws.bucket, Key=key)["ETag"]
    assert etag.strip('"').endswith("-2")  # a multipart upload's ETag ends with its part count
