"""Notification delivery throughput (the `notifications` part of `make bench`).

    python -m observai_local.bench_notifications [--deliveries 2000] [--contact-points 50]

The embedded Postgres (or DATABASE_URL) and a Slack stand-in: a threaded HTTP/1.1 server on 127.0.0.1 in a process of
its own (as a receiver is elsewhere in real life), answering 200 ``ok`` at once, keep-alive. ``--contact-points``
Slack contact points (their webhook URLs sealed as in production, opened by the worker), one incident, and
``--deliveries`` delivery records spread over them, written by ``deliveries_enqueue.enqueue``. Their wake-ups are
handed to DeliverNotificationsFunction's SQS path (``deliveries.handle_queue_messages``) in batches of 10, as
Lambda's event source mapping delivers them: claim, open the secrets, rate-limit slots, Block Kit, the POSTs side by
side, the record and the timeline events. The rate limits are raised so that they do not throttle (Slack's real 1
message a second per webhook would make this a measure of the clock).

The ceiling, measured in the same run: the same messages through the Slack channel alone (``channels.send``: Block
Kit rendering and the HTTP POST), 10 side by side like a batch, with no database at all. Reported: notifications per
second through the queue's handler, the ceiling, and their ratio (the cost of the records).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from observai_local.bench_receiver import CountingReceiver

BATCH = 10


def _arrange(base: str, deliveries: int, contact_points: int) -> tuple[list[uuid.UUID], list[str]]:
    """An organization, a project, an incident, the Slack contact points and the delivery records; (the delivery
    ids in the order they were recorded, the contact points' URLs)."""
    from observai.config import get_settings
    from observai.db.connection import transaction
    from observai.notify.contact_points import secret_context
    from observai.notify.deliveries_enqueue import DeliveryRequest, enqueue
    from observai.notify.secrets import hint, seal
    from observai.tenancy.orgs import insert_org_with_unique_slug
    from observai.tenancy.projects import insert_project_with_unique_slug

    settings = get_settings()
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    urls = [f"{base}/services/T{tag}/B{i:04d}/bench-{uuid.uuid4().hex}" for i in range(contact_points)]
    with transaction() as cur:
        org = insert_org_with_unique_slug(cur, f"Notification bench {tag}", None)
        project = insert_project_with_unique_slug(cur, org["id"], f"Paging {tag}", None)
        cur.execute(
            "insert into public.incidents (org_id, project_id, number, title, severity, service)"
            " values (%s, %s, 1, 'p95 latency above 500 ms on checkout', 'critical', 'checkout') returning *",
            (org["id"], project["id"]),
        )
        incident = cur.fetchone()
        assert incident is not None
        points = []
        for i, url in enumerate(urls):
            point_id = uuid.uuid4()
            cur.execute(
                "insert into public.contact_points (id, org_id, project_id, name, kind, secret_sealed, secret_hint)"
                " values (%s, %s, %s, %s, 'slack', %s, %s)",
                (
                    point_id,
                    org["id"],
                    project["id"],
                    f"slack-{i}",
                    seal(url, secret_context(org["id"], point_id), settings),
                    hint(url),
                ),
            )
            points.append(point_id)
        firing = [
            {
                "labels": {"alertname": "HighLatency", "service": "checkout", "severity": "critical"},
                "annotations": {"summary": "p95 latency above 500 ms"},
                "value": 0.74,
                "fired_at": now.isoformat(),
            }
        ]
        ids = []
        for n in range(deliveries):
            delivery_id = enqueue(
                cur,
                DeliveryRequest(
                    org_id=org["id"],
                    project_id=project["id"],
                    channel="slack",
                    event="notify",
                    source="route",
                    key=f"bench:{tag}:{n}",
                    incident_id=incident["id"],
                    contact_point_id=points[n % len(points)],
                    payload={"reason": "first", "firing": firing, "resolved": []},
                ),
                now,
            )
            assert delivery_id is not None
            ids.append(delivery_id)
    return ids, urls


def _through_the_queue(ids: list[uuid.UUID]) -> tuple[float, int, dict[str, int]]:
    """The wake-ups handed to the function's SQS path 10 at a time; (seconds, records reported failed, outcomes)."""
    from observai.notify import deliveries
    from observai.notify.deliveries import RateLimit
    from observai.notify.queue import message_body

    from observai_local.sqs import sqs_event

    limits = {"slack": RateLimit(1_000_000, 1), "pagerduty": RateLimit(1_000_000, 60)}
    failed = 0
    started = time.perf_counter()
    for at in range(0, len(ids), BATCH):
        chunk = ids[at : at + BATCH]
        messages = [
            {"MessageId": str(uuid.uuid4()), "ReceiptHandle": "bench", "Body": message_body(did)} for did in chunk
        ]
        event = sqs_event(messages, source_arn="arn:aws:sqs:us-east-1:000000000000:observai-bench-notifications")
        response = deliveries.handle_queue_messages(event, limits=limits)
        failed += len(response.get("batchItemFailures", []))
    seconds = time.perf_counter() - started
    from observai.db.connection import transaction

    with transaction() as cur:
        cur.execute(
            "select status, count(*) as n from public.notification_deliveries where id = any(%s) group by status",
            (ids,),
        )
        outcomes = {row["status"]: int(row["n"]) for row in cur.fetchall()}
    return seconds, failed, outcomes


def _ceiling(urls: list[str], n: int) -> float:
    """The same Slack messages through the channel alone (render and POST), 10 side by side; seconds."""
    from observai.config import get_settings
    from observai.notify import channels
    from observai.notify.message import Message

    settings = get_settings()
    incident: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "number": 1,
        "title": "p95 latency above 500 ms on checkout",
        "status": "triggered",
        "severity": "critical",
        "service": "checkout",
        "project_id": str(uuid.uuid4()),
    }
    alert = {
        "labels": {"alertname": "HighLatency", "service": "checkout", "severity": "critical"},
        "annotations": {"summary": "p95 latency above 500 ms"},
        "state": "firing",
        "value": 0.74,
        "starts_at": datetime.now(UTC).isoformat(),
    }
    message = Message(
        event="notify",
        title=incident["title"],
        text="Alerts started firing.",
        severity="critical",
        reason="first",
        incident=incident,
        alerts=(alert,),
        dedup_key=incident["id"],
        delivery_id=str(uuid.uuid4()),
    )
    ok = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=BATCH) as pool:
        for at in range(0, n, BATCH):
            futures = [
                pool.submit(channels.send, "slack", {"url": urls[i % len(urls)]}, message, settings=settings)
                for i in range(at, min(n, at + BATCH))
            ]
            ok += sum(1 for f in futures if f.result().ok)
    seconds = time.perf_counter() - started
    if ok != n:
        raise RuntimeError(f"the ceiling's posts failed: {n - ok} of {n}")
    return seconds


