"""Webhook delivery throughput and isolation (the `webhooks` part of `make bench`).

    python -m observai_local.bench_webhooks [--messages 2000] [--endpoints 10]

The embedded Postgres (or DATABASE_URL) and local receivers: threaded HTTP/1.1 servers on 127.0.0.1 answering 200 at
once, keep-alive (the throughput one in a process of its own, as a receiver is elsewhere in real life; the isolation
one in this process, to time arrivals). Both set TCP_NODELAY, as real HTTP servers do: http.server writes the status
and headers, then the body, in two sends, and with Nagle's algorithm the body waits for the engine's delayed ACK
(~40 ms on Linux), which made every response take 40 ms and the bench measure that stall, not the engine.
Their listen backlog is a real server's (128, not socketserver's 5): a batch's requests connecting at once would
overflow 5, and a dropped SYN is sent again after 1 s, the bench's whole timeout (a failed delivery).
Events are emitted into the outbox and fanned out (one message per endpoint); their wake-ups are then handed to
DeliverWebhooksFunction's SQS path (``engine.handle_queue_messages``) in batches of 10, as Lambda's event source
mapping delivers them: the engine is measured from its real entry point, without a queue emulation in the loop
(moto's in-process SQS costs more per call than a delivery; the queue is AWS's part).
Reported:

* throughput: deliveries per second over the batches (target ≥ 200/s), and how many wake-ups were deferred (an
  endpoint at its in-flight limit: left for the queue's delay or the sweep);
* isolation: the latency of a healthy endpoint's deliveries (from the batch's start to the receiver getting the
  request), p50 and p95, in batches of healthy endpoints alone, then in batches where half the messages are for an
  endpoint that never answers within the timeout (WEBHOOK_TIMEOUT_S=1 here). The healthy latency must not change
  much; each mixed batch of course lasts one timeout.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from observai_local.bench_receiver import CountingReceiver, RealisticServer

SLOW_TIMEOUT_S = 1.0
TARGET_PER_S = 200


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class _Receiver:
    """Answers 200 at once on /ok/..., after ``slow_s`` on /slow/...; notes when each request arrived."""

    def __init__(self, slow_s: float) -> None:
        self.arrivals: dict[str, float] = {}  # webhook-id + path -> time.perf_counter()
        self.count = 0
        lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                arrived = time.perf_counter()
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with lock:
                    state.arrivals[f"{self.headers.get('webhook-id')}{self.path}"] = arrived
                    state.count += 1
                if self.path.startswith("/slow"):
                    time.sleep(slow_s)  # never answers within the engine's timeout
                try:
                    self.send_response(200)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the engine gave up (its timeout)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = RealisticServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _endpoint(cur: Any, org_id: Any, project_id: Any, url: str) -> uuid.UUID:
    from observai.webhooks import signing

    secret = signing.new_secret()
    cur.execute(
        "insert into public.webhook_endpoints (org_id, project_id, url, secret_ciphertext, secret_hint)"
        " values (%s, %s, %s, %s, %s) returning id",
        (org_id, project_id, url, signing.encrypt_secret(secret), secret[:10]),
    )
    return cur.fetchone()["id"]


def _emit(org_id: Any, project_id: Any, n: int) -> None:
    from observai import outbox
    from observai.db.connection import transaction

    now = datetime.now(UTC)
    with transaction() as cur:
        outbox.emit_many(
            cur,
            [outbox.OutboxEvent(org_id, project_id, "alert.firing", {"n": i, "rule": "cpu"}, now) for i in range(n)],
        )


def _unfinished() -> int:
    from observai.db.connection import transaction

    with transaction() as cur:
        cur.execute("select count(*) as n from public.webhook_messages where status in ('pending', 'delivering')")
        row = cur.fetchone()
    return int(row["n"]) if row else 0


def _message_ids(project_id: Any) -> list[uuid.UUID]:
    """The project's pending messages in fan-out order: an event's messages (one per endpoint) side by side."""
    from observai.db.connection import transaction

    with transaction() as cur:
        cur.execute(
            "select id from public.webhook_messages where project_id = %s and status = 'pending'"
            " order by created_at, event_id, endpoint_id",
            (project_id,),
        )
        return [row["id"] for row in cur.fetchall()]


def _deliver_batches(ids: list[uuid.UUID], on_batch: Any = None) -> tuple[int, float, int]:
    """Hand the wake-ups to the function's SQS path 10 at a time; (batches, seconds, records reported failed)."""
    from observai.webhooks import engine
    from observai.webhooks.queue import message_body

    from observai_local.sqs import sqs_event

    failed = batches = 0
    started = time.perf_counter()
    for at in range(0, len(ids), 10):
        chunk = ids[at : at + 10]
        messages = [
            {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "bench", "Body": message_body(mid)} for mid in chunk
        ]
        batch_start = time.perf_counter()
        event = sqs_event(messages, source_arn="arn:aws:sqs:us-east-1:000000000000:observai-bench-webhooks")
        response = engine.handle_queue_messages(event)
        failed += len(response.get("batchItemFailures", []))
        batches += 1
        if on_batch is not None:
            on_batch(batch_start)
    return batches, time.perf_counter() - started, failed


