"""SQS events as Lambda's event source mapping builds them, a one-shot local drain of a queue, and pollers.

The template's SQS event sources (the ingest spool → IngestDrainFunction, the export queue →
ExportWorkerFunction) are deploy-time queues: locally a queue is used only when the shell sets the
function's queue URL variable (SPOOL_QUEUE_URL, EXPORT_QUEUE_URL) to a real queue, or a local SQS such as
ElasticMQ reached through AWS_ENDPOINT_URL_SQS. Then:

* ``python -m observai_local serve`` (``make dev``) polls each such queue in a background thread, as the
  event source mapping would (QueuePoller);
* ``python -m observai_local drain [--function F] [--once]`` drains one queue and exits.

Both receive up to the source's BatchSize messages at a time, invoke the function with them as an SQS
event, delete those not listed in ``batchItemFailures`` and leave the failed ones to become visible again.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from observai_local.events import ACCOUNT_ID, REGION
from observai_local.template import QueueSource, Template


def queue_arn(queue_url: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> from a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)."""
    parts = queue_url.rstrip("/").split("/")
    name = parts[-1]
    account = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() else ACCOUNT_ID
    host = parts[2] if len(parts) > 2 else ""
    region = host.split(".")[1] if host.startswith("sqs.") and host.count(".") >= 2 else REGION
    return f"arn:aws:sqs:{region}:{account}:{name}"


def sqs_record(
    message: Mapping[str, Any], *, source_arn: str, receive_count: int | None = None, region: str = REGION
) -> dict[str, Any]:
    """One record of an SQS event from a ReceiveMessage message (MessageId, ReceiptHandle, Body, Attributes)."""
    body = str(message["Body"])
    attributes = dict(message.get("Attributes") or {})
    now_ms = str(int(time.time() * 1000))
    count = receive_count if receive_count is not None else int(attributes.get("ApproximateReceiveCount", 1))
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message.get("ReceiptHandle", "local"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(count),
            "SentTimestamp": str(attributes.get("SentTimestamp", now_ms)),
            "SenderId": str(attributes.get("SenderId", ACCOUNT_ID)),
            "ApproximateFirstReceiveTimestamp": str(attributes.get("ApproximateFirstReceiveTimestamp", now_ms)),
        },
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }


def sqs_event(messages: Iterable[Mapping[str, Any]], *, source_arn: str) -> dict[str, Any]:
    return {"Records": [sqs_record(m, source_arn=source_arn) for m in messages]}


def failed_ids(response: Any) -> set[str]:
    if not isinstance(response, dict):
        return set()
    items = response.get("batchItemFailures") or []
    return {str(item.get("itemIdentifier")) for item in items}


@dataclass
class DrainReport:
    batches: int = 0
    received: int = 0
    deleted: int = 0
    failed: int = 0
    failed_ids: list[str] = field(default_factory=list)


def drain_queue(
    sqs: Any,
    queue_url: str,
    invoke: Callable[[dict[str, Any]], Any],
    *,
    max_batches: int | None = None,
    wait_time_s: int = 1,
    visibility_timeout_s: int | None = None,
    batch_size: int = 10,
) -> DrainReport:
    """Receive batches of up to 10, ``invoke`` the drain with each as an SQS event, delete the successes.

    Stops when a receive returns nothing (or after ``max_batches``). Failed records are left in the queue
    (with ``visibility_timeout_s`` they come back that much later; by default the queue's own).
    """
    report = DrainReport()
    arn = queue_arn(queue_url)
    while max_batches is None or report.batches < max_batches:
        params: dict[str, Any] = {
            "QueueUrl": queue_url,
            "MaxNumberOfMessages": max(1, min(10, batch_size)),
            "WaitTimeSeconds": wait_time_s,
            "AttributeNames": ["All"],
        }
        if visibility_timeout_s is not None:
            params["VisibilityTimeout"] = visibility_timeout_s
        messages = sqs.receive_message(**params).get("Messages") or []
        if not messages:
            break
        report.batches += 1
        report.received += len(messages)
        failed = failed_ids(invoke(sqs_event(messages, source_arn=arn)))
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        report.deleted += len(done)
        report.failed += len(messages) - len(done)
        report.failed_ids.extend(m["MessageId"] for m in messages if m["MessageId"] in failed)
    return report


def configured_sources(template: Template, environ: Mapping[str, str]) -> list[tuple[QueueSource, str]]:
    """The template's SQS sources whose queue URL variable is set in ``environ``, with that URL."""
    found = []
    for source in template.queue_sources:
        url = environ.get(source.url_variable) if source.url_variable else None
        if url:
            found.append((source, url))
    return found


def poller_banner(template: Template, environ: Mapping[str, str]) -> list[str]:
    """What `make dev` prints of each SQS event source: the queue it polls (and the SQS endpoint), or why not."""
    polled = {id(source): url for source, url in configured_sources(template, environ)}
    endpoint = environ.get("AWS_ENDPOINT_URL_SQS") or environ.get("AWS_ENDPOINT_URL")
    lines = []
    for source in template.queue_sources:
        url = polled.get(id(source))
        if url is None:
            state = f"off (set {source.url_variable} to a queue)"
        else:
            state = f"polling {url}" + (f" through {endpoint}" if endpoint else "")
        lines.append(f"  SQS         {source.function}: {state}")
    return lines


class QueuePoller:
    """A daemon thread that drains each configured queue through its function, as Lambda's pollers would."""

    def __init__(
        self,
        invoke: Callable[[str, dict[str, Any]], Any],
        sources: list[tuple[QueueSource, str]],
        sqs: Any,
        *,
        idle_wait_s: float = 1.0,
    ) -> None:
        self.invoke = invoke
        self.sources = sources
        self.sqs = sqs
        self.idle_wait_s = idle_wait_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> QueuePoller:
        if self.sources:
            self._thread = threading.Thread(target=self._run, name="observai-local-sqs", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def poll_once(self) -> int:
        """One pass over every queue until each is empty; how many messages were received."""
        received = 0
        for source, url in self.sources:
            if self._stop.is_set():
                break
            function = source.function

            def invoke(event: dict[str, Any], function: str = function) -> Any:
                return self.invoke(function, event)

            try:
                report = drain_queue(self.sqs, url, invoke, wait_time_s=0, batch_size=source.batch_size)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                continue
            received += report.received
            if report.received:
                print(f"sqs: {source.function} {report.received} received, {report.failed} failed", file=sys.stderr)
        return received

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.poll_once():
                self._stop.wait(self.idle_wait_s)
