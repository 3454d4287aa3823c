"""Fault test: Postgres stopped in the middle of a stream → batches spooled → Postgres back → drained → exactly once.

A separate embedded Postgres (so stopping it disturbs no other test), the ingest handler in-process, SQS
and S3 through moto, the drain function in-process as the event source mapping would call it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from observai.db.breaker import database_breaker

from tests.helpers.inprocess import Result, invoke
from tests.helpers.spool_aws import SpoolAws, spool_aws

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BATCHES_BEFORE, BATCHES_DOWN, BATCHES_AFTER = 3, 8, 2
EVENTS_PER_BATCH = 12


class EmbeddedPostgres:
    """A private pgserver instance we may stop and start (pg_ctl) during the test."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver
        from observai_local.pg import embedded_database_url

        self.url = embedded_database_url(data_dir, cleanup_mode="delete")
        self.server = pgserver.get_server(str(data_dir), cleanup_mode="delete")

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def start(self) -> str:
        with self.server._lock:
            self.server.ensure_postgres_running()
        self.url = self.server.get_uri()
        return self.url

    def cleanup(self) -> None:
        self.server.cleanup()


@pytest.fixture
def fault_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedPostgres]:
    from observai.db import close_connection
    from observai.db.migrations import apply_migrations

    pg = EmbeddedPostgres(tmp_path / "fault-pg")
    apply_migrations(pg.url, ROOT / "migrations")
    close_connection()
    monkeypatch.setenv("DATABASE_URL", pg.url)
    # No cache freshness at all: during the outage the key is served stale-if-error, as in a real container.
    monkeypatch.setenv("API_KEY_CACHE_TTL_S", "0")
    monkeypatch.setenv("BREAKER_COOLDOWN_S", "1")  # probes during the outage: they must fail cleanly, too
    try:
        yield pg
    finally:
        close_connection()
        pg.cleanup()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SpoolAws]:
    with spool_aws(monkeypatch) as env:
        yield env


BASE_TIME = datetime.now(UTC) - timedelta(minutes=5)


def _events(batch_no: int) -> list[dict[str, Any]]:
    """The same events every time for a batch number (a client retry sends the same body)."""
    base = BASE_TIME
    events: list[dict[str, Any]] = []
    for i in range(EVENTS_PER_BATCH):
        at = (base + timedelta(milliseconds=batch_no * 100 + i)).isoformat().replace("+00:00", "Z")
        event_id = f"b{batch_no}-e{i}"
        kind = i % 3
        if kind == 0:
            events.append(
                {"type": "log", "time": at, "body": f"log {event_id}", "severity": "info", "event_id": event_id}
            )
        elif kind == 1:
            events.append(
                {
                    "type": "span",
                    "trace_id": uuid.uuid5(uuid.NAMESPACE_URL, event_id).hex,
                    "span_id": uuid.uuid5(uuid.NAMESPACE_DNS, event_id).hex[:16],
                    "name": f"span {event_id}",
                    "start_time": at,
                    "duration_ms": 3.5,
                    "event_id": event_id,
                }
            )
        else:
            events.append(
                {
                    "type": "metric",
                    "name": f"fault.m{batch_no}.{i}",
                    "value": float(i),
                    "time": at,
                    "event_id": event_id,
                }
            )
    return events


def _send(api_key: str, batch_no: int, *, idempotency_key: str | None = None) -> Result:
    headers = {"x-api-key": api_key}
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    return invoke("ingest", "POST", "/v1/ingest", headers=headers, json_body=_events(batch_no))


def _present(url: str, project_id: uuid.UUID) -> dict[str, int]:
    """event_id → how many rows carry it, over logs, spans and metric points."""
    counts: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for (event_id,) in conn.execute(
            "select event_id from public.logs where project_id = %s and event_id is not null"
            " union all select event_id from public.spans where project_id = %s and event_id is not null"
            " union all select event_id from public.metric_points where project_id = %s and event_id is not null",
            (project_id, project_id, project_id),
        ):
            counts[event_id] = counts.get(event_id, 0) + 1
    return counts


def _has_event_id_columns(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "select table_name from information_schema.columns where table_schema = 'public'"
            " and table_name in ('logs', 'spans', 'metric_points') and column_name = 'event_id'"
        ).fetchall()
    return len(rows) == 3


