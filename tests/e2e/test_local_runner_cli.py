"""The local runner as a newcomer meets it: a busy port, Ctrl-C (or SIGTERM) with the embedded Postgres,
`make bootstrap` without DATABASE_URL. Each runs the real command in its own process and state directory."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.runner_process import (
    ROOT,
    RunnerProcess,
    free_port,
    postgres_pid,
    runner_env,
    stop_leftover_postgres,
)

pytestmark = pytest.mark.e2e


def test_a_busy_port_is_one_clear_line_and_starts_nothing(tmp_path: Path) -> None:
    # Given a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the runner is asked to serve on it
        done = subprocess.run(
            [sys.executable, "-m", "observai_local", "serve"],
            cwd=ROOT,
            env=runner_env(tmp_path / "state", port),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    # Then it exits 1 with one line naming the port and the way out, no traceback, no database started
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {port}" in lines[0] and "already in use" in lines[0] and "PORT=" in lines[0]
    assert not (tmp_path / "state" / "pgdata").exists()


def test_bootstrap_without_database_url_then_serve_stopped_by_sigterm_stops_postgres(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pgdata = state / "pgdata"
    try:
        # Given no DATABASE_URL: `make bootstrap` runs on the embedded Postgres (started, migrated, stopped)
        command = ["make", "-s", "bootstrap", "ORG=Acme", "EMAIL=owner@acme.test"]
        first = subprocess.run(command, cwd=ROOT, env=runner_env(state), capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Traceback" not in first.stderr
        assert json.loads(first.stdout)["created"] is True
        assert postgres_pid(pgdata) is None, "bootstrap left the embedded Postgres running"

        # And a process that was killed left its pid on pgserver's list of users
        (pgdata / ".handle_pids.json").write_text(json.dumps([2**22 + 12345]))
        # When the runner serves on that database and is stopped like a service (SIGTERM)
        port = free_port()
        runner = RunnerProcess([sys.executable, "-m", "observai_local", "serve"], state, port, tmp_path / "serve.log")
        runner.wait_ready()
        assert postgres_pid(pgdata) is not None
        code = runner.signal(signal.SIGTERM, timeout=60)
        # Then it exits cleanly and the embedded Postgres stops with it (the dead pid does not keep it up)
        assert code == 0, runner.output
        assert "Traceback" not in runner.output
        assert postgres_pid(pgdata) is None, runner.output
    finally:
        stop_leftover_postgres(pgdata)


def test_make_bootstrap_says_how_to_call_it_without_arguments() -> None:
    done = subprocess.run(["make", "-s", "bootstrap"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert 'usage: make bootstrap ORG="Acme" EMAIL=owner@acme.test' in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
