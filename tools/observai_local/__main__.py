"""python -m observai_local serve | invoke FUNCTION -e EVENT | drain | migrate | bootstrap | openapi | bench | coldstart

Run it with the project's interpreter, .venv/bin/python (make install creates it), or through make.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import signal
import sys
import traceback
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from observai_local.template import TEMPLATE_PATH, load_template

DELEGATED = {
    "openapi": "print, --write or --check docs/openapi.json (observai_local.openapi)",
    "bench": "benchmarks (observai_local.bench)",
    "coldstart": "cold-start import time of each function (observai_local.coldstart)",
}


def _database_label() -> str:
    from observai_local.dev import shown, state_dir

    return "$DATABASE_URL" if os.environ.get("DATABASE_URL") else f"embedded ({shown(state_dir() / 'pgdata')})"


def listen_error(host: str, port: int, exc: OSError) -> str:
    """The one line `make dev` prints when it cannot listen (no traceback)."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"error: port {port} on {host} is already in use (another `make dev`?):"
            f" stop that process, or pick another port: PORT={port + 1} make dev"
        )
    return f"error: cannot listen on {host}:{port}: {exc.strerror or exc}"


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM (kill, a supervisor) end `serve` the same way: the embedded Postgres is
    stopped too. SIGINT is set explicitly: a shell starts a background job (`make dev &`) with it ignored."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def cmd_serve(args: argparse.Namespace) -> int:
    from observai_local.dev import ai_status, describe, ensure_workspace, prepare_database
    from observai_local.functions import local_overrides
    from observai_local.scheduler import Scheduler
    from observai_local.server import make_server

    _stop_on_signals()
    template = load_template(args.template)
    try:  # the port first: a busy one is one line, before the database is started for nothing
        server = make_server(args.host, args.port, template=template, overrides=local_overrides("local"), listen=False)
    except OSError as exc:
        print(listen_error(args.host, args.port, exc), file=sys.stderr)
        return 1
    try:
        url, applied = prepare_database()
    except BaseException:
        server.server_close()
        raise
    try:
        server.server_activate()  # accept connections only now: meanwhile a client is refused, not left waiting
    except OSError as exc:
        server.server_close()
        print(listen_error(args.host, args.port, exc), file=sys.stderr)
        return 1
    for version in applied:
        print(f"migration applied: {version}", file=sys.stderr)
    server.invoker.overrides = local_overrides("local", url)
    # Acknowledge/resolve links in notifications point at this runner unless the shell says otherwise.
    server.invoker.overrides["PUBLIC_BASE_URL"] = os.environ.get("PUBLIC_BASE_URL") or server.base_url
    info = ensure_workspace(url, server.invoker.overrides, server.base_url)
    print(
        describe(
            info,
            routes=len(template.routes),
            functions=len(template.functions),
            schedules=len(template.schedules),
            database=_database_label(),
            ai=ai_status(server.invoker.overrides),
        ),
        flush=True,
    )
    scheduler = Scheduler(server.invoker).start(run_now=args.run_schedules)
    pollers = _start_queue_pollers(template, server.invoker)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    finally:
        scheduler.stop()
        if pollers is not None:
            pollers.stop()
        server.server_close()
    return 0  # on exit, pgserver stops the embedded Postgres unless another process still uses it


def _start_queue_pollers(template: Any, invoker: Any) -> Any:
    """Poll the SQS queues whose URL the shell sets (EXPORT_QUEUE_URL, SPOOL_QUEUE_URL), as Lambda would."""
    from observai_local.sqs import QueuePoller, configured_sources, poller_banner

    sources = configured_sources(template, os.environ)
    for line in poller_banner(template, os.environ):
        print(line, file=sys.stderr)
    if not sources:
        return None
    import boto3

    return QueuePoller(invoker.invoke, sources, boto3.client("sqs")).start()


def _read_event(source: str | None) -> Any:
    if source is None:
        return {}
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    return json.loads(text) if text.strip() else {}