def run(messages: int = 2000, endpoints: int = 10, latency_batches: int = 20) -> str:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - pgserver's runtime directory
    from observai_local.bench import BENCH_ENVIRONMENT, prepare_database

    url, database = prepare_database(keep_dir=False)
    os.environ.update(BENCH_ENVIRONMENT)
    os.environ.update({"DATABASE_URL": url, "WEBHOOK_ALLOW_LOOPBACK": "true", "WEBHOOK_TIMEOUT_S": str(SLOW_TIMEOUT_S)})
    os.environ.pop("WEBHOOK_QUEUE_URL", None)  # no queue: the wake-ups are handed to the function below
    from observai.db.connection import transaction
    from observai.tenancy.orgs import insert_org_with_unique_slug
    from observai.tenancy.projects import insert_project_with_unique_slug
    from observai.webhooks.fanout import fan_out

    receiver = _Receiver(slow_s=SLOW_TIMEOUT_S * 3)
    counting = CountingReceiver()
    tag = uuid.uuid4().hex[:6]
    try:
        # 1. Throughput: ``endpoints`` healthy endpoints, messages / endpoints events.
        with transaction() as cur:
            org = insert_org_with_unique_slug(cur, f"Webhook bench {tag}", None)
            fast_project = insert_project_with_unique_slug(cur, org["id"], f"Fast {tag}", None)
            for i in range(endpoints):
                _endpoint(cur, org["id"], fast_project["id"], f"{counting.base}/ok/{i}")
        per_event = endpoints
        _emit(org["id"], fast_project["id"], messages // per_event)
        t0 = time.perf_counter()
        fanned = 0
        while True:
            report = fan_out(datetime.now(UTC), 500)
            fanned += report.messages
            if not report.more_pending:
                break
        fan_out_s = time.perf_counter() - t0
        ids = _message_ids(fast_project["id"])
        batches, seconds, failed = _deliver_batches(ids)
        delivered = counting.count
        rate = delivered / seconds if seconds else 0.0
        deferred = _unfinished()

        # 2. Isolation: a project with 5 healthy endpoints; then 5 more endpoints that time out.
        def latencies(slow: bool) -> list[float]:
            with transaction() as cur:
                project = insert_project_with_unique_slug(cur, org["id"], f"Iso {slow} {tag}", None)
                for i in range(5):
                    _endpoint(cur, org["id"], project["id"], f"{receiver.base}/ok/iso{slow}{i}")
                for i in range(5 if slow else 0):
                    _endpoint(cur, org["id"], project["id"], f"{receiver.base}/slow/{i}")
            values: list[float] = []
            by_event: dict[str, float] = {}

            def on_batch(batch_start: float) -> None:
                for key, arrived in list(receiver.arrivals.items()):
                    if "/ok/iso" in key and key not in by_event and arrived >= batch_start:
                        by_event[key] = arrived
                        values.append((arrived - batch_start) * 1000)

            for _ in range(latency_batches):
                _emit(org["id"], project["id"], 1)  # one event: one message per endpoint, one batch of 5 or 10
                fan_out(datetime.now(UTC), 10)
                _deliver_batches(_message_ids(project["id"]), on_batch)
            return values

        alone = latencies(slow=False)
        mixed = latencies(slow=True)
    finally:
        receiver.server.shutdown()
        counting.stop()
        from observai.db import close_connection

        close_connection()

    def row(name: str, values: list[float]) -> str:
        p50, p95 = _percentile(values, 50), _percentile(values, 95)
        return f"  {name:<34} n={len(values):>4}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"

    verdict = "meets" if rate >= TARGET_PER_S else "BELOW"
    return "\n".join(
        [
            f"webhooks (database: {database}; {os.cpu_count()} cores)",
            f"  fan-out: {fanned} messages from {messages // per_event} events in {fan_out_s * 1000:.0f} ms",
            f"  delivery through the function's SQS path: {delivered} deliveries in {batches} batches of <=10 in"
            f" {seconds:.2f} s = {rate:.0f}/s ({verdict} the target of {TARGET_PER_S}/s); {deferred} deferred,"
            f" {failed} reported failed",
            "  healthy endpoint latency (batch start -> receiver got it):",
            row("healthy endpoints alone", alone),
            row(f"with an endpoint timing out ({SLOW_TIMEOUT_S:g} s)", mixed),
            f"  p95 ratio mixed/alone: {_percentile(mixed, 95) / max(_percentile(alone, 95), 0.001):.2f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m observai_local.bench_webhooks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=10)
    args = parser.parse_args(argv)
    print(run(messages=args.messages, endpoints=args.endpoints), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
