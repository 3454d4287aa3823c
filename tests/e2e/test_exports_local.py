"""Exports under the local runner (`make dev`): over real HTTP, with the export queue polled in the background
as Lambda's event source mapping would (observai_local.sqs.QueuePoller), SQS and S3 being moto's."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from observai_local.functions import local_overrides
from observai_local.server import start_server
from observai_local.sqs import QueuePoller, configured_sources
from observai_local.template import load_template

from tests.helpers.export_aws import ExportAws, export_aws
from tests.helpers.http import client, ok_data
from tests.helpers.ingest import iso, log, make_project

pytestmark = pytest.mark.e2e


@pytest.fixture
def local_stack(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[tuple[str, ExportAws]]:
    """The runner with EXPORT_QUEUE_URL and EXPORT_BUCKET set in the shell, and its queue pollers running."""
    with export_aws(monkeypatch) as aws:
        template = load_template()
        server, base_url = start_server("127.0.0.1", 0, overrides=local_overrides("test", database_url), quiet=True)
        sources = configured_sources(template, os.environ)
        poller = QueuePoller(server.invoker.invoke, sources, aws.sqs, idle_wait_s=0.05).start()
        try:
            yield base_url, aws
        finally:
            poller.stop()
            server.shutdown()
            server.server_close()


def test_the_runner_polls_only_the_queues_the_shell_configures(monkeypatch: pytest.MonkeyPatch) -> None:
    template = load_template()
    monkeypatch.delenv("SPOOL_QUEUE_URL", raising=False)
    monkeypatch.delenv("ALERT_TIMER_QUEUE_URL", raising=False)
    monkeypatch.delenv("WEBHOOK_QUEUE_URL", raising=False)
    monkeypatch.delenv("NOTIFY_QUEUE_URL", raising=False)
    monkeypatch.delenv("ESCALATION_QUEUE_URL", raising=False)
    monkeypatch.delenv("AI_TASK_QUEUE_URL", raising=False)
    monkeypatch.setenv("EXPORT_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/q")
    configured = configured_sources(template, os.environ)
    assert [(s.function, s.url_variable, s.batch_size, url) for s, url in configured] == [
        ("ExportWorkerFunction", "EXPORT_QUEUE_URL", 1, "https://sqs.us-east-1.amazonaws.com/123456789012/q")
    ]
    assert {s.function for s in template.queue_sources} == {
        "IngestDrainFunction",
        "ExportWorkerFunction",
        "DispatchNotificationsFunction",
        "DeliverWebhooksFunction",
        "DeliverNotificationsFunction",
        "EscalateFunction",
        "AiWorkerFunction",
    }


def test_an_export_runs_end_to_end_under_the_local_runner(local_stack: tuple[str, ExportAws]) -> None:
    base_url, aws = local_stack
    # Given a project with logs ingested over HTTP
    project = make_project(scopes=("ingest", "read"), label="Local export")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    events = [log(f"line {i}", at=start + timedelta(minutes=i), service="api") for i in range(5)]
    with client(base_url, api_key=project.key) as http:
        assert ok_data(http.post("/v1/ingest", json=events), 202)["accepted"] == 5

        # When an export is started over HTTP
        body = {"signal": "logs", "from": iso(start), "to": iso(start + timedelta(hours=1))}
        created = ok_data(http.post(f"/v1/projects/{project.project_id}/exports", json=body), 202)

        # Then the background poller runs the worker, and GET soon shows it succeeded with a download link
        export: dict[str, Any] = created
        deadline = time.monotonic() + 30
        while export["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)
            export = ok_data(http.get(f"/v1/projects/{project.project_id}/exports/{created['id']}"))
    assert export["status"] == "succeeded", export
    assert export["row_count"] == 5

    # And the file behind the link holds the five lines
    downloaded = requests.get(export["download_url"], timeout=10)
    lines = [json.loads(line) for line in gzip.decompress(downloaded.content).decode().splitlines()]
    assert [line["body"] for line in lines] == [f"line {i}" for i in range(5)]
    assert aws.messages_waiting() == 0