def test_postgres_stopped_mid_stream_loses_nothing_and_duplicates_nothing(
    fault_db: EmbeddedPostgres, aws: SpoolAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from observai.db import close_connection
    from observai.tenancy.bootstrap import create_demo_workspace

    demo = create_demo_workspace("Fault", "fault-owner@example.test")
    sent: list[int] = []

    # 1. The database is up: batches are stored.
    for n in range(BATCHES_BEFORE):
        result = _send(demo.api_key, n, idempotency_key=f"fault-{n}")
        assert result.status == 202, result.text
        assert result.data["status"] == "stored", result.data
        sent.append(n)

    # 2. Postgres stops mid-stream: every request still gets 202 "spooled".
    fault_db.stop()
    spooled_with_key = BATCHES_BEFORE  # this one carries an Idempotency-Key; the rest get a generated one
    for n in range(BATCHES_BEFORE, BATCHES_BEFORE + BATCHES_DOWN):
        if n == BATCHES_BEFORE + BATCHES_DOWN // 2:
            time.sleep(1.1)  # the cool-down (1 s here) is over: a half-open probe meets the dead database
        key = f"fault-{n}" if n == spooled_with_key else None
        result = _send(demo.api_key, n, idempotency_key=key)
        assert result.status == 202, result.text
        assert result.data["status"] == "spooled", result.data
        assert result.data["accepted"] == EVENTS_PER_BATCH
        sent.append(n)
    # A client retry of a spooled batch, still during the outage: spooled again, written once.
    assert _send(demo.api_key, spooled_with_key, idempotency_key=f"fault-{spooled_with_key}").status == 202
    assert aws.attribute("ApproximateNumberOfMessages") == BATCHES_DOWN + 1

    # 3. Postgres is back.
    url = fault_db.start()
    monkeypatch.setenv("DATABASE_URL", url)
    close_connection()
    database_breaker.reset()

    for n in range(BATCHES_BEFORE + BATCHES_DOWN, BATCHES_BEFORE + BATCHES_DOWN + BATCHES_AFTER):
        result = _send(demo.api_key, n)
        assert result.status == 202, result.text
        assert result.data["status"] == "stored", result.data
        sent.append(n)

    # 4. Drain the spool as the SQS event source mapping would; then once more, as SQS redelivers.
    report = aws.drain()
    assert report.received == BATCHES_DOWN + 1 and report.failed == 0, report
    assert aws.attribute("ApproximateNumberOfMessages") == 0
    assert aws.attribute("ApproximateNumberOfMessages", aws.dlq_url) == 0

    # 5. Every event exactly once.
    expected = {f"b{n}-e{i}" for n in sent for i in range(EVENTS_PER_BATCH)}
    if not _has_event_id_columns(url):
        pytest.skip("the telemetry tables do not carry event_id on every signal yet")
    present = _present(url, demo.project_id)
    missing = expected - set(present)
    twice = {k: v for k, v in present.items() if v != 1}
    assert not missing, f"lost: {sorted(missing)[:10]}"
    assert not twice, f"duplicated: {twice}"
    assert set(present) == expected
    assert os.environ["DATABASE_URL"] == url


def test_otlp_requests_during_an_outage_are_spooled_then_drained_once(
    fault_db: EmbeddedPostgres, aws: SpoolAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # OTLP protobuf requests take the fast path (rows built from the bytes, the request never parsed): a request
    # the database cannot take is converted for the spool instead, and drained like any other batch.
    from observai.db import close_connection
    from observai.tenancy.bootstrap import create_demo_workspace

    from tests.helpers.ingest import post_otlp
    from tests.helpers.otlp_payloads import many_logs_request, many_points_request, many_spans_request

    demo = create_demo_workspace("Fault OTLP", "fault-otlp@example.test")
    headers = {"x-api-key": demo.api_key}
    now = time.time_ns()

    def export(seq: int) -> list[Result]:
        at = now - seq * 1_000_000_000
        return [
            post_otlp("/v1/metrics", headers, many_points_request(40, at).SerializeToString()),
            post_otlp("/v1/logs", headers, many_logs_request(30, at).SerializeToString(), gzip=True),
            post_otlp("/v1/traces", headers, many_spans_request(20, at).SerializeToString()),
        ]

    # Given exports stored while the database is up (the second one's points go the fast path: known series)
    for seq in (0, 1):
        assert [r.status for r in export(seq)] == [200, 200, 200]
    # When the database stops, the next exports still succeed: spooled
    fault_db.stop()
    for seq in (2, 3):
        assert [r.status for r in export(seq)] == [200, 200, 200]
    assert aws.attribute("ApproximateNumberOfMessages") == 6
    # Then once it is back and the spool drained, every item is there once
    url = fault_db.start()
    monkeypatch.setenv("DATABASE_URL", url)
    close_connection()
    database_breaker.reset()
    report = aws.drain()
    assert report.received == 6 and report.failed == 0, report
    with psycopg.connect(url, autocommit=True) as conn:
        counts = {
            table: conn.execute(
                f"select count(*) from public.{table} where project_id = %s", (demo.project_id,)
            ).fetchone()[0]  # type: ignore[index]
            for table in ("metric_points", "logs", "spans")
        }
    assert counts == {"metric_points": 4 * 40, "logs": 4 * 30, "spans": 4 * 20}
