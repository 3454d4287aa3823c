"""Tenant isolation of ingestion: a key writes only under its own project, dedup and idempotency never cross
projects, a read-only key cannot write, and under RLS a key reads only its own project's telemetry."""

from __future__ import annotations

import time
from typing import Any

import pytest
from observai.auth.principal import Principal
from observai.db.connection import tenant_transaction
from observai.telemetry import usage
from observai.telemetry.writer import clear_caches

from tests.helpers import otlp_payloads as payloads
from tests.helpers.ingest import (
    TABLES,
    IngestProject,
    ago,
    counts,
    log,
    make_project,
    metric,
    org_ids_in,
    post_native,
    post_otlp,
    span,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def tenants(database_url: str) -> tuple[IngestProject, IngestProject]:
    """Two organizations, each with a project and an ingest key."""
    usage.reset_caches()
    clear_caches()
    return make_project(label="Tenant A"), make_project(label="Tenant B")


def _same_batch() -> list[dict[str, Any]]:
    """One batch with fixed event ids, span ids and series: what both tenants send."""
    t = ago(45)
    return [
        log("shared log", at=t, event_id="shared-1"),
        span("shared span", trace_id="1" * 32, span_id="2" * 16, start=t),
        metric("shared.metric", 5.0, at=t, attributes={"k": "v"}),
    ]


def _otlp(path: str, project: IngestProject, message: Any) -> None:
    result = post_otlp(path, project.headers, payloads.to_protobuf(message))
    assert result.status == 200, result.text


def test_each_key_writes_only_under_its_own_project(database_url: str, tenants: tuple[IngestProject, ...]) -> None:
    a, b = tenants
    now = time.time_ns()

    # When tenant A sends a native batch and every OTLP signal with its key
    assert post_native(a.headers, _same_batch()).status == 202
    _otlp("/v1/traces", a, payloads.traces_request(now))
    _otlp("/v1/metrics", a, payloads.metrics_request(now))
    _otlp("/v1/logs", a, payloads.logs_request(now))

    # Then A's project holds it all and B's nothing
    a_counts = counts(database_url, a.project_id)
    assert a_counts == {"metric_series": 8, "metric_points": 8, "logs": 31, "spans": 8}
    assert counts(database_url, b.project_id) == dict.fromkeys(TABLES, 0)

    # When tenant B sends the very same batch (same event ids, span ids, series) and the same OTLP traces
    result = post_native(b.headers, _same_batch())
    _otlp("/v1/traces", b, payloads.traces_request(now))

    # Then B's rows are stored in full (dedup is per project: nothing counted as a duplicate of A's)
    assert result.json()["data"] == {"status": "stored", "accepted": 3, "duplicates": 0, "rejected": []}
    assert counts(database_url, b.project_id) == {"metric_series": 1, "metric_points": 1, "logs": 1, "spans": 8}
    # And A's rows are unchanged
    assert counts(database_url, a.project_id) == a_counts

    # And no row of either project carries the other organization's id
    assert org_ids_in(database_url, a.project_id) == {a.org_id}
    assert org_ids_in(database_url, b.project_id) == {b.org_id}


def test_idempotency_keys_are_per_project(database_url: str, tenants: tuple[IngestProject, ...]) -> None:
    a, b = tenants
    # Given tenant A stored a batch under an Idempotency-Key
    first = post_native(a.headers, [log("from A")], idempotency_key="shared-key")
    assert first.json()["data"]["status"] == "stored"
    # When tenant B uses the same key with another body, and with A's body
    other_body = post_native(b.headers, [log("from B")], idempotency_key="shared-key")
    # Then B's request is neither a replay of A's response nor a conflict: it is stored under B
    assert other_body.status == 202 and other_body.json()["data"]["status"] == "stored"
    assert counts(database_url, b.project_id)["logs"] == 1
    assert counts(database_url, a.project_id)["logs"] == 1


def test_a_read_only_key_cannot_ingest(database_url: str, tenants: tuple[IngestProject, ...]) -> None:
    a, _ = tenants
    reader = make_project(scopes=("read",), label="Reader")
    # When a read-only key sends a native batch and an OTLP export
    native = post_native(reader.headers, [log("nope")])
    otlp = post_otlp("/v1/logs", reader.headers, payloads.to_protobuf(payloads.logs_request(time.time_ns())))
    # Then both are 403 and nothing is stored anywhere for it
    assert native.status == 403 and native.json()["error"]["code"] == "scope_missing"
    assert otlp.status == 403
    assert counts(database_url, reader.project_id) == dict.fromkeys(TABLES, 0)
    assert counts(database_url, a.project_id) == dict.fromkeys(TABLES, 0)


def test_under_rls_a_key_reads_only_its_own_projects_telemetry(
    database_url: str, tenants: tuple[IngestProject, ...]
) -> None:
    a, b = tenants
    # Given both tenants ingested the same kinds of events
    for tenant in (a, b):
        assert post_native(tenant.headers, _same_batch()).status == 202

    # When each key's principal reads the telemetry tables with Row Level Security on
    def visible(tenant: IngestProject) -> dict[str, set[Any]]:
        principal = Principal(
            kind="api_key",
            key_id=tenant.key_id,
            org_id=tenant.org_id,
            project_id=tenant.project_id,
            scopes=frozenset({"read"}),
        )
        seen: dict[str, set[Any]] = {}
        with tenant_transaction(principal.rls_claims()) as cur:
            for table in TABLES:
                cur.execute(f"select distinct project_id, org_id from public.{table}")
                seen[table] = {(r["project_id"], r["org_id"]) for r in cur.fetchall()}
        return seen

    # Then each sees only its own project's rows, never the other's
    assert visible(a) == {table: {(a.project_id, a.org_id)} for table in TABLES}
    assert visible(b) == {table: {(b.project_id, b.org_id)} for table in TABLES}