def run(deliveries: int = 2000, contact_points: int = 50) -> str:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - pgserver's runtime directory
    from observai_local.bench import BENCH_ENVIRONMENT, prepare_database

    url, database = prepare_database(keep_dir=False)
    os.environ.update(BENCH_ENVIRONMENT)
    os.environ.update({"DATABASE_URL": url, "NOTIFY_ALLOW_LOOPBACK": "true"})
    for name in ("NOTIFY_QUEUE_URL", "NOTIFY_KMS_KEY_ID", "PUBLIC_BASE_URL"):
        os.environ.pop(name, None)  # no queue (the wake-ups are handed to the function below), the development key
    stand_in = CountingReceiver()
    try:
        t0 = time.perf_counter()
        ids, urls = _arrange(stand_in.base, deliveries, contact_points)
        arrange_s = time.perf_counter() - t0
        seconds, failed, outcomes = _through_the_queue(ids)
        received = stand_in.count
        ceiling_s = _ceiling(urls, deliveries)
    finally:
        stand_in.stop()
        from observai.db import close_connection

        close_connection()
    sent = outcomes.get("sent", 0)
    rate = sent / seconds if seconds else 0.0
    ceiling = deliveries / ceiling_s if ceiling_s else 0.0
    return "\n".join(
        [
            f"notifications (database: {database}; {os.cpu_count()} cores)",
            f"  {deliveries} delivery records to {contact_points} Slack contact points recorded in {arrange_s:.2f} s",
            f"  through DeliverNotificationsFunction's SQS path (batches of {BATCH}): {sent} sent in {seconds:.2f} s"
            f" = {rate:.0f}/s; statuses {outcomes}; {failed} records reported failed; the stand-in got {received}",
            f"  ceiling, the Slack channel alone (render + POST, {BATCH} side by side, no database):"
            f" {deliveries} in {ceiling_s:.2f} s = {ceiling:.0f}/s",
            f"  ratio: {rate / ceiling if ceiling else 0:.2f} of the ceiling",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m observai_local.bench_notifications", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--contact-points", type=int, default=50)
    args = parser.parse_args(argv)
    print(run(deliveries=args.deliveries, contact_points=args.contact_points), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
