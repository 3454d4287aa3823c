"""The OTLP fast path through the real writer and Postgres: the rows it COPYs are the rows the Python path stores,
a resent request is deduplicated, and the log volume counts its lines.

The same request is stored twice, in two projects: once as protobuf through store_batch (the fast path: its
records are never made) and once as OTLP/JSON decoded record by record first (the Python decoder); the stored
rows must be equal.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import pytest
from observai.telemetry.limits import now_ns
from observai.telemetry.model import Batch, Signal
from observai.telemetry.otlp import decode_otlp, wire
from observai.telemetry.writer import store_batch

from tests.helpers import otlp_payloads as payloads
from tests.helpers.ingest import IngestProject, logs_of, make_project, points_of, rows, spans_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not wire.available(), reason="the C extension is not built (make install)"),
]

PER_PROJECT = {"id", "org_id", "project_id", "ingested_at"}


def store(
    project: IngestProject, signal: Signal, body: bytes, encoding: str, *, lazy: bool = True
) -> tuple[Batch, int]:
    """Decode and store as the ingest route does (lazy: the fast path when it can), or (not lazy) every record
    converted first, as the Python decoder does; the batch and the duplicates skipped."""
    batch = decode_otlp(signal, body, encoding=encoding, now_ns=now_ns(), lazy=lazy)  # type: ignore[arg-type]
    result = store_batch(
        project.org_id, project.project_id, batch, idempotency_key=None, request_hash="", response={},
        body_bytes=len(body),
    )  # fmt: skip
    return batch, result.duplicates


def stored(read: Any, database_url: str, project_id: UUID) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in PER_PROJECT} for r in read(database_url, project_id)]


def volume(database_url: str, project_id: UUID) -> list[dict[str, Any]]:
    return rows(
        database_url,
        "select minute, service, level, retention_days, sum(count)::bigint as n from public.log_volume"
        " where project_id = %s group by 1, 2, 3, 4 order by 1, 2, 3, 4",
        (project_id,),
    )


@pytest.mark.parametrize(
    ("signal", "build", "read"),
    [
        (Signal.LOGS, lambda now: payloads.many_logs_request(250, now), logs_of),
        (Signal.LOGS, lambda now: _accepted_logs(payloads.logs_request(now)), logs_of),  # structured bodies too
        (Signal.TRACES, lambda now: payloads.many_spans_request(250, now), spans_of),
    ],
    ids=["many logs", "every kind of log", "many spans"],
)
def test_given_a_request_when_stored_fast_then_its_rows_are_the_python_paths(
    database_url: str, signal: Signal, build: Any, read: Any
) -> None:
    # Given one request, as protobuf and as OTLP/JSON
    message = build(time.time_ns())
    fast_project, python_project = make_project(label="Wire"), make_project(label="Python")
    # When it is stored through each path
    fast, _ = store(fast_project, signal, payloads.to_protobuf(message), "protobuf")
    slow, _ = store(python_project, signal, payloads.to_otlp_json(message), "json", lazy=False)
    # Then the protobuf one took the fast path (no record was ever made), the JSON one the Python path
    n = slow.count(signal)
    assert fast.wired == {signal: n} and not fast.logs and not fast.spans
    assert not slow.wired
    # ...and both stored the same rows, and the same log volume
    assert stored(read, database_url, fast_project.project_id) == stored(read, database_url, python_project.project_id)
    assert len(stored(read, database_url, fast_project.project_id)) == n
    assert volume(database_url, fast_project.project_id) == volume(database_url, python_project.project_id)


def _accepted_logs(message: Any) -> Any:
    """The request without the records the Python path would reject (those send a request to it)."""
    for resource_logs in message.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            kept = [r for r in scope_logs.log_records if r.severity_number > 0]
            del scope_logs.log_records[:]
            scope_logs.log_records.extend(kept)
    return message


def test_given_stored_spans_when_the_request_is_sent_again_then_nothing_is_written_twice(database_url: str) -> None:
    # Given a traces request stored once through the fast path
    project = make_project(label="Wire again")
    body = payloads.to_protobuf(payloads.many_spans_request(120, time.time_ns()))
    first, duplicates = store(project, Signal.TRACES, body, "protobuf")
    assert first.wired == {Signal.TRACES: 120} and duplicates == 0
    # When the exporter retries it
    again, duplicates = store(project, Signal.TRACES, body, "protobuf")
    # Then the unique index refuses the fast path's COPY, the careful write finds every span stored
    assert duplicates == 120
    assert len(again.spans) == 120  # the careful path converted the records
    assert len(spans_of(database_url, project.project_id)) == 120


@pytest.mark.parametrize(
    ("build", "n"),
    [(lambda now: payloads.many_points_request(200, now), 200), (payloads.metrics_request, 7)],
    ids=["gauges and sums", "every metric type"],
)
def test_given_known_series_when_points_are_stored_fast_then_they_are_the_python_paths(
    database_url: str, build: Any, n: int
) -> None:
    fast_project, python_project = make_project(label="Wire points"), make_project(label="Python points")
    now = time.time_ns()
    # Given a first request, which creates the series (the Python path: the fast path never creates series)
    first = build(now - 60 * 1_000_000_000)
    batch, _ = store(fast_project, Signal.METRICS, payloads.to_protobuf(first), "protobuf")
    assert not batch.wired and len(batch.metrics) == n
    store(python_project, Signal.METRICS, payloads.to_otlp_json(first), "json", lazy=False)
    # When the next export of the same series arrives
    second = build(now)
    fast, _ = store(fast_project, Signal.METRICS, payloads.to_protobuf(second), "protobuf")
    slow, _ = store(python_project, Signal.METRICS, payloads.to_otlp_json(second), "json", lazy=False)
    # Then it took the fast path, and both projects hold the same points of the same series
    assert fast.wired == {Signal.METRICS: n} and not fast.metrics
    assert not slow.wired
    assert stored(points_of, database_url, fast_project.project_id) == stored(
        points_of, database_url, python_project.project_id
    )
    assert len(stored(points_of, database_url, fast_project.project_id)) == 2 * n
    # ...and a retried export is written once
    _, duplicates = store(fast_project, Signal.METRICS, payloads.to_protobuf(second), "protobuf")
    assert duplicates == n and len(stored(points_of, database_url, fast_project.project_id)) == 2 * n