def cmd_invoke(args: argparse.Namespace) -> int:
    from observai_local.dev import prepare_database
    from observai_local.functions import Invoker, local_overrides

    template = load_template(args.template)
    if args.function not in template.functions:
        print(
            f"error: no function {args.function!r}; functions: {', '.join(sorted(template.functions))}", file=sys.stderr
        )
        return 2
    event = _read_event(args.event)
    result_out = sys.stdout
    # As `sam local invoke`: the function's logs go to stderr, its response (or error) alone to stdout.
    with redirect_stdout(sys.stderr):
        url, _ = prepare_database()
        invoker = Invoker(template, local_overrides("local", url))
        try:
            result = invoker.invoke(args.function, event)
        except Exception as exc:
            traceback.print_exc()
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            result_out.write(json.dumps(error) + "\n")
            return 1
    result_out.write(json.dumps(result, default=str) + "\n")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    """Stand-in for a function's SQS event source mapping, until its queue is empty (see observai_local.sqs)."""
    template = load_template(args.template)
    sources = [q for q in template.queue_sources if q.function == args.function]
    if not sources or not sources[0].url_variable:
        known = ", ".join(sorted({q.function for q in template.queue_sources}))
        print(f"error: {args.function} has no SQS event source (those with one: {known})", file=sys.stderr)
        return 2
    source = sources[0]
    queue_url = os.environ.get(source.url_variable or "")
    if not queue_url:
        print(f"error: set {source.url_variable} to the queue {source.queue} to drain", file=sys.stderr)
        return 2
    import boto3

    from observai_local.dev import prepare_database
    from observai_local.functions import Invoker, local_overrides
    from observai_local.sqs import drain_queue

    with redirect_stdout(sys.stderr):
        url, _ = prepare_database()
        invoker = Invoker(template, local_overrides("local", url))
        report = drain_queue(
            boto3.client("sqs"),
            queue_url,
            lambda event: invoker.invoke(args.function, event),
            max_batches=1 if args.once else None,
            batch_size=source.batch_size,
        )
    print(json.dumps(report.__dict__))
    return 0 if report.failed == 0 else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from observai_local.dev import prepare_database

    _, applied = prepare_database()
    print(f"database: {_database_label()}")
    for version in applied:
        print(f"applied {version}")
    if not applied:
        print("up to date")
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    """observai.tenancy.bootstrap on DATABASE_URL as it is, else on the embedded Postgres (migrated first)."""
    from observai.tenancy import bootstrap

    from observai_local.dev import prepare_database
    from observai_local.functions import applied_environment

    argv = ["--org-name", args.org_name, "--owner-email", args.owner_email]
    if os.environ.get("DATABASE_URL"):
        return bootstrap.main(argv)
    url, _ = prepare_database()
    print(f"database: {_database_label()}", file=sys.stderr)
    with applied_environment({"DATABASE_URL": url}):
        return bootstrap.main(argv)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local", description=__doc__)
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH, help="default: template.yaml")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve every HttpApi route and run the schedules (Ctrl-C stops)")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="default: $HOST, else 127.0.0.1")
    serve.add_argument("--port", type=_port, default=os.environ.get("PORT", "3000"), help="default: $PORT, else 3000")
    serve.add_argument("--run-schedules", action="store_true", help="fire every scheduled function once at start")
    serve.set_defaults(func=cmd_serve)

    invoke = sub.add_parser("invoke", help="invoke one function with an event file, as `sam local invoke`")
    invoke.add_argument("function", metavar="FUNCTION_LOGICAL_ID")
    invoke.add_argument("-e", "--event", help="event JSON file ('-' for stdin; default: {})")
    invoke.set_defaults(func=cmd_invoke)

    drain = sub.add_parser(
        "drain",
        help="drain a function's SQS queue through it, as SQS would: the ingest spool ($SPOOL_QUEUE_URL) by default,"
        " exports ($EXPORT_QUEUE_URL) with --function ExportWorkerFunction",
    )
    drain.add_argument("--function", default="IngestDrainFunction", help="default: IngestDrainFunction")
    drain.add_argument("--once", action="store_true", help="one receive (up to 10 messages), not until empty")
    drain.set_defaults(func=cmd_drain)

    migrate = sub.add_parser("migrate", help="apply migrations (DATABASE_URL, else the embedded Postgres)")
    migrate.set_defaults(func=cmd_migrate)

    boot = sub.add_parser(
        "bootstrap",
        help="create the first organization and its owner (DATABASE_URL, else the embedded Postgres)",
    )
    boot.add_argument("--org-name", required=True)
    boot.add_argument("--owner-email", required=True)
    boot.set_defaults(func=cmd_bootstrap)

    # Tools with their own options: `python -m observai_local openapi --write` runs observai_local.openapi.main.
    for name, text in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in DELEGATED:
        tool = importlib.import_module(f"observai_local.{argv[0]}")
        return int(tool.main(argv[1:]))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C while starting up: no traceback (the embedded Postgres stops at exit)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
