"""Ingest-to-notification latency (the `alert-latency` part of `make bench`, after the `alerts` part): from the
POST of a point that crosses a threshold to the notification log row, with the local runner's schedules, as `make dev`
runs them.

    python -m observai_local.bench_alert_latency [--probes 8] [--spacing 9]

The embedded Postgres (or DATABASE_URL), moto's SQS server on a free port as the alert timer queue (delay
messages, as in AWS), and the local runner: every HttpApi route, every schedule (evaluate-alerts and the
dispatcher's sweep every minute, as template.yaml schedules them) and the queue pollers. One
metric rule per probe (``probe_<i> > 100``, ``for`` 0, window 1m), the default notification policy (group_wait
30 s). The probes are posted ``spacing`` seconds apart, so they land at different phases of the minute; each
latency is from its POST's answer to the commit of its group's first notification. Target (issue 12): p95 ≤ 90 s
plus group_wait.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from datetime import UTC, datetime

GROUP_WAIT_S = 30
TARGET_S = 90 + GROUP_WAIT_S


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _notified_at(url: str, project_id: str, alertname: str) -> datetime | None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select min(l.sent_at) from public.notification_log l"
            " join public.notification_group_alerts ga on ga.group_id = l.group_id"
            " join public.alert_instances i on i.id = ga.instance_id"
            " where l.project_id = %s and i.labels ->> 'alertname' = %s",
            (project_id, alertname),
        ).fetchone()
    return row[0] if row else None


def run(probes: int = 8, spacing_s: float = 9.0, timeout_s: float = 300.0) -> str:
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - pgserver's runtime directory
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every SQS call otherwise

    from observai_local.bench import BENCH_ENVIRONMENT, Client, create_user, prepare_database

    url, database = prepare_database(keep_dir=False)
    os.environ.update(BENCH_ENVIRONMENT)
    os.environ["DATABASE_URL"] = url
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_SQS", endpoint),
    ):
        os.environ[name] = value
    import boto3
    from observai.auth.jwt import issue_dev_token

    from observai_local.functions import local_overrides
    from observai_local.scheduler import Scheduler
    from observai_local.server import start_server
    from observai_local.sqs import QueuePoller, configured_sources
    from observai_local.template import load_template

    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    timer_queue = sqs.create_queue(QueueName=f"alert-timers-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    os.environ["ALERT_TIMER_QUEUE_URL"] = timer_queue
    template = load_template()
    overrides = {**local_overrides("local", url), **BENCH_ENVIRONMENT, "DATABASE_URL": url}
    server, base_url = start_server("127.0.0.1", 0, template=template, overrides=overrides, quiet=True)
    client = Client(base_url)
    scheduler = pollers = None
    try:
        user_id, email = create_user(url)
        bearer = {"authorization": f"Bearer {issue_dev_token(user_id, email)}"}
        org = client.json("POST", "/v1/orgs", bearer, {"name": "Latency org"}, expect=201)
        project = client.json("POST", f"/v1/orgs/{org['id']}/projects", bearer, {"name": "Latency"}, expect=201)
        key = client.json(
            "POST",
            f"/v1/projects/{project['id']}/api-keys",
            bearer,
            {"name": "probe", "scopes": ["ingest"]},
            expect=201,
        )
        for i in range(probes):
            rule = {
                "name": f"probe-{i}",
                "condition": {
                    "kind": "metric",
                    "metric": f"probe_{i}",
                    "aggregation": "max",
                    "window": "1m",
                    "op": ">",
                    "threshold": 100,
                },
                "for": "0s",
            }
            client.json("POST", f"/v1/projects/{project['id']}/alert-rules", bearer, rule, expect=201)
        scheduler = Scheduler(server.invoker).start()
        pollers = QueuePoller(server.invoker.invoke, configured_sources(template, os.environ), sqs).start()

        posted: dict[int, float] = {}
        posted_at: dict[int, datetime] = {}
        for i in range(probes):
            event = {"type": "metric", "name": f"probe_{i}", "value": 1000.0}
            event["time"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            status, raw = client.request("POST", "/v1/ingest", {"x-api-key": key["key"]}, [event])
            if status not in (200, 202):
                raise RuntimeError(f"ingest: {status} {raw[:300]!r}")
            posted[i], posted_at[i] = time.monotonic(), datetime.now(UTC)
            time.sleep(spacing_s)
        latencies: dict[int, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(latencies) < probes and time.monotonic() < deadline:
            for i in range(probes):
                if i in latencies:
                    continue
                sent = _notified_at(url, project["id"], f"probe-{i}")
                if sent is not None:
                    latencies[i] = (sent - posted_at[i]).total_seconds()
            time.sleep(1)
    finally:
        if scheduler is not None:
            scheduler.stop()
        if pollers is not None:
            pollers.stop()
        client.close()
        server.shutdown()
        server.server_close()
        moto.stop()
        from observai.db import close_connection

        close_connection()
    missing = sorted(set(range(probes)) - latencies.keys())
    values = list(latencies.values())
    lines = [
        f"Ingest-to-notification latency: {probes} probes {spacing_s:g} s apart, the local runner's schedules"
        " (evaluate-alerts at each minute's start, the sweeps every minute from the start), alert timers as SQS delay"
        f" messages on moto's server, group_wait {GROUP_WAIT_S} s; Postgres {database}",
    ]
    if values:
        lines.append(
            f"  p50 {_percentile(values, 50):.1f} s, p95 {_percentile(values, 95):.1f} s, max {max(values):.1f} s"
            f" (target p95 ≤ {TARGET_S} s: {_percentile(values, 95) / TARGET_S:.2f}x of it)"
        )
        lines.append("  each: " + json.dumps({f"probe-{i}": round(v, 1) for i, v in sorted(latencies.items())}))
    if missing:
        lines.append(f"  NOT NOTIFIED within {timeout_s:.0f} s: {', '.join(f'probe-{i}' for i in missing)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local.bench_alert_latency", description=__doc__)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--spacing", type=float, default=9.0, help="seconds between probes")
    args = parser.parse_args(argv)
    report = run(args.probes, args.spacing)
    print(report)
    return 1 if "NOT NOTIFIED" in report else 0


if __name__ == "__main__":
    sys.exit(main())
