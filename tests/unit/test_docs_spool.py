"""docs/spool.md states the spool's settings as template.yaml and the code have them."""

from __future__ import annotations

from pathlib import Path

from observai.config import Settings
from observai.telemetry import drain
from observai_local.template import TEMPLATE_PATH, load_yaml

DOC = (Path(__file__).resolve().parents[2] / "docs" / "spool.md").read_text()


def test_the_spool_page_states_the_templates_queue_settings() -> None:
    # Given the template's spool queue, its dead-letter queue and the drain's event source
    resources = load_yaml(TEMPLATE_PATH)["Resources"]
    queue = resources["SpoolQueue"]["Properties"]
    dlq = resources["SpoolDeadLetterQueue"]["Properties"]
    source = resources["IngestDrainFunction"]["Properties"]["Events"]["Spool"]["Properties"]

    # Then the page says the same
    assert f"| `VisibilityTimeout` | {queue['VisibilityTimeout']} s |" in DOC
    assert f"`maxReceiveCount: {queue['RedrivePolicy']['maxReceiveCount']}`" in DOC
    assert f"| `MessageRetentionPeriod` | {queue['MessageRetentionPeriod'] // 86400} days |" in DOC
    assert f"| `MessageRetentionPeriod` | {dlq['MessageRetentionPeriod'] // 86400} days (the maximum) |" in DOC
    assert f"| {source['BatchSize']} / {source['MaximumBatchingWindowInSeconds']} s |" in DOC
    assert f"| `ScalingConfig.MaximumConcurrency` | {source['ScalingConfig']['MaximumConcurrency']} |" in DOC
    assert f'"VisibilityTimeout": "{queue["VisibilityTimeout"]}"' in DOC  # the local setup script


def test_the_spool_page_states_the_codes_waits() -> None:
    assert drain.REQUEUE_BASE_DELAY_S == 30 and drain.REQUEUE_MAX_DELAY_S == 900 and drain.MAX_REQUEUES == 300
    assert "The delay is 30 s, doubled each time, up to SQS's maximum of 15 min" in DOC
    assert "After `MAX_REQUEUES` (300, about three days)" in DOC
    defaults = Settings()
    breaker = (defaults.breaker_failure_threshold, defaults.breaker_cooldown_s, defaults.breaker_max_cooldown_s)
    assert breaker == (3, 10, 60)
    assert "| ingest, drain | 3, 10, 60 |" in DOC
    assert "The cool-down is 10 s, doubles after each failed probe,\n  and is capped at 60 s." in DOC
