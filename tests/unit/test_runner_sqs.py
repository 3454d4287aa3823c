"""What `make dev` says of the template's SQS event sources."""

from __future__ import annotations

from observai_local.sqs import poller_banner
from observai_local.template import load_template


def test_the_banner_names_the_queue_it_polls_and_the_endpoint() -> None:
    # Given the spool's queue set in the shell, on a local SQS, and the export queue unset
    queue = "http://127.0.0.1:5000/123456789012/observai-local-ingest-spool"
    environ = {"SPOOL_QUEUE_URL": queue, "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:5000"}

    # When `make dev` describes its pollers
    lines = poller_banner(load_template(), environ)

    # Then the drain's line names that queue and endpoint (not the variable), and the worker's says what to set
    assert f"  SQS         IngestDrainFunction: polling {queue} through http://127.0.0.1:5000" in lines
    assert "  SQS         ExportWorkerFunction: off (set EXPORT_QUEUE_URL to a queue)" in lines
    assert not [line for line in lines if "$" in line]
